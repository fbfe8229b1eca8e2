"""Fixtures: real git repositories and real DVC (a local folder as remote) in temporary folders."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import git
import pytest
from click.testing import CliRunner

import cli
from governance import Registry, init, open_registry
from governance.example import set_dvc_remote
from governance.workspace import find

# The git identity of every test: tests never see the developer's own git or DVC configuration.
TEST_NAME = "Gov Tester"
TEST_EMAIL = "gov-tester@example.com"


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary HOME with an otherwise empty global git config holding only a test identity.

    `GIT_CONFIG_GLOBAL` is the new HOME's `.gitconfig`, so that git (which follows the variable)
    and GitPython (which reads `~/.gitconfig`) see the same file. GitPython still reads
    /etc/gitconfig whatever GIT_CONFIG_NOSYSTEM says; only git itself skips it."""
    home = tmp_path_factory.mktemp("home")
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        patch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
        patch.setenv("DVC_GLOBAL_CONFIG_DIR", str(home / "dvc-global"))
        patch.setenv("DVC_SYSTEM_CONFIG_DIR", str(home / "dvc-system"))
        patch.setenv("DVC_NO_ANALYTICS", "1")
        for key, value in (
            ("user.name", TEST_NAME),
            ("user.email", TEST_EMAIL),
            ("commit.gpgsign", "false"),
            ("init.defaultBranch", "main"),
        ):
            subprocess.run(["git", "config", "--global", key, value], check=True)
        yield home


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_gov(args: list[str], cwd: Path | None = None) -> Result:
    """Run `gov ARGS` in-process, through the same entry point as the installed command."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        before = Path.cwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            cli.main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(before)
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def gov() -> Callable[..., Result]:
    def call(*args: str, cwd: Path | None = None) -> Result:
        return run_gov(list(args), cwd)

    return call


def make_git_repo(path: Path) -> git.Repo:
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Test Trainer")
        config.set_value("user", "email", "trainer@example.com")
        config.set_value("commit", "gpgsign", "false")
    (path / "train.py").write_text("print('training')\n")
    repo.index.add(["train.py"])
    repo.index.commit("training code")
    return repo


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    make_git_repo(tmp_path / "repo")
    return tmp_path / "repo"


@pytest.fixture
def dvc_remote(tmp_path: Path) -> Path:
    remote = tmp_path / "dvc-remote"
    remote.mkdir()
    return remote


@pytest.fixture
def workspace(git_repo: Path, dvc_remote: Path) -> Path:
    """An initialised workspace with a DVC remote, two environments, a judge and a run."""
    init(git_repo)
    set_dvc_remote(find(git_repo), dvc_remote)
    reg = open_registry(git_repo)
    for env in ("code-tests", "math"):
        folder = git_repo / "envs" / env
        folder.mkdir(parents=True)
        (folder / "task.py").write_text(f"TASK = {env!r}\n")
        reg.add_environment(env, paths=[folder], description=f"the {env} environment")
    rubric = git_repo / "rubric.md"
    rubric.write_text("Judge rationalization.\n")
    reg.add_judge("cot-monitor", "1", rubric=[rubric])
    reg.add_run("main")
    repo = git.Repo(git_repo)
    repo.index.add(["envs", "rubric.md"])
    repo.index.commit("environment sources and rubric")
    return git_repo


@pytest.fixture
def registry(workspace: Path) -> Registry:
    return open_registry(workspace)


@pytest.fixture
def artifact(workspace: Path) -> Callable[[str], Path]:
    def make(name: str, content: bytes | None = None) -> Path:
        path = workspace / "ckpt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if content is not None else name.encode() * 50)
        return path

    return make


@dataclass(frozen=True)
class Snapshot:
    head: str
    status: str
    files: str


def snapshot(root: Path) -> Snapshot:
    """HEAD, `git status` and a hash of every file outside .git: what a failed command must keep."""
    repo = git.Repo(root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            path.is_file()
            and rel.parts[0] not in (".git",)
            and rel.parts[:2] not in ((".dvc", "tmp"), (".dvc", "cache"))
        ):
            if rel.parts[0] == ".gov" and (rel.name == "lock" or rel.parts[1] in ("index", "tmp")):
                continue  # the lock, and derived caches rebuilt from the registry on demand
            digest.update(str(rel).encode() + b"\0" + path.read_bytes())
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Snapshot(repo.head.commit.hexsha, status, digest.hexdigest())


@pytest.fixture(scope="session")
def example_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example, built once per session. Read it only: copy it to change it."""
    from governance.example import build_example

    root = tmp_path_factory.mktemp("example") / "example"
    build_example(root)
    return root


@pytest.fixture
def example_copy(example_template: Path, tmp_path: Path) -> Path:
    """A private copy of the bundled example (a real git repository with its DVC cache)."""
    import shutil

    copy = tmp_path / "example"
    shutil.copytree(example_template, copy, symlinks=True)
    return copy
