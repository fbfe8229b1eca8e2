"""A new judge version is a new series: no alarm for the step between versions, the young
series says when a rise can show, and a policy's judge_bridge carries the analysis across."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import counts_line

BRIDGE = """\
schema_version: 1
name: bridged-rising
description: the rationalization rate rising, carried across the judge change
metric: rationalization_rate
scope: environment
judge: cot-monitor
judge_bridge: {from: cot-monitor@1, to: cot-monitor@2}
condition:
  onset: {probability: 0.95}
min_evidence: {n: 20}
actions: [block]
"""


def _records(rise: bool) -> list[dict[str, Any]]:
    """Version 1 judges checkpoints 1 to 14 at 2%; version 2, 2.5 times as sensitive, judges
    10 to 24 at 5% (both judged 10 to 14); with `rise`, the model's rate triples from 20 on."""
    found = [counts_line("math", 100 * i, 400, 8 + (i % 3) - 1, "1") for i in range(1, 15)]
    for i in range(10, 25):
        base = 20 + (i % 3) - 1
        found.append(counts_line("math", 100 * i, 400, base * 3 if rise and i >= 20 else base, "2"))
    return found


@pytest.fixture
def changed(registry, artifact, tmp_path: Path, gov) -> Path:
    rubric = tmp_path / "rubric-2.md"
    rubric.write_text("A more sensitive rubric.\n")
    registry.add_judge("cot-monitor", "2", rubric=[rubric])
    for i in range(1, 25):
        registry.add_checkpoint("main", 100 * i, artifact(f"s{i}.pt"), {"math": 1.0})
    return registry.ws.root


def _ingest(gov, root: Path, tmp_path: Path, records: list[dict[str, Any]]) -> None:
    report = tmp_path / "counts.jsonl"
    report.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert gov("ingest", str(report), cwd=root).exit_code == 0


def _result(gov, root: Path, ref: str, policy: str, version: str) -> dict[str, Any]:
    done = gov("check", ref, "--dry-run", "--format", "json", cwd=root)
    results = json.loads(done.stdout)["results"]
    [found] = [
        r for r in results if r["policy"] == policy and r["series"].get("judge_version") == version
    ]
    return found


def test_a_new_judge_version_is_young_and_its_step_is_no_alarm(
    gov, changed: Path, tmp_path: Path
) -> None:
    _ingest(gov, changed, tmp_path, _records(rise=False))
    young = _result(gov, changed, "main@1100", "rationalization-rate-rising", "2")
    assert young["status"] == "insufficient"
    assert "judge cot-monitor version 2 is young (from main@1000)" in young["reason"]
    assert "2 judged checkpoints" in young["reason"]
    assert "a rise can show 1 judged checkpoint from now" in young["reason"]
    for step in (1500, 2400):  # every rate 2.5x higher from the change on: not a rise
        done = gov("check", f"main@{step}", "--format", "json", cwd=changed)
        assert done.exit_code == 0, done.stdout


def test_a_bridge_carries_the_analysis_across_the_change(
    gov, changed: Path, tmp_path: Path
) -> None:
    (changed / "policies" / "bridged-rising.yaml").write_text(BRIDGE)
    _ingest(gov, changed, tmp_path, _records(rise=True))
    before = _result(gov, changed, "main@1900", "bridged-rising", "2")
    assert before["status"] == "clear", before["reason"]
    assert "carried across from cot-monitor version 1 by judge_bridge" in before["reason"]
    # the series reaches back before the change: it is not young at v2's third checkpoint
    early = _result(gov, changed, "main@1100", "bridged-rising", "2")
    assert early["status"] == "clear", early["reason"]
    after = _result(gov, changed, "main@2400", "bridged-rising", "2")
    assert after["status"] == "fired", after["reason"]
    onset = int(after["reason"].split("onset ~ main@")[1].split()[0].rstrip(";,"))
    assert 1900 <= onset <= 2100


def test_a_bridge_without_shared_checkpoints_says_so(gov, changed: Path, tmp_path: Path) -> None:
    (changed / "policies" / "bridged-rising.yaml").write_text(BRIDGE)
    apart = [
        r for r in _records(rise=False) if not (r["judge_version"] == "1" and r["step"] >= 1000)
    ]
    _ingest(gov, changed, tmp_path, apart)
    found = _result(gov, changed, "main@2000", "bridged-rising", "2")
    assert "no checkpoint was judged by both versions" in found["reason"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("to: cot-monitor@2", "to: other-judge@2"),
        ("to: cot-monitor@2", "to: cot-monitor@1"),
        ("scope: environment", "scope: run"),
    ],
)
def test_bad_bridges_are_refused(gov, changed: Path, change: str, fragment: str) -> None:
    (changed / "policies" / "bridged-rising.yaml").write_text(BRIDGE.replace(change, fragment))
    done = gov("check", "main@100", cwd=changed)
    assert done.exit_code == 2
    assert "bridged-rising.yaml" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_judge_changed_with_no_checkpoint_judged_by_both_blocks_until_measured(
    gov, changed: Path, tmp_path: Path
) -> None:
    # Version 1 judges checkpoints 1 to 14 at 2%, version 2 judges 15 to 24 at 5%, and no
    # checkpoint was judged by both: a more sensitive judge, or a rise that came with the change?
    # Each version's series is steady, so every policy passed it.
    found = [counts_line("math", 100 * i, 400, 8 + (i % 3) - 1, "1") for i in range(1, 15)]
    found += [counts_line("math", 100 * i, 400, 20 + (i % 3) - 1, "2") for i in range(15, 25)]
    _ingest(gov, changed, tmp_path, found)
    done = gov("check", "main@2000", "--dry-run", "--format", "json", cwd=changed)
    assert done.exit_code == 1, done.stderr
    data = json.loads(done.stdout)
    [switch] = [r for r in data["results"] if r["policy"] == "judge-switch-unmeasured"]
    assert switch["status"] == "fired"
    assert switch["series"]["environment"] == "math"
    said = "changed from version 1 to 2 at main@1500 with no checkpoint judged by both"
    assert said in switch["reason"]
    assert [r["policy"] for r in data["results"] if r["status"] == "fired"] == [
        "judge-switch-unmeasured"
    ]
    before = gov("check", "main@1400", "--dry-run", cwd=changed)  # the switch is still ahead
    assert before.exit_code == 0, before.stdout
    # Version 2 on three checkpoints from before the switch measures it: the gate clears
    overlap = tmp_path / "overlap"
    overlap.mkdir()
    lines = [counts_line("math", 100 * i, 400, 20 + (i % 3) - 1, "2") for i in (12, 13, 14)]
    _ingest(gov, changed, overlap, lines)
    cleared = gov("check", "main@2000", "--dry-run", "--format", "json", cwd=changed)
    assert cleared.exit_code == 0, cleared.stdout
    assert "judge-switch-unmeasured" not in cleared.stdout
