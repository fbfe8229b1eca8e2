"""Aggregating a Parquet lake of 10 million judged episodes in 200 files with gov, on DuckDB and
on Spark (local, 2 cores), beside DuckDB's bare GROUP BY over the same files.

The bare GROUP BY is the floor: it counts verdicts per key and checks nothing. gov aggregate
also checks every row as gov ingest would (the schema of every file, the per-row rules, the
registry's keys), finds episodes judged twice or two ways (a GROUP BY over every episode), and
md5s every file for the manifest. Each runs as a separate process on the same warm files, one
after the other; the figures are wall time, CPU time and peak resident memory of that process
(wait4 of the one child). The JVM pyspark starts is not a child that wait counts, so Spark's
row has its wall time only.

Spark's figure is printed as what it costs per core here: on a cluster the same SQL divides by
partition across executors, so its core-seconds, not its wall time on 2 cores, are what a
cluster run pays (plus the cluster's own start-up).

Usage: python bench/aggregate.py [--episodes N] [--files F] [--keep DIR] [--no-spark]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workspace import bench_workspace, floor_script

ENVIRONMENTS = [f"env-{i:02d}" for i in range(10)]
FILES_PER_STEP = 4

DUCKDB_FLOOR = floor_script(
    "read_parquet(?, hive_partitioning = true)", "sys.argv[1] + '/*/*/*.parquet'"
)


# The floor and the least the duplicate check costs, in one process: the bare GROUP BY, then
# every episode's 64-bit hash grouped to find the ones seen twice (no checks, no join, no
# manifest). Not the floor (which is the issue's); printed beside it so the cost of the check
# gov must make is measured, not guessed.
DUCKDB_WITH_DUPLICATES = (
    DUCKDB_FLOOR
    + """
repeated = con.execute('''
SELECT k FROM (SELECT hash(run, step, environment, environment_version, judge, judge_version,
                           episode) AS k
               FROM read_parquet(?, hive_partitioning = true))
GROUP BY k HAVING count(*) > 1''', [sys.argv[1] + '/*/*/*.parquet']).fetchall()
print(len(repeated))
"""
)


# The same with the duplicate check done the fastest exact way at hand: every episode's hash
# fetched as one array and sorted (numpy), the repeats read off as equal neighbours.
DUCKDB_WITH_SORTED_HASHES = (
    DUCKDB_FLOOR
    + """
