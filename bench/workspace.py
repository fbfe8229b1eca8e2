"""The workspace every benchmark starts from: one run of placeholder checkpoints, registered
through gov's own library (git, DVC and all), with environments and one judge."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import git

from governance import NewCheckpoint, Registry, init, open_registry


def bench_workspace(
    root: Path,
    environments: Sequence[str],
    checkpoints: int,
    step: int,
    exposure: Callable[[int], dict[str, float]],
    judge_version: str | None = None,
) -> Registry:
    """A new workspace at `root`: checkpoint i is main@(i+1)*step, trained on exposure(i)."""
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "bench")
        config.set_value("user", "email", "bench@example.com")
    init(root)
    reg = open_registry(root)
    for number, env in enumerate(environments, start=1):
        reg.add_environment(env, content_hash=f"{number:064x}")
    if judge_version is not None:
        reg.add_judge("cot-monitor", judge_version, rubric_hash="f" * 64)
    reg.add_run("main")
    folder = root / "ckpt"
    folder.mkdir()
    new = []
    for i in range(checkpoints):
        path = folder / f"step-{i:06d}.bin"
        path.write_bytes(b"placeholder weights %d" % i)
        new.append(NewCheckpoint(step=(i + 1) * step, artifact=path, exposure=exposure(i)))
    reg.add_checkpoints("main", new)
    return reg
