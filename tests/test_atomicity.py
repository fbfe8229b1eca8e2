"""A change is whole or absent: killed processes and concurrent writers, with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import git
import pytest

from conftest import snapshot

ROOT = Path(__file__).resolve().parent.parent

KILL_BEFORE_COMMIT = """
import os, signal, sys
import governance.scm as scm
from governance import open_registry

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

scm.commit_paths = die   # the process dies after writing the files, before git records them
open_registry(sys.argv[1]).add_checkpoint("main", 7, "ckpt/k.pt", {"math": 1.0})
"""

KILL_AFTER_COMMIT = """
import os, signal, sys
import governance.scm as scm
from governance import open_registry

real = scm.commit_paths
def commit_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

scm.commit_paths = commit_then_die   # the commit lands; the journal clean-up never runs
open_registry(sys.argv[1]).add_checkpoint("main", 7, "ckpt/k.pt", {"math": 1.0})
"""

WRITER = """
import sys
from pathlib import Path
from governance import open_registry

root, first = Path(sys.argv[1]), int(sys.argv[2])
registry = open_registry(root)
for step in range(first, first + 5):
    path = root / "ckpt" / f"c{step}.pt"
    path.write_bytes(b"weights %d" % step)
    registry.add_checkpoint("main", step, path, {"math": 0.5, "code-tests": 0.5})
"""


def _python(script: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=args[0])


def test_killed_before_commit_is_undone_by_the_next_command(gov, workspace: Path, artifact):
    artifact("k.pt")
    before = snapshot(workspace)
    proc = _python(KILL_BEFORE_COMMIT, str(workspace))
    assert proc.wait(timeout=120) == -9
    assert (workspace / ".gov" / "journal.json").exists()
    assert (workspace / "registry" / "checkpoints" / "main.jsonl").exists()  # half made

    listed = gov("checkpoint", "list", "--format", "json", cwd=workspace)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.strip() == "[]"
    assert not (workspace / ".gov" / "journal.json").exists()
    assert snapshot(workspace) == before


def test_killed_after_commit_keeps_the_commit(gov, workspace: Path, artifact) -> None:
    artifact("k.pt")
    head = git.Repo(workspace).head.commit.hexsha
    proc = _python(KILL_AFTER_COMMIT, str(workspace))
    assert proc.wait(timeout=120) == -9
    assert (workspace / ".gov" / "journal.json").exists()

    listed = gov("checkpoint", "list", "--format", "json", cwd=workspace)
    assert '"step": 7' in listed.stdout
    repo = git.Repo(workspace)
    assert repo.head.commit.parents[0].hexsha == head
    assert repo.git.status("--porcelain") == ""
    assert not (workspace / ".gov" / "journal.json").exists()


def test_concurrent_writers_lose_nothing(registry, workspace: Path) -> None:
    (workspace / "ckpt").mkdir()
    head = git.Repo(workspace).head.commit.hexsha
    procs = [_python(WRITER, str(workspace), str(first)) for first in (100, 200)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]

    steps = [c.step for c in registry.checkpoints("main")]
    assert steps == [*range(100, 105), *range(200, 205)]
    repo = git.Repo(workspace)
    new_commits = list(repo.iter_commits(f"{head}..HEAD"))
    assert len(new_commits) == 10
    assert all(len(c.parents) == 1 for c in new_commits)
    assert repo.git.status("--porcelain") == ""
    repo.git.fsck("--strict")


@pytest.mark.parametrize(
    ("settings", "flushed"),
    [
        ({}, False),  # git's own default leaves loose objects to the OS
        ({"fsync": "committed,-loose-object"}, False),
        ({"fsync": "objects"}, True),
        ({"fsync": "all"}, True),
        ({"fsync": "all,-objects"}, False),
        ({"fsync": "loose-object,none"}, False),
        ({"fsync": "pack,reference"}, False),
        ({"fsyncObjectFiles": "true"}, True),
    ],
)
def test_stored_reports_are_flushed_where_git_flushes_objects(
    tmp_path: Path, settings: dict[str, str], flushed: bool
) -> None:
    from governance.scm import syncs_objects

    repo = git.Repo.init(tmp_path)
    with repo.config_writer() as config:
        for key, value in settings.items():
            config.set_value("core", key, value)
    assert syncs_objects(repo) is flushed
