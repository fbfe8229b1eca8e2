"""Reading a registry of thousands of checkpoints, beside gto (iterative/gto) on the same count.

gto, the closest neighbour, derives its registry by replaying every git tag on each command (its
issue 156: 1,500 tags took 6 to 12 s). gov reads its current state from plain files. This builds
one workspace of N checkpoints with gov and one git repository of N versions registered as gto's
tags, then times, in the same run: gov's library read, `gov checkpoint list` and `gov status` as
commands, and `gto show` of the artifact's versions.

Usage: python bench/registry.py [--checkpoints N] [--repeat R]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import git
from workspace import bench_workspace

from governance import open_registry


def timed(func: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_gov(root: Path, n: int) -> None:
    envs = [f"env-{i}" for i in range(10)]
    bench_workspace(root, envs, n, 10, lambda _: dict.fromkeys(envs, 0.1))


def build_gto(root: Path, n: int) -> None:
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "bench")
        config.set_value("user", "email", "bench@example.com")
    (root / "model.txt").write_text("model\n")
    repo.index.add(["model.txt"])
    repo.index.commit("model")
    # The tags gto's own `gto register` writes: annotated `NAME@vX.Y.Z`, one per version.
    for i in range(n):
        repo.git.tag("-a", f"model@v0.{i // 1000}.{i % 1000}", "-m", f"Registering model v{i}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, repeat = args.checkpoints, args.repeat
    gov_bin, gto_bin = shutil.which("gov"), shutil.which("gto")

    with tempfile.TemporaryDirectory() as tmp:
        ws, gto_repo = Path(tmp) / "gov", Path(tmp) / "gto"
        start = time.perf_counter()
        build_gov(ws, n)
        built = time.perf_counter() - start
        build_gto(gto_repo, n)

        reg = open_registry(ws)
        rows = [
            (f"gov library: all {n} checkpoints", timed(lambda: reg.checkpoints(), repeat)),
            ("gov library: one checkpoint", timed(lambda: reg.checkpoint("main", n * 10), repeat)),
        ]
        if gov_bin:
            for label, cmd in (
                ("gov checkpoint list --format json", ["checkpoint", "list", "--format", "json"]),
                ("gov checkpoint show (latest)", ["checkpoint", "show", f"main@{n * 10}"]),
                ("gov status", ["status"]),
            ):
                rows.append((label, timed(partial(_run, [gov_bin, *cmd], ws), repeat)))
        anchor = None
        if gto_bin:
            anchor = timed(lambda: _run([gto_bin, "show", "model"], gto_repo), repeat)
            rows.append((f"anchor: gto show model ({n} versions)", anchor))

    print(f"registry of {n} checkpoints (built with one batch registration in {built:.1f} s)")
    print(f"median of {repeat} runs each")
    width = max(len(label) for label, _ in rows)
    for label, seconds in rows:
        ratio = f"  {seconds / anchor:8.4f} x gto's time" if anchor and "gto" not in label else ""
        print(f"  {label:<{width}}  {seconds * 1000:9.1f} ms{ratio}")
    if not gov_bin or not gto_bin:
        print("  (install gov and gto to time the commands: `gto` comes with dvc)")


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


if __name__ == "__main__":
    main()
