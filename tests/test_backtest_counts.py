"""`gov backtest --counts`: the default policies replayed over exported counts, without a
workspace, give the alarms and restore points a workspace with the same counts gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_regressions import _counts, _run

KEYS = ("run", "policy", "environment", "judge_version", "step", "outcome", "restore_step")


def _records() -> list[dict[str, Any]]:
    # math rises 6x at step 1300 (the 13th checkpoint); code stays at 1% throughout
    found = []
    for i in range(1, 25):
        found.append(_counts(100 * i, 300, rationalized=3 if i < 13 else 18))
        found.append(_counts(100 * i, 300, env="code", rationalized=3))
    return found


def test_counts_and_workspace_give_the_same_alarms(gov, registry, artifact, tmp_path: Path) -> None:
    records = _records()
    counts = tmp_path / "export.jsonl"
    counts.write_text("".join(json.dumps(r) + "\n" for r in records))
    free = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
    assert free.exit_code == 1, free.stderr  # a blocking policy would have fired
    alarms = json.loads(free.stdout)["alarms"]
    blocking = [a for a in alarms if a["outcome"] == "block"]
    # math's own policy; not the run-wide one: one environment alone carries the rise
    assert [(a["environment"], a["policy"]) for a in blocking] == [
        ("math", "rationalization-rate-rising")
    ]
    [alarm] = blocking
    assert 1300 <= alarm["step"] <= 1600  # after the onset, within three checkpoints
    assert alarm["restore_step"] is not None and alarm["restore_step"] < 1300
    registry.add_environment("code", content_hash=f"{9:064x}")
    _run(registry, artifact, tmp_path, gov, records, lambda _: {"math": 0.5, "code": 0.5})
    on_disk = gov("backtest", "--format", "json", cwd=registry.ws.root)
    assert on_disk.exit_code == 0, on_disk.stderr
    replayed = json.loads(on_disk.stdout)["alarms"]
    assert [{k: a[k] for k in KEYS} for a in replayed] == [{k: a[k] for k in KEYS} for a in alarms]


def test_steady_counts_exit_zero_and_bad_counts_exit_two(gov, tmp_path: Path) -> None:
    steady = tmp_path / "steady.jsonl"
    steady.write_text(
        "".join(
            json.dumps(_counts(100 * i, 300, rationalized=3, rejected=9)) + "\n"
            for i in range(1, 30)
        )
    )
    result = gov("backtest", "--counts", str(steady), "--format", "json", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["alarms"] == []
    bad = tmp_path / "bad.jsonl"
    record = _counts(100, 300, rationalized=3)
    record["n"] = 299  # the verdicts no longer add up to n
    bad.write_text(json.dumps(record) + "\n")
    refused = gov("backtest", "--counts", str(bad), cwd=tmp_path)
    assert refused.exit_code == 2
    assert f"{bad}:1" in refused.stderr and "Traceback" not in refused.stderr
    hashed = tmp_path / "hashed.jsonl"
    hashed.write_text(json.dumps({**_counts(100, 300), "environment_version": "3f2a9c1"}) + "\n")
    refused = gov("backtest", "--counts", str(hashed), cwd=tmp_path)
    assert (
        refused.exit_code == 2 and "without a workspace a version is its number" in refused.stderr
    )
