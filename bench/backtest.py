"""Replaying the policies over a run of 2,000 checkpoints and 300 environments.

Builds a workspace with one run of C checkpoints, E environments and one judge, ingests an
aggregated report of C x E counts (a few planted rises), then times `gov backtest` with the
default policies, as a library call and as a process (target: under a minute on 2 cores), and
`gov check` at the last checkpoint (target: under 5 s).

Usage: python bench/backtest.py [--checkpoints C] [--environments E]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workspace import bench_workspace

from governance import open_registry
from governance.backtest import backtest
from governance.ingest import ingest


def build(root: Path, checkpoints: int, environments: int) -> dict[str, int]:
    """The workspace, and the planted rises: environment -> the checkpoint it rises at."""
    envs = [f"env-{i:03d}" for i in range(environments)]
    phase = min(20, environments)  # each checkpoint trains on 20 environments at a time
    reg = bench_workspace(
        root,
        envs,
        checkpoints,
        10,
        lambda i: {envs[(i + j) % environments]: 1 / phase for j in range(phase)},
        judge_version="1",
    )

    rng = random.Random(11)
    rising = {
        envs[j]: rng.randrange(checkpoints // 2, checkpoints) for j in range(0, environments, 50)
    }
    report = root.parent / "counts.jsonl"
    with report.open("w") as out:
        for i in range(checkpoints):
            for env in envs:
                n = rng.randint(40, 320)
                rate = 0.004 if i < rising.get(env, checkpoints) else 0.05
                rationalized = sum(1 for _ in range(n) if rng.random() < rate)
                rejected = sum(1 for _ in range(n) if rng.random() < 0.02)
                rejected = min(rejected, n - rationalized)
                out.write(
                    json.dumps(
                        {
                            "run": "main",
                            "step": (i + 1) * 10,
                            "environment": env,
                            "environment_version": 1,
                            "judge": "cot-monitor",
                            "judge_version": "1",
                            "n": n,
                            "none": n - rationalized - rejected,
                            "rejected": rejected,
                            "rationalized": rationalized,
                            "overt": 0,
                            "divergent": min(n, rng.randint(0, 3)),
                        }
                    )
                    + "\n"
                )
    ingest(reg, [report])
    return rising


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=2000)
    parser.add_argument("--environments", type=int, default=300)
    args = parser.parse_args()
    gov = shutil.which("gov")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        start = time.perf_counter()
        rising = build(root, args.checkpoints, args.environments)
        print(
            f"built {args.checkpoints} checkpoints x {args.environments} environments "
            f"({args.checkpoints * args.environments:,} counts) in "
            f"{time.perf_counter() - start:.0f} s (not timed below)"
        )
        start = time.perf_counter()
        result = backtest(open_registry(root), "main")
        library = time.perf_counter() - start
        found = set(result.flagged) & set(rising)
        # flagged before the onset: an alarm too early to be the planted rise's
        early = [e for e in found if int(result.flagged[e].split("@")[1]) < (rising[e] + 1) * 10]
        print(
            f"  library backtest: {library:6.1f} s, {len(result.alarms)} first alarms, "
            f"{len(result.flagged)} environments flagged: {len(found)} of the {len(rising)} "
            f"planted rises ({len(early)} before their onset), "
            f"{len(set(result.flagged) - set(rising))} of the {args.environments - len(rising)} "
            "steady environments"
        )
        if not gov:
            sys.exit("install gov to time the commands")
        start = time.perf_counter()
        subprocess.run(
            [gov, "backtest", "--run", "main"], cwd=root, check=True, capture_output=True
        )
        print(f"  gov backtest:     {time.perf_counter() - start:6.1f} s (target < 60 s)")
        last = f"main@{args.checkpoints * 10}"
        start = time.perf_counter()
        checked = subprocess.run([gov, "check", last], cwd=root, capture_output=True)
        if checked.returncode not in (0, 1):
            sys.exit(checked.stderr.decode())
        print(f"  gov check {last}: {time.perf_counter() - start:6.1f} s (target < 5 s)")


if __name__ == "__main__":
    main()
