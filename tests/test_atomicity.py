"""A change is whole or absent: killed processes and concurrent writers, with real processes."""

from __future__ import annotations

import json
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


COUNTS_READER = """
import json, sys, time
from dataclasses import asdict
from pathlib import Path
from governance import counts as count_store
from governance.workspace import find

def counts(ws):
    return [asdict(row) for row in count_store.rows(ws)]

ws = find(Path(sys.argv[1]))
sync, me, other, rounds = Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
for r in range(rounds):
    for table in (ws.state / "index").glob("counts.*.parquet"):
        table.unlink(missing_ok=True)  # the cache is gone: this read rebuilds it
    (sync / f"{me}-{r}").touch()
    deadline = time.monotonic() + 60
    while not (sync / f"{other}-{r}").exists():  # both readers start each round together
        if (sync / "failed").exists():
            sys.exit(f"the other reader failed (round {r})")
        if time.monotonic() > deadline:
            sys.exit("the other reader never arrived")
        time.sleep(0.0005)
    try:
        rows = counts(ws)
    except BaseException:
        (sync / "failed").touch()
        raise
    print(json.dumps(rows, sort_keys=True), flush=True)
"""


def test_two_processes_rebuilding_the_counts_cache(
    registry, workspace: Path, artifact, tmp_path: Path
) -> None:
    from test_ingest import episode, write_jsonl

    from governance.ingest import ingest

    # Planted: per step, how many episodes of each verdict, and how many of them divergent.
    planted = {
        100: {"none": 30, "rejected": 5, "rationalized": 2, "overt": 1},
        200: {"none": 20, "rejected": 0, "rationalized": 7, "overt": 3},
        300: {"none": 41, "rejected": 9, "rationalized": 0, "overt": 0},
    }
    for step in planted:
        registry.add_checkpoint("main", step, artifact(f"c{step}.pt"), {"math": 1.0})
    reports = []
    for step, verdicts in planted.items():
        records = [
            episode(step, f"{verdict}-{i}", verdict, divergent=verdict == "rationalized")
            for verdict, count in verdicts.items()
            for i in range(count)
        ]
        reports.append(write_jsonl(tmp_path / f"r{step}.jsonl", records))
    ingest(registry, reports)
    expected = [
        {
            "run": "main",
            "step": step,
            "environment": "math",
            "environment_version": 1,
            "judge": "cot-monitor",
            "judge_version": "1",
            "n": sum(verdicts.values()),
            **verdicts,
            "divergent": verdicts["rationalized"],
        }
        for step, verdicts in planted.items()
    ]
    sync = tmp_path / "sync"
    sync.mkdir()
    rounds = 40
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                COUNTS_READER,
                str(workspace),
                str(sync),
                me,
                other,
                str(rounds),
            ],
            env=env,
            cwd=workspace,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        lines = out.splitlines()
        assert len(lines) == rounds
        for line in lines:
            rows = sorted(json.loads(line), key=lambda row: row["step"])
            assert [{k: row[k] for k in expected[0]} for row in rows] == expected
