"""Fixtures: real git repositories and real DVC (a local folder as remote) in temporary folders."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest
from click.testing import CliRunner

import cli
from governance import Registry, init, open_registry
from governance.example import ExampleResult, build_example, set_dvc_remote
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


def commit_edits(root: Path, message: str = "test: edited by hand") -> None:
    """Commit what a test edited by hand under policies/ and registry/: gov records decisions
    and promotions only from committed files."""
    repo = git.Repo(root, search_parent_directories=True)
    repo.git.add("-A", "--", str(root / "policies"), str(root / "registry"))
    if repo.is_dirty(index=True, working_tree=False):
        repo.git.commit("-q", "-m", message)


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


def build_workspace(root: Path, remote: Path) -> None:
    """A git repository at `root` made a workspace with `remote` as its DVC remote, two
    environments, a judge and a run."""
    make_git_repo(root)
    init(root)
    set_dvc_remote(find(root), remote)
    reg = open_registry(root)
    for env in ("code-tests", "math"):
        folder = root / "envs" / env
        folder.mkdir(parents=True)
        (folder / "task.py").write_text(f"TASK = {env!r}\n")
        reg.add_environment(env, paths=[folder], description=f"the {env} environment")
    rubric = root / "rubric.md"
    rubric.write_text("Judge rationalization.\n")
    reg.add_judge("cot-monitor", "1", rubric=[rubric])
    reg.add_run("main")
    repo = git.Repo(root)
    repo.index.add(["envs", "rubric.md"])
    repo.index.commit("environment sources and rubric")


@pytest.fixture(scope="session")
def workspace_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `workspace` fixture's workspace, built once per session. Never change it: tests get
    copies."""
    root = tmp_path_factory.mktemp("workspace-template")
    remote = root / "dvc-remote"
    remote.mkdir()
    build_workspace(root / "repo", remote)
    return root / "repo"


def point_dvc_remote(root: Path, remote: Path) -> None:
    """Make a copied workspace's DVC remote its own folder, in place of the one the template
    committed (folded into the last commit, so the copy starts with a clean tree as the
    template did)."""
    config = root / ".dvc" / "config"
    text = config.read_text()
    urls = re.findall(r"^\s*url = (.+)$", text, flags=re.MULTILINE)
    assert len(urls) == 1, text
    config.write_text(text.replace(urls[0], str(remote)))
    git.Repo(root).git.commit("--amend", "--no-edit", "--quiet", "--", ".dvc/config")


@pytest.fixture
def workspace(workspace_template: Path, dvc_remote: Path, tmp_path: Path) -> Path:
    """An initialised workspace with a DVC remote of its own (`dvc_remote`), two environments,
    a judge and a run: a private copy of the session's template."""
    root = tmp_path / "repo"
    shutil.copytree(workspace_template, root, symlinks=True)
    point_dvc_remote(root, dvc_remote)
    return root


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
def example_built(tmp_path_factory: pytest.TempPathFactory) -> ExampleResult:
    """The bundled example, built once per session (what `gov example` prints comes from
    this). Read it only: copy it to change it."""
    return build_example(tmp_path_factory.mktemp("example") / "example")


@pytest.fixture(scope="session")
def example_template(example_built: ExampleResult) -> Path:
    """The session's bundled example workspace. Read it only: copy it to change it."""
    return example_built.root


@pytest.fixture
def example_copy(example_template: Path, tmp_path: Path) -> Path:
    """A private copy of the bundled example (a real git repository with its DVC cache)."""
    copy = tmp_path / "example"
    shutil.copytree(example_template, copy, symlinks=True)
    return copy


def apt_install(package: str) -> None:
    """Install a Debian package the test set-up needs where it is missing (as root, with apt),
    as CI's fresh machine needs Chromium and Java: a no-op where apt or root is not there."""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package], check=True, env=env, capture_output=True
    )


def counts_line(
    env: str, step: int, n: int, rationalized: int, judge_version: str = "1"
) -> dict[str, Any]:
    """One record of aggregated counts (the form gov ingest takes) for main@STEP: n judged
    episodes of cot-monitor in version 1 of `env`, `rationalized` of them rationalized and
    the rest none."""
    return {
        "run": "main",
        "step": step,
        "environment": env,
        "environment_version": 1,
        "judge": "cot-monitor",
        "judge_version": judge_version,
        "n": n,
        "none": n - rationalized,
        "rejected": 0,
        "rationalized": rationalized,
        "overt": 0,
        "divergent": 0,
    }


# -- a real S3 endpoint: moto's server over HTTP on 127.0.0.1 (the s3 extra and moto) -----------
@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """A client of the endpoint, which gov reaches through the same variables."""
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3 = pytest.importorskip("boto3")
    return boto3.client("s3")


def bucket(s3: Any, name: str, *, versioned: bool) -> str:
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name