import numpy as np
hashes = con.execute('''
SELECT hash(run, step, environment, environment_version, judge, judge_version, episode) AS k
FROM read_parquet(?, hive_partitioning = true)''', [sys.argv[1] + '/*/*/*.parquet']).fetchnumpy()
keys = hashes["k"]
keys.sort()
print(int((keys[1:] == keys[:-1]).sum()))
"""
)


def build_lake(lake: Path, episodes: int, files: int) -> None:
    """`files` files (FILES_PER_STEP per checkpoint) of consecutive episodes, each of the ten
    environments in turn; 95% none, 3% rejected, 1% rationalized, 1% overt, 1% divergent; the
    judged ones quote a span of evidence."""
    import duckdb

    per_file = episodes // files
    con = duckdb.connect()
    for k in range(files):
        step = (k // FILES_PER_STEP + 1) * 100
        folder = lake / "run=main" / f"step={step}"
        folder.mkdir(parents=True, exist_ok=True)
        base = k * per_file
        count = per_file if k < files - 1 else episodes - base
        con.execute(
            f"""
            COPY (
              SELECT 'ep-' || lpad(CAST({base} + i AS VARCHAR), 9, '0') AS episode,
                     'env-0' || CAST(i % 10 AS VARCHAR) AS environment,
                     1 AS environment_version, 'cot-monitor' AS judge,
                     '2026.10' AS judge_version,
                     CASE WHEN h < 95 THEN 'none' WHEN h < 98 THEN 'rejected'
                          WHEN h < 99 THEN 'rationalized' ELSE 'overt' END AS verdict,
                     hash(i, 'd') % 100 = 0 AS divergent,
                     CAST(0.9 AS DOUBLE) AS confidence,
                     CASE WHEN h >= 95 THEN [{{'start': 10, 'end': 60, 'quote': 'a span'}}]
                     END AS evidence
              FROM (SELECT i, hash({base} + i) % 100 AS h FROM range({count}) t(i))
            ) TO '{folder}/part-{k % FILES_PER_STEP}.parquet' (FORMAT parquet)
            """
        )
    con.close()


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """Wall seconds, peak RSS (GiB), CPU seconds and output of one child process, measured by
    wait4 on that child alone (with the children it reaped)."""
    out_path = cwd / ".bench-out"
    start = time.perf_counter()
    with out_path.open("w") as out, (cwd / ".bench-err").open("w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{(cwd / '.bench-err').read_text()[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / (1 << 20), cpu, out_path.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temp dir)")
    parser.add_argument("--no-spark", action="store_true", help="leave Spark out")
    args = parser.parse_args()
    # the entry point itself, not a version manager's shim in front of it (pyenv's adds a shell)
    beside = Path(sys.executable).with_name("gov")
    gov = str(beside) if beside.exists() else shutil.which("gov")
    if gov is None:
        sys.exit("install gov first: python3 -m pip install '.[spark]'")
    if args.files % FILES_PER_STEP:
        sys.exit(f"--files must be a multiple of {FILES_PER_STEP} (files per checkpoint)")

    tmp = Path(tempfile.mkdtemp(prefix="gov-bench-")) if args.keep is None else args.keep
    try:
        ws = tmp / "ws"
        ws.mkdir(parents=True)
        checkpoints = args.files // FILES_PER_STEP
        mix = dict.fromkeys(ENVIRONMENTS, 0.1)
        bench_workspace(ws, ENVIRONMENTS, checkpoints, 100, lambda _: mix, "2026.10")
        lake = tmp / "lake"
        start = time.perf_counter()
        build_lake(lake, args.episodes, args.files)
        size = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
        print(
            f"lake: {args.episodes:,} judged episodes in {args.files} Parquet files, "
            f"{size / 1e6:.0f} MB (written in {time.perf_counter() - start:.0f} s, not timed)"
        )
        os.sync()
        subprocess.run(["cat", *map(str, lake.rglob("*.parquet"))], stdout=subprocess.DEVNULL)

        floor = run_measured([sys.executable, "-c", DUCKDB_FLOOR, str(lake)], tmp)
        dup = run_measured([sys.executable, "-c", DUCKDB_WITH_DUPLICATES, str(lake)], tmp)
        dup_sorted = run_measured([sys.executable, "-c", DUCKDB_WITH_SORTED_HASHES, str(lake)], tmp)
        duck = run_measured([gov, "aggregate", str(lake), "--out", str(tmp / "d.jsonl")], ws)
        rows: list[tuple[str, tuple[float, float, float, str]]] = [
            ("DuckDB bare GROUP BY (the floor)", floor),
            ("floor + GROUP BY of every episode's hash", dup),
            ("floor + every episode's hash sorted (numpy)", dup_sorted),
            ("gov aggregate --engine duckdb", duck),
        ]
        if not args.no_spark:
            spark = run_measured(
                [
                    gov,
                    "aggregate",
                    str(lake),
                    "--out",
                    str(tmp / "s.jsonl"),
                    "--engine",
                    "spark",
                    "--master",
                    "local[2]",
                ],
                ws,
            )
            rows.append(("gov aggregate --engine spark (local[2])", spark))
            same = (tmp / "d.jsonl").read_bytes() == (tmp / "s.jsonl").read_bytes()
            print(f"DuckDB and Spark wrote {'the same' if same else 'DIFFERENT'} counts")
        print(f"the floor found {floor[3].split()[0]} groups")
        print()
        print(f"  {'':42}{'seconds':>9}{'x floor':>9}{'CPU s':>8}{'peak GiB':>10}")
        for label, (seconds, gib, cpu, _) in rows:
            if "spark" in label:  # its JVM is no child of gov's that wait4 counts
                print(f"  {label:42}{seconds:9.2f}{seconds / floor[0]:9.2f}{'-':>8}{'-':>10}")
            else:
                print(f"  {label:42}{seconds:9.2f}{seconds / floor[0]:9.2f}{cpu:8.1f}{gib:10.2f}")
        print(
            f"\n  target: gov's DuckDB path <= 1.5 x floor = {1.5 * floor[0]:.2f} s "
            f"({'met' if duck[0] <= 1.5 * floor[0] else 'NOT met'}); peak memory "
            f"{duck[1]:.2f} GiB (target < 2 GiB)\n  gov's DuckDB path is "
            f"{duck[0] / dup[0]:.2f} x the floor with the per-episode GROUP BY that the "
            "duplicate check needs\n  the fastest exact duplicate check at hand alone (the "
            f"sorted hashes) makes the floor {dup_sorted[0] / floor[0]:.2f} x"
        )
        if not args.no_spark:
            cores = 2
            per_core = spark[0] * cores
            print(
                f"  Spark here: {spark[0]:.1f} s wall on {cores} cores = {per_core:.0f} "
                f"core-seconds, {per_core / (args.episodes / 1e6):.1f} core-seconds per "
                "million episodes\n  (JVM start-up included): what a cluster run costs per "
                "core, before the cluster's own overheads."
            )
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
