"""The suite's own isolation: git and GitPython see the test identity, not the developer's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import git

from conftest import TEST_EMAIL, TEST_NAME


def test_git_sees_only_the_test_identity(isolated_home: Path, tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path / "r")
    shown = subprocess.run(
        ["git", "config", "--show-origin", "--get-all", "user.name"],
        cwd=repo.working_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(shown) == 1 and shown[0].endswith(f"\t{TEST_NAME}")
    assert os.environ["GIT_CONFIG_GLOBAL"] in shown[0]
    reader = repo.config_reader()
    assert reader.get_value("user", "name") == TEST_NAME
    assert reader.get_value("user", "email") == TEST_EMAIL
    assert Path.home() == isolated_home
    assert Path(os.environ["GIT_CONFIG_GLOBAL"]) == isolated_home / ".gitconfig"


def test_each_workspace_copy_has_its_own_dvc_remote(
    workspace: Path, dvc_remote: Path, workspace_template: Path
) -> None:
    config = (workspace / ".dvc" / "config").read_text()
    assert f"url = {dvc_remote}\n" in config and str(workspace_template.parent) not in config
    repo = git.Repo(workspace)
    assert repo.git.status("--porcelain") == ""  # the copy starts as clean as the template
    assert str(repo.head.commit.message).strip() == "environment sources and rubric"
    assert repo.head.commit.hexsha != git.Repo(workspace_template).head.commit.hexsha
    # The DVC cache is the copy's own: its default place inside the copy.
    assert "cache" not in config
