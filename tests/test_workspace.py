"""gov init and workspace discovery, on real git repositories with real DVC."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git

from conftest import make_git_repo, snapshot


def test_init_creates_workspace_in_one_commit(gov, git_repo: Path) -> None:
    result = gov("init", str(git_repo))
    assert result.exit_code == 0, result.stderr
    for rel in (
        "gov.yaml",
        "registry/README.md",
        "audit/README.md",
        "policies/README.md",
        ".dvc/config",
        ".dvcignore",
    ):
        assert (git_repo / rel).is_file(), rel
    repo = git.Repo(git_repo)
    head = repo.head.commit
    assert head.message.startswith("gov: initialise governance workspace")
    committed = {d.b_path for d in head.diff(head.parents[0])}
    assert {"gov.yaml", ".dvc/config", "policies/README.md"} <= committed
    # .gov holds local state only: it ignores itself and nothing of it is committed.
    assert not any(p.startswith(".gov") for p in committed)
    assert repo.git.status("--porcelain") == ""


def test_init_is_idempotent_and_keeps_user_edits(gov, git_repo: Path) -> None:
    assert gov("init", str(git_repo)).exit_code == 0
    policy = git_repo / "policies" / "README.md"
    policy.write_text("my own policy notes\n")
    repo = git.Repo(git_repo)
    repo.index.remove(["audit/README.md"], working_tree=True)
    repo.index.commit("drop the audit readme")
    head = repo.head.commit.hexsha

    again = gov("init", str(git_repo))
    assert again.exit_code == 0, again.stderr
    assert "audit/README.md" in again.stdout
    assert policy.read_text() == "my own policy notes\n"
    assert (git_repo / "audit" / "README.md").is_file()
    assert repo.head.commit.parents[0].hexsha == head
    assert list(repo.head.commit.stats.files) == ["audit/README.md"]
    assert "policies/README.md" in repo.git.diff("--name-only")  # the user's edit, untouched

    readded = repo.head.commit.hexsha
    third = gov("init", str(git_repo))
    assert "nothing to do" in third.stdout
    assert repo.head.commit.hexsha == readded


def test_init_outside_git_is_refused_cleanly(gov, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    result = gov("init", str(plain))
    assert result.exit_code == 2
    assert "not inside a git repository" in result.stderr
    assert "git init" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert list(plain.iterdir()) == []


def test_init_in_a_subfolder_of_a_monorepo(gov, tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "mono")
    sub = tmp_path / "mono" / "training"
    sub.mkdir()
    assert gov("init", str(sub)).exit_code == 0
    assert (sub / ".dvc" / "config").is_file()
    assert not (tmp_path / "mono" / ".dvc").exists()
    assert "training/gov.yaml" in repo.git.ls_files()

    # Paths are the workspace's own, wherever git's root is: `gov audit show` resolves an entry's
    # policies as committed, from the subfolder.
    (sub / "envs" / "math").mkdir(parents=True)
    (sub / "envs" / "math" / "task.py").write_text("x = 1\n")
    (sub / "w.bin").write_bytes(b"weights")
    assert gov("env", "add", "math", "--from", "envs/math", cwd=sub).exit_code == 0
    assert gov("run", "add", "main", cwd=sub).exit_code == 0
    assert (
        gov("checkpoint", "add", "main@1", "w.bin", "--exposure", "math=1", cwd=sub).exit_code == 0
    )
    assert gov("check", "main@1", cwd=sub).exit_code in (0, 1)
    shown = json.loads(gov("audit", "show", "1", "--format", "json", cwd=sub).stdout)
    policies = shown["resolved"]["policies"]
    assert policies and shown["resolved"]["commit"] == repo.head.commit.hexsha
    for path, text in policies.items():
        assert text == repo.git.show(f"HEAD:training/{path}")


def test_commands_find_the_workspace_upwards_or_from_the_flag(gov, workspace: Path) -> None:
    deep = workspace / "envs" / "math"
    found = gov("env", "list", "--format", "json", cwd=deep)
    assert found.exit_code == 0, found.stderr
    assert "code-tests" in found.stdout

    elsewhere = workspace.parent
    missing = gov("env", "list", cwd=elsewhere)
    assert missing.exit_code == 2
    assert "no gov workspace" in missing.stderr and "--workspace" in missing.stderr

    flagged = gov("--workspace", str(workspace), "env", "list", "--format", "json", cwd=elsewhere)
    assert flagged.exit_code == 0 and "math" in flagged.stdout


def test_a_workspace_outside_git_is_refused_by_readers_too(
    gov, workspace: Path, tmp_path: Path
) -> None:
    # A workspace copied without its .git: the readers open no repository up front (they ask git
    # when they need it), yet each still refuses it in one line, as before.
    copy = tmp_path / "copied"
    shutil.copytree(workspace, copy, ignore=shutil.ignore_patterns(".git"))
    for dot_git in (None, f"gitdir: {tmp_path / 'deleted-worktree'}\n"):  # none, or naming none
        if dot_git is not None:
            (copy / ".git").write_text(dot_git)
        for args in (["status"], ["audit", "show", "1"], ["env", "list"]):
            result = gov(*args, cwd=copy)
            assert result.exit_code == 2, (args, result.stdout)
            assert "not inside a git repository" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1


def test_init_does_not_take_the_users_staged_changes(gov, git_repo: Path) -> None:
    repo = git.Repo(git_repo)
    (git_repo / "notes.txt").write_text("work in progress\n")
    repo.index.add(["notes.txt"])
    assert gov("init", str(git_repo)).exit_code == 0
    assert "notes.txt" not in repo.head.commit.stats.files
    assert "notes.txt" in repo.git.diff("--cached", "--name-only")


def test_snapshot_sees_changes(workspace: Path) -> None:
    # The bad-input tests rely on this helper noticing any edit.
    before = snapshot(workspace)
    (workspace / "train.py").write_text("changed\n")
    assert snapshot(workspace) != before


def test_pipeline_reproduces_and_dvc_reads_its_metrics(workspace: Path) -> None:
    import json
    import shutil
    import subprocess

    assert shutil.which("gov"), "the pipeline runs the installed `gov` command: install it first"
    subprocess.run(["dvc", "repro", "--quiet"], cwd=workspace, check=True, capture_output=True)
    shown = subprocess.run(
        ["dvc", "metrics", "show", "--json"],
        cwd=workspace,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(shown)[""]["data"]
    metrics = data["metrics/registry.json"]["data"]
    assert metrics["runs"] == 1 and metrics["judges"] == 1
    assert metrics["environments_by_status"]["active"] == 2
    assert data["metrics/check.json"]["data"]["outcome"] == "none"  # no checkpoint yet
    assert (workspace / "report.html").is_file()


def test_init_keeps_an_existing_dvc_setup_and_pipeline(gov, git_repo: Path) -> None:
    import subprocess

    subprocess.run(["dvc", "init", "-q"], cwd=git_repo, check=True)
    (git_repo / "dvc.yaml").write_text("stages: {}\n")
    config = (git_repo / ".dvc" / "config").read_bytes()
    assert gov("init", str(git_repo)).exit_code == 0
    assert (git_repo / "dvc.yaml").read_text() == "stages: {}\n"
    assert (git_repo / ".dvc" / "config").read_bytes() == config
    assert (git_repo / "gov.yaml").is_file()
