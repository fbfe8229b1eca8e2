"""From a checkpoint landing to its decision, at a real run's scale: each step a fresh process.

Builds (untimed) a workspace of C checkpoints x E environments with `bench/backtest.py`'s builder
(one run, one judge, a few planted rises, C x E aggregated counts) and an audit trail of 50 x C
entries (100,000 at C = 2,000, committed a checkpoint's worth at a time), then times, each as a
fresh `gov` process on this machine, the work done when one more checkpoint lands:
`gov checkpoint add`, `gov ingest` of its report (E x 100 judged episodes), `gov check`,
`gov rollback recommend`, `gov report`; then
`gov status`, `gov checkpoint show`, `gov audit verify`, `gov audit show` of an entry from the
middle of the trail (by id prefix) and `gov --help` (start-up). The same is done at a smaller C
beside it (cost growing with the run) and at 200 x 30. Peak memory is each child's own
peak resident memory, by GNU time. The steps that change nothing (status, checkpoint show,
audit show, start-up and the import floor) are run R times (`--repeat`, default 5) and their
median printed: one run of a step this short moves by a tenth of a second with the machine.

Targets (issue 17, 2 cores, 2,000 x 300): add + ingest + check under 5 s, growing no faster than
E from C = 200 to 2,000; `gov report` under 10 s (under 2 s at 200 x 30); `gov status` and
`gov checkpoint show` under 1 s; `gov audit show` under 0.3 s on a 100,000-entry trail; peak
memory of every step under 2 GB.

Usage: python bench/latency.py [--checkpoints C] [--small C] [--environments E] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from audit import write_trail
from backtest import build

# the builder's steady rates (bench/backtest.py): 0.4% rationalized, 2% rejected
VERDICTS = ["none"] * 976 + ["rejected"] * 20 + ["rationalized"] * 4


@dataclass
class Timing:
    seconds: float
    gib: float
    code: int


TIME = "/usr/bin/time"  # GNU time: the child's own peak resident memory (%M, KiB)


def run(cmd: list[str], cwd: Path) -> Timing:
    """Wall seconds and the child's own peak resident memory (GiB), measured by GNU time: a
    child forked from this (large) process would count this process's pages as its own."""
    measured = [TIME, "-f", "%M", *cmd] if Path(TIME).exists() else cmd
    start = time.perf_counter()
    done = subprocess.run(measured, cwd=cwd, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd[1:3])} failed ({done.returncode}): {done.stderr.decode()}")
    tail = done.stderr.decode().strip().splitlines()[-1:] if measured is not cmd else []
    kib = int(tail[0]) if tail and tail[0].isdigit() else 0
    return Timing(seconds, kib / (1 << 20), done.returncode)


def landing_report(path: Path, step: int, environments: int, per: int = 100) -> None:
    """The new checkpoint's judge report: `per` judged episodes in each environment."""
    rng = random.Random(step)
    with path.open("w") as out:
        for e in range(environments):
            for i in range(per):
                out.write(
                    json.dumps(
                        {
                            "schema_version": 1,
                            "run": "main",
                            "step": step,
                            "environment": f"env-{e:03d}",
                            "environment_version": 1,
                            "episode": f"s{step}-e{e}-{i}",
                            "judge": "cot-monitor",
                            "judge_version": "1",
                            "verdict": VERDICTS[rng.randrange(len(VERDICTS))],
                            "divergent": rng.random() < 0.01,
                        }
                    )
                    + "\n"
                )


