"""Reports that are mostly nothing, refused at reading speed: a report of blank lines only and a
small gzip that inflates to gigabytes of newlines, each beside the time it takes merely to read
(or inflate) the same file in this one run.

Targets (issue 17): the blank report refused in time proportional to reading it; the gzip
refused quickly with one clear line (its size field, or the inflation limit while reading).

Usage: python bench/bad_input.py [--blank-mb M] [--bomb-gib G]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workspace import bench_workspace


def timed(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done.returncode, done.stderr.strip()


def read_seconds(path: Path, inflate: bool = False) -> float:
    """Reading the file once (inflating it, for a gzip), hashing nothing but md5 on the way."""
    digest = hashlib.md5(usedforsecurity=False)
    start = time.perf_counter()
    with gzip.open(path, "rb") if inflate else path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blank-mb", type=int, default=256)
    parser.add_argument("--bomb-gib", type=int, default=4)
    args = parser.parse_args()
    gov = shutil.which("gov")
    if gov is None:
        sys.exit("install gov first: python3 -m pip install .")
    with tempfile.TemporaryDirectory(prefix="gov-bad-") as tmp:
        top = Path(tmp)
        root = top / "ws"
        root.mkdir()
        bench_workspace(root, ["env-00"], 2, 10, lambda _: {"env-00": 1.0}, judge_version="1")
        blank = top / "blank.jsonl"
        with blank.open("wb") as out:
            for _ in range(args.blank_mb):
                out.write(b"\n" * (1 << 20))
        bomb = top / "bomb.jsonl.gz"
        with gzip.open(bomb, "wb", compresslevel=9) as out:
            out.write(b'{"run": "main", "step": 10, "verdict": "none"}\n')
            block = b"\n" * (64 << 20)
            for _ in range(args.bomb_gib * 16):
                out.write(block)
        rows = []
        packed = f"{bomb.stat().st_size / 1e6:.1f} MB gzip of {args.bomb_gib} GiB of newlines"
        for name, path, inflate in (
            (f"{args.blank_mb} MB of blank lines", blank, False),
            (packed, bomb, True),
        ):
            seconds, code, said = timed([gov, "ingest", str(path)], root)
            rows.append((name, seconds, read_seconds(path, inflate), code, said))
    print(f"  {'report':44}{'gov ingest':>11}{'reading it':>12}  exit  what gov said")
    for name, seconds, reading, code, said in rows:
        print(f"  {name:44}{seconds:10.2f}s{reading:11.2f}s  {code:>4}  {said[:90]}")
    print("  (reading it: one pass over the file, inflating the gzip, with md5; gov's time")
    print("   includes its start-up)")


if __name__ == "__main__":
    main()
