"""Registering runs, checkpoints, environments and judges: files, DVC tracking, one commit each."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import git
import pytest
import yaml

from conftest import snapshot
from governance import NewCheckpoint, Registry
from governance.errors import AlreadyExists, LineageError, NotFound
from governance.example import set_dvc_remote
from governance.models import CheckpointStatus, EnvironmentStatus
from governance.workspace import find


def test_checkpoint_add_tracks_artifact_with_dvc_and_pushes(
    gov, workspace: Path, dvc_remote: Path, artifact
) -> None:
    path = artifact("step-100.pt")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    head = git.Repo(workspace).head.commit.hexsha

    result = gov(
        "checkpoint",
        "add",
        "main@100",
        str(path),
        "-e",
        "code-tests=0.7",
        "-e",
        "math=0.3",
        cwd=workspace,
    )
    assert result.exit_code == 0, result.stderr

    dvc_file = yaml.safe_load((workspace / "ckpt" / "step-100.pt.dvc").read_text())
    assert dvc_file["outs"][0]["md5"] == md5
    assert (dvc_remote / "files" / "md5" / md5[:2] / md5[2:]).read_bytes() == path.read_bytes()

    repo = git.Repo(workspace)
    commit = repo.head.commit
    assert commit.parents[0].hexsha == head
    assert commit.message.startswith("gov: register checkpoint main@100")
    assert set(commit.stats.files) == {
        "registry/checkpoints/main.jsonl",
        "ckpt/step-100.pt.dvc",
        "ckpt/.gitignore",
    }
    assert repo.git.status("--porcelain") == ""

    line = json.loads((workspace / "registry/checkpoints/main.jsonl").read_text())
    assert line["artifact"] == "ckpt/step-100.pt"
    assert line["artifact_md5"] == md5
    assert {e["environment"]: e["weight"] for e in line["exposure"]} == {
        "code-tests": 0.7,
        "math": 0.3,
    }
    assert line["status"] == "registered"


def test_checkpoint_show_and_list_json(gov, registry: Registry, workspace: Path, artifact) -> None:
    for step in (300, 100, 200):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), {"math": 1.0})
    listed = json.loads(gov("checkpoint", "list", "--format", "json", cwd=workspace).stdout)
    assert [c["step"] for c in listed] == [100, 200, 300]
    shown = json.loads(
        gov("checkpoint", "show", "main@200", "--format", "json", cwd=workspace).stdout
    )
    assert shown["artifact"] == "ckpt/s200.pt"
    assert shown["exposure"][0]["environment"] == "math"
    table = gov("checkpoint", "list", "--run", "main", cwd=workspace).stdout
    assert "main@100" in table and "main@300" in table


def test_training_loop_api_batch_is_one_commit(registry: Registry, workspace: Path, artifact):
    repo = git.Repo(workspace)
    before = len(list(repo.iter_commits()))
    new = [
        NewCheckpoint(
            step=s, artifact=artifact(f"b{s}.pt"), exposure={"math": 0.5, "code-tests": 0.5}
        )
        for s in (10, 20, 30)
    ]
    added = registry.add_checkpoints("main", new)
    assert [c.step for c in added] == [10, 20, 30]
    assert len(list(repo.iter_commits())) == before + 1
    assert "3 checkpoints of run main" in repo.head.commit.message
    assert [c.ref for c in registry.checkpoints("main")] == ["main@10", "main@20", "main@30"]


def test_exposure_resolves_versions_by_number_and_hash(
    registry: Registry, workspace: Path, artifact
) -> None:
    (workspace / "envs" / "math" / "task.py").write_text("TASK = 'math, harder'\n")
    env = registry.add_environment_version(
        "math", paths=[workspace / "envs" / "math"], note="grader checks the proof steps"
    )
    v1, v2 = env.versions
    assert (v1.number, v2.number) == (1, 2) and v1.hash != v2.hash
    prefix = registry.environment("code-tests").current.hash[7:16]
    ckpt = registry.add_checkpoint(
        "main", 1, artifact("v.pt"), {"math@v1": 0.5, f"code-tests@{prefix}": 0.5}
    )
    by_env = {e.environment: e for e in ckpt.exposure}
    assert by_env["math"].version == 1 and by_env["math"].hash == v1.hash
    latest = registry.add_checkpoint("main", 2, artifact("w.pt"), {"math": 1.0})
    assert latest.exposure[0].version == 2


def test_env_version_requires_new_content_and_reactivates(registry: Registry, workspace: Path):
    registry.set_environment_status("math", EnvironmentStatus.FLAGGED, reason="rising")
    with pytest.raises(AlreadyExists, match="already has this content as version 1"):
        registry.add_environment_version("math", paths=[workspace / "envs" / "math"], note="x")
    (workspace / "envs" / "math" / "scoring.py").write_text("STRICT = True\n")
    env = registry.add_environment_version(
        "math", paths=[workspace / "envs" / "math"], note="stricter scoring"
    )
    assert env.status == EnvironmentStatus.ACTIVE
    assert env.current.number == 2 and env.current.note == "stricter scoring"


def test_content_hash_ignores_folder_name_but_not_content(registry: Registry, tmp_path: Path):
    from governance.registry import content_hash

    a = tmp_path / "a" / "env"
    b = tmp_path / "b" / "env"
    for folder in (a, b):
        folder.mkdir(parents=True)
        (folder / "task.py").write_text("x = 1\n")
    assert content_hash([a]) == content_hash([b])
    (b / "task.py").write_text("x = 2\n")
    assert content_hash([a]) != content_hash([b])


def test_judge_versions_accumulate(gov, registry: Registry, workspace: Path) -> None:
    rubric = workspace / "rubric2.md"
    rubric.write_text("A stricter rubric.\n")
    result = gov(
        "judge", "add", "cot-monitor", "--version", "2", "--rubric", str(rubric), cwd=workspace
    )
    assert result.exit_code == 0, result.stderr
    judge = registry.judge("cot-monitor")
    assert [v.version for v in judge.versions] == ["1", "2"]
    assert judge.versions[0].rubric_hash != judge.versions[1].rubric_hash
    with pytest.raises(AlreadyExists):
        registry.add_judge("cot-monitor", "2", rubric_hash="0" * 64)
    listed = json.loads(gov("judge", "list", "--format", "json", cwd=workspace).stdout)
    assert [len(j["versions"]) for j in listed] == [2]


def test_run_lineage_and_fork(gov, registry: Registry, workspace: Path, artifact) -> None:
    registry.add_checkpoint("main", 100, artifact("m100.pt"), {"math": 1.0})
    result = gov(
        "run", "add", "main-r1", "--parent", "main@100", "--note", "restart", cwd=workspace
    )
    assert result.exit_code == 0, result.stderr
    assert [r.id for r in registry.lineage("main-r1")] == ["main", "main-r1"]
    shown = json.loads(gov("run", "show", "main-r1", "--format", "json", cwd=workspace).stdout)
    assert shown["lineage"] == ["main", "main-r1"]
    assert shown["run"]["forked_from_step"] == 100
    with pytest.raises(LineageError, match="forked at step 100"):
        registry.add_checkpoint("main-r1", 50, artifact("r50.pt"), {"math": 1.0})
    with pytest.raises(NotFound, match="main@999"):
        registry.add_run("main-r2", parent_run="main", forked_from_step=999)


def test_status_changes_are_recorded(registry: Registry, workspace: Path, artifact) -> None:
    registry.add_checkpoint("main", 5, artifact("q.pt"), {"math": 1.0})
    registry.set_checkpoint_status("main", 5, CheckpointStatus.QUARANTINED, reason="bad data")
    assert registry.checkpoint("main", 5).status == CheckpointStatus.QUARANTINED
    message = git.Repo(workspace).head.commit.message
    assert "quarantined" in message and "bad data" in message


def test_a_new_checkpoint_or_status_writes_only_its_own_line(
    registry: Registry, workspace: Path, artifact
) -> None:
    """The next checkpoint of a run is appended and a status change rewrites one line: the other
    lines stay byte for byte (a hand-formatted one too), the registry reads the same, and an
    earlier step than the last still goes in its place."""
    path = workspace / "registry" / "checkpoints" / "main.jsonl"
    for step in (10, 20):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), {"math": 1.0})
    first, second = path.read_bytes().splitlines(keepends=True)
    spaced = json.dumps(json.loads(first), indent=None, separators=(", ", ": ")).encode() + b"\n"
    path.write_bytes(spaced + second)
    registry.add_checkpoint("main", 30, artifact("s30.pt"), {"math": 1.0})
    lines = path.read_bytes().splitlines(keepends=True)
    assert lines[:2] == [spaced, second] and json.loads(lines[2])["step"] == 30
    registry.set_checkpoint_status("main", 20, CheckpointStatus.QUARANTINED, reason="bad data")
    after = path.read_bytes().splitlines(keepends=True)
    assert after[0] == spaced and after[2] == lines[2]
    assert json.loads(after[1])["status"] == "quarantined"
    assert {**json.loads(after[1]), "status": "registered"} == json.loads(second)
    registry.add_checkpoint("main", 25, artifact("s25.pt"), {"math": 1.0})
    assert [c.step for c in registry.checkpoints("main")] == [10, 20, 25, 30]
    assert [json.loads(x)["step"] for x in path.read_bytes().splitlines()] == [10, 20, 25, 30]


def test_status_summary(gov, registry: Registry, workspace: Path, artifact, dvc_remote) -> None:
    registry.add_checkpoint("main", 1, artifact("a.pt"), {"math": 1.0})
    summary = json.loads(gov("status", "--format", "json", cwd=workspace).stdout)
    assert summary["runs"] == 1 and summary["checkpoints"] == 1 and summary["judges"] == 1
    assert summary["environments_by_status"]["active"] == 2
    assert summary["dvc_remote"] == "storage"


def test_failed_push_leaves_the_registry_as_it_was(gov, workspace: Path, artifact) -> None:
    blocker = workspace.parent / "not-a-folder"
    blocker.write_text("a file where the remote folder should be\n")
    set_dvc_remote(find(workspace), blocker)
    artifact("p.pt")
    before = snapshot(workspace)
    result = gov("checkpoint", "add", "main@1", "ckpt/p.pt", "-e", "math=1", cwd=workspace)
    assert result.exit_code == 2
    assert "could not push" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(workspace) == before


def test_a_checkpoint_inside_a_folder_dvc_tracks_is_refused(gov, workspace: Path) -> None:
    """gov tracks a new artifact without DVC's whole-repository index, so it checks overlaps
    itself: a file inside a folder that `dvc add` tracked is refused, as DVC would, whole."""
    from dvc.repo import Repo

    folder = workspace / "weights"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a")
    repo = Repo(str(workspace))
    repo.add([str(folder)])
    repo.close()
    git.Repo(workspace).git.add(A=True)
    git.Repo(workspace).index.commit("user tracks a folder with DVC")
    (folder / "b.bin").write_bytes(b"b")
    before = snapshot(workspace)
    result = gov("checkpoint", "add", "main@100", "weights/b.bin", "-e", "math=1", cwd=workspace)
    assert result.exit_code == 2
    assert "lies inside" in result.stderr and "weights.dvc" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(workspace) == before


def test_dvc_itself_sees_gov_tracked_checkpoints_as_tracked(gov, workspace: Path, artifact) -> None:
    """The .dvc file gov writes is DVC's own: DVC's index lists the output, status is clean, and
    a checkout after the file is deleted brings it back from the cache."""
    from dvc.repo import Repo

    path = artifact("step-100.pt")
    content = path.read_bytes()
    result = gov("checkpoint", "add", "main@100", str(path), "-e", "math=1", cwd=workspace)
    assert result.exit_code == 0, result.stderr
    repo = Repo(str(workspace))
    try:
        outs = {str(o) for s in repo.index.stages for o in s.outs}
        assert "step-100.pt" in outs or "ckpt/step-100.pt" in outs
        assert repo.status(targets=[str(path) + ".dvc"]) == {}
        path.unlink()
        repo.checkout(targets=[str(path) + ".dvc"])
    finally:
        repo.close()
    assert path.read_bytes() == content


def test_locating_an_artifact_without_dvc_only_where_dvc_would_look(
    registry: Registry, workspace: Path, artifact
) -> None:
    """The restore point's artifact is looked up in DVC's default cache folder without loading
    DVC, unless a config file says where the cache is: then DVC itself is asked."""
    from governance import artifacts

    ckpt = registry.add_checkpoint("main", 100, artifact("a.pt"), {"math": 1.0})
    assert artifacts._in_default_cache(workspace, ckpt.artifact_md5)
    assert artifacts.locate(workspace, ckpt.artifact_md5) == "cache"
    elsewhere = workspace.parent / "moved-cache"
    local = workspace / ".dvc" / "config.local"
    local.write_text(f"[cache]\n    dir = {elsewhere}\n")
    assert not artifacts._in_default_cache(workspace, ckpt.artifact_md5)
    assert artifacts.locate(workspace, ckpt.artifact_md5) in (None, "remote")  # DVC's answer
    local.unlink()
    assert artifacts.locate(workspace, "0" * 32) is None


def test_a_checkpoint_whose_dvc_file_git_ignores_is_refused(gov, workspace: Path, artifact) -> None:
    """git itself answers DVC's question whether the .dvc file would be ignored (DVC's own
    answer walks every pattern of the folder's .gitignore in Python): an ignored one is refused
    as DVC refuses it, whole."""
    path = artifact("step-100.pt")
    ignore = path.parent / ".gitignore"
    ignore.write_text((ignore.read_text() if ignore.exists() else "") + "*.dvc\n")
    git.Repo(workspace).git.add(A=True)
    git.Repo(workspace).index.commit("ignore dvc files by mistake")
    before = snapshot(workspace)
    result = gov("checkpoint", "add", "main@100", str(path), "-e", "math=1", cwd=workspace)
    assert result.exit_code == 2, result.stdout
    assert "step-100.pt.dvc" in result.stderr and "ignored" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(workspace) == before


def test_an_environment_folder_with_an_unreadable_file_is_one_line(gov, workspace: Path) -> None:
    # reading every file to hash it crashed on the first it could not read (exit 3)
    folder = Path("/proc/1")
    try:
        for path in folder.rglob("*"):
            if path.is_file():
                path.read_bytes()
        pytest.skip("every file under /proc/1 is readable here: nothing to refuse")
    except OSError:
        pass
    done = gov("env", "add", "newenv", "--from", str(folder), cwd=workspace)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "cannot be read to hash" in line and "Traceback" not in done.stderr
