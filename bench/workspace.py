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


def floor_script(source: str, argument: str) -> str:
    """The floor both the ingest and the aggregate benches print: DuckDB's bare GROUP BY of the
    judged episodes into counts, read `FROM source` (its one parameter `argument`, a Python
    expression of sys.argv), as a script for a fresh process that prints the groups it found."""
    return f"""
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar_print = false")
rows = con.execute('''
SELECT run, step, environment, environment_version, judge, judge_version, count(*) AS n,
       count(*) FILTER (verdict = 'none') AS none,
       count(*) FILTER (verdict = 'rejected') AS rejected,
       count(*) FILTER (verdict = 'rationalized') AS rationalized,
       count(*) FILTER (verdict = 'overt') AS overt, count(*) FILTER (divergent) AS divergent
FROM {source}
GROUP BY ALL''', [{argument}]).fetchall()
print(len(rows))
"""