def measure(
    gov: str, top: Path, checkpoints: int, environments: int, repeat: int = 5
) -> dict[str, Timing]:
    """Build the workspace (untimed), land one more checkpoint and time each step."""
    root = top / f"ws-{checkpoints}x{environments}"
    root.mkdir()
    start = time.perf_counter()
    build(root, checkpoints, environments)
    # One commit per checkpoint's 50 entries: a history as long as a run's (gov commits at least
    # once a step), which `gov audit show` searches for the commit that carries an entry.
    early = write_trail(root, 50 * checkpoints, batches=checkpoints, verifiable=True)
    # A long-lived repository has been packed by git's automatic gc along the way; unpacked,
    # thousands of loose objects would start that gc in the background of the timed steps.
    subprocess.run(["git", "gc", "--quiet"], cwd=root, check=True)
    built = time.perf_counter() - start
    # The trail above was written by the builder, not through gov: a long-lived workspace has
    # verified it on its last append. `gov audit verify` records that (a fresh clone's first
    # append pays the full verification once, as this does).
    first = run([gov, "audit", "verify"], root)
    # A running loop checked the previous checkpoint when it landed (which also keeps the
    # derived state in .gov/ current): done here, untimed.
    previous = run([gov, "check", f"main@{checkpoints * 10}"], root)
    print(
        f"  built {checkpoints} x {environments} with a {50 * checkpoints:,}-entry trail in "
        f"{built:.0f} s (not timed); its first full verification {first.seconds:.1f} s, the "
        f"previous checkpoint's check {previous.seconds:.1f} s",
        flush=True,
    )
    step = (checkpoints + 1) * 10
    artifact = root / "ckpt" / f"step-{checkpoints:06d}.bin"
    artifact.write_bytes(b"placeholder weights, the checkpoint that just landed")
    mixture = root.parent / f"mix-{checkpoints}.yaml"
    phase = min(20, environments)
    mixture.write_text(
        "".join(f"env-{(checkpoints + j) % environments:03d}: {1 / phase}\n" for j in range(phase))
    )
    mix = str(mixture)
    report = root.parent / f"report-{checkpoints}.jsonl"
    landing_report(report, step, environments)
    ref = f"main@{step}"
    steps = [
        ("checkpoint add", [gov, "checkpoint", "add", ref, str(artifact), "--exposure-file", mix]),
        ("ingest", [gov, "ingest", str(report)]),
        ("check", [gov, "check", ref]),
        ("rollback recommend", [gov, "rollback", "recommend"]),
        ("report", [gov, "report", "--output", str(root.parent / f"review-{checkpoints}.html")]),
        ("status", [gov, "status"]),
        ("checkpoint show", [gov, "checkpoint", "show", ref]),
        ("audit verify", [gov, "audit", "verify"]),
        ("audit show (by id)", [gov, "audit", "show", early[:12]]),
        ("--help (start-up)", [gov, "--help"]),
        # The floor of any command as a fresh process: the interpreter and gov's own modules.
        ("import only (floor)", [sys.executable, "-c", "import governance.cli"]),
    ]
    timed = {}
    for name, cmd in steps:
        if name in READ_ONLY:
            runs = [run(cmd, root) for _ in range(repeat)]
            middle = statistics.median(t.seconds for t in runs)
            timed[name] = Timing(middle, max(t.gib for t in runs), runs[-1].code)
        else:
            timed[name] = run(cmd, root)
    return timed


# Steps that leave the workspace as they found it: timed as the median of --repeat runs.
READ_ONLY = {
    "status",
    "checkpoint show",
    "audit show (by id)",
    "--help (start-up)",
    "import only (floor)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=2000)
    parser.add_argument("--small", type=int, default=200, help="the smaller run beside it")
    parser.add_argument("--environments", type=int, default=300)
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs of each step that changes nothing (median)"
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat is at least 1")
    gov = shutil.which("gov")
    if gov is None:
        sys.exit("install gov first: python3 -m pip install .")
    e = args.environments
    with tempfile.TemporaryDirectory(prefix="gov-latency-") as tmp:
        top = Path(tmp)
        print(f"one more checkpoint lands; {os.cpu_count()} cores", flush=True)
        small = measure(gov, top, args.small, e, args.repeat)
        large = measure(gov, top, args.checkpoints, e, args.repeat)
        tiny = measure(gov, top, 200, 30, args.repeat)
    head = f"{args.small} x {e}"
    big = f"{args.checkpoints} x {e}"
    print()
    print(f"  {'':26}{head:>12}{big:>12}{'growth':>8}{'peak GiB':>10}{'200 x 30':>10}  target")
    targets = {
        "report": "< 10 s (< 2 s at 200 x 30)",
        "status": "< 1 s",
        "checkpoint show": "< 1 s",
        "audit show (by id)": "< 0.3 s",
    }
    for name in large:
        a, b = small[name], large[name]
        print(
            f"  {name:26}{a.seconds:11.2f}s{b.seconds:11.2f}s{b.seconds / a.seconds:7.1f}x"
            f"{max(a.gib, b.gib):10.2f}{tiny[name].seconds:9.2f}s  {targets.get(name, '')}"
        )
    landed = ("checkpoint add", "ingest", "check")
    before = sum(small[n].seconds for n in landed)
    after = sum(large[n].seconds for n in landed)
    print(
        f"  {'landed -> decision':26}{before:11.2f}s{after:11.2f}s{after / before:7.1f}x{'':10}"
        f"{sum(tiny[n].seconds for n in landed):9.2f}s  < 5 s, growth ~1x (C grew "
        f"{args.checkpoints / args.small:.0f}x)"
    )
    every = [t.gib for m in (small, large, tiny) for t in m.values()]
    print(f"  peak memory of any step: {max(every):.2f} GiB (target < 2 GiB)")
    print(f"  check exit code at {big}: {large['check'].code} (0 pass, 1 block)")
    print(
        f"  status, checkpoint show, audit show, --help and import: the median of {args.repeat}"
        " runs each; the other steps one run"
    )


if __name__ == "__main__":
    main()
