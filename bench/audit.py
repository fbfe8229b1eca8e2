"""Reading and verifying an audit trail of 100,000 entries.

Builds a workspace whose trail holds N chained entries (written as gov writes them, committed
in batches with their chain heads as git trailers), then times, as processes: `gov audit log`
filtered by kind and by environment, `gov audit show` of one entry, `gov audit verify`, and one
more append (`gov flags ack`). No anchor is named for this: the figures stand alone.

Usage: python bench/audit.py [--entries N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import git
from workspace import bench_workspace

from governance import audit, open_registry
from governance.audit import (
    ENTRY_TRAILER,
    GENESIS,
    HEAD_TRAILER,
    KIND_FILES,
    SEALED,
    SEGMENT,
    entry_id,
)
from governance.records import KINDS


def write_trail(root: Path, entries: int, batches: int = 20, verifiable: bool = False) -> str:
    """N chained entries (after any the trail has), committed in `batches` commits; returns one
    entry id from the middle. `verifiable`: a trail `gov audit verify` accepts whole: only kinds
    whose commit need change nothing but the trail, each entry named by its commit's trailers.
    Laid out as gov lays a long trail out: every SEGMENT entries sealed into audit/trail/, the
    newest in audit/trail.jsonl (a workspace that grew one append at a time looks like this)."""
    kinds = [k for k in KINDS if k not in KIND_FILES] if verifiable else list(KINDS)
    batch: list[str] = []
    repo = git.Repo(root)
    path = root / "audit" / "trail.jsonl"
    prev, middle, first = GENESIS, "", 1
    active: list[str] = []  # the active file's lines
    if path.exists() and path.stat().st_size:  # carry on the chain the workspace began
        active = path.read_text().splitlines(keepends=True)
        last = json.loads(active[-1])
        prev, first = last["id"], last["seq"] + 1
    opened = json.loads(active[0])["seq"] if active else first  # the active file's first entry
    touched = {"audit/trail.jsonl"}
    per = max(1, entries // batches)
    for seq in range(first, first + entries):
        if seq - opened >= SEGMENT:  # as gov's append does: the full file sealed, unchanged
            segment = root / "audit" / SEALED / f"{opened:010d}.jsonl"
            segment.parent.mkdir(exist_ok=True)
            segment.write_text("".join(active))
            touched.add(segment.relative_to(root).as_posix())
            active, opened = [], seq
        entry: dict[str, object] = {
            "seq": seq,
            "prev": prev,
            "kind": kinds[seq % len(kinds)],
            "time": f"2026-{1 + seq % 12:02d}-01T00:00:00+00:00",
            "actor": "bench <bench@example.com>",
            "subject": {
                "run": "main",
                "checkpoint": f"main@{seq}",
                "environment": f"env-{seq % 300}",
            },
            "inputs": {"policies": {"policies/a.yaml": "0" * 64}, "reports": []},
            "outcome": "pass",
        }
        prev = entry_id(entry)
        entry["id"] = prev
        active.append(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        batch.append(prev if verifiable else "")
        if seq == first + entries // 2:
            middle = prev
        if seq % per == 0 or seq == first + entries - 1:
            path.write_text("".join(active))
            repo.index.add(sorted(touched))
            touched = {"audit/trail.jsonl"}
            named = "".join(f"{ENTRY_TRAILER}: {i}\n" for i in batch[:-1] if i)
            repo.index.commit(
                f"gov: bench entries\n\n{named}{ENTRY_TRAILER}: {prev}\n"
                f"{HEAD_TRAILER}: {seq} {prev}\n"
            )
            batch.clear()
    return middle


def timed(cmd: list[str], cwd: Path, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    gov = shutil.which("gov")
    if gov is None:
        sys.exit("install gov first: python3 -m pip install .")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        bench_workspace(root, ["env-0"], 3, 10, lambda _: {"env-0": 1.0}, judge_version="1")
        middle = write_trail(root, args.entries)
        size = (root / "audit" / "trail.jsonl").stat().st_size
        print(f"trail: {args.entries:,} entries, {size / 1e6:.0f} MB (median of 3 runs each)")
        rows = [
            (
                "gov audit log --kind override",
                [gov, "audit", "log", "--kind", "override", "--format", "json"],
            ),
            (
                "gov audit log --env env-7",
                [gov, "audit", "log", "--env", "env-7", "--format", "json"],
            ),
            ("gov audit show ID", [gov, "audit", "show", middle[:12], "--format", "json"]),
            ("gov status (does not read the trail)", [gov, "status"]),
        ]
        for label, cmd in rows:
            print(f"  {label:40} {timed(cmd, root):6.2f} s")
        # verify checks each entry against the commit that carries it: a trail of its own, of
        # the kinds whose commit changes nothing but the trail (the bench commits no records).
        whole = Path(tmp) / "verifiable"
        whole.mkdir()
        bench_workspace(whole, ["env-0"], 3, 10, lambda _: {"env-0": 1.0}, judge_version="1")
        write_trail(whole, args.entries, verifiable=True)
        print(f"  {'gov audit verify':40} {timed([gov, 'audit', 'verify'], whole):6.2f} s")
        # What one `gov check` reads of the trail: the newest decision's policies, and the
        # redesign pressure of every environment (read once, for 300 series here).
        ws = open_registry(root).ws
        start = time.perf_counter()
        audit.policy_change(ws, {})
        pressure = audit.pressure(ws)
        assert all(pressure.get(f"env-{e}", {}).get("redesign", 0) >= 0 for e in range(300))
        label = "a check's trail reads, 300 environments"
        print(f"  {label:40} {time.perf_counter() - start:6.2f} s (library)")


if __name__ == "__main__":
    main()
