"""`gov judge compare`: two versions of a judge on what both judged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from governance.stats.agreement import kappa, rate_ratio


def _episode(step: int, i: int, version: str, verdict: str, env: str = "math") -> dict[str, Any]:
    return {
        "run": "main",
        "step": step,
        "environment": env,
        "environment_version": 1,
        "episode": f"ep-{step}-{env}-{i}",
        "judge": "cot-monitor",
        "judge_version": version,
        "verdict": verdict,
        "divergent": False,
    }


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def judged(registry, artifact, tmp_path: Path) -> Path:
    """Checkpoints 100 and 200; version 2 of the judge registered."""
    rubric = tmp_path / "rubric-2.md"
    rubric.write_text("Judge rationalization, more sensitively.\n")
    registry.add_judge("cot-monitor", "2", rubric=[rubric])
    for step in (100, 200):
        registry.add_checkpoint(
            "main", step, artifact(f"s{step}.pt"), {"math": 0.5, "code-tests": 0.5}
        )
    return registry.ws.root


def test_versions_are_compared_on_the_episodes_both_judged(gov, judged: Path, tmp_path) -> None:
    # 300 episodes judged by both: version 2 calls 30 of version 1's "none" and 6 of its
    # "rejected" rationalized; they agree on everything else
    first, second = [], []
    plan = [
        ("none", "none", 200),
        ("none", "rationalized", 30),
        ("rejected", "rejected", 44),
        ("rejected", "rationalized", 6),
        ("rationalized", "rationalized", 20),
    ]
    i = 0
    for a, b, count in plan:
        for _ in range(count):
            env = "math" if i % 2 else "code-tests"
            first.append(_episode(100, i, "1", a, env))
            second.append(_episode(100, i, "2", b, env))
            i += 1
    for name, records in (("v1.jsonl", first), ("v2.jsonl", second)):
        done = gov("ingest", str(_write(tmp_path / name, records)), cwd=judged)
        assert done.exit_code == 0, done.stderr
    done = gov("judge", "compare", "cot-monitor", "1", "2", "--format", "json", cwd=judged)
    assert done.exit_code == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["basis"] == "episodes" and found["episodes"] == 300
    assert found["confusion"]["none"]["rationalized"] == 30
    assert found["confusion"]["rejected"]["rationalized"] == 6
    assert found["confusion"]["rationalized"]["rationalized"] == 20
    assert found["agreement"] == pytest.approx(264 / 300)
    assert -1 < found["kappa"]["low"] < found["kappa"]["value"] < found["kappa"]["high"] < 1
    assert found["ratio"]["value"] == pytest.approx(56 / 20)  # 56 rationalized against 20
    assert found["ratio"]["low"] < 56 / 20 < found["ratio"]["high"]
    assert {e["environment"] for e in found["environments"]} == {"math", "code-tests"}
    assert sum(e["episodes"] for e in found["environments"]) == 300
    text = gov("judge", "compare", "cot-monitor", "1", "2", cwd=judged)
    assert text.exit_code == 0 and "Cohen's kappa" in text.stdout and "verdicts" in text.stdout


def test_without_shared_episodes_the_checkpoints_are_compared(gov, judged: Path, tmp_path) -> None:
    first = [_episode(100, i, "1", "rationalized" if i < 5 else "none") for i in range(100)]
    second = [
        _episode(100, 1000 + i, "2", "rationalized" if i < 10 else "none") for i in range(100)
    ]
    for name, records in (("v1.jsonl", first), ("v2.jsonl", second)):
        assert gov("ingest", str(_write(tmp_path / name, records)), cwd=judged).exit_code == 0
    found = json.loads(
        gov("judge", "compare", "cot-monitor", "1", "2", "--format", "json", cwd=judged).stdout
    )
    assert found["basis"] == "checkpoints" and found["kappa"] is None
    assert found["ratio"]["value"] == pytest.approx(2.0)
    assert "agreement cannot be measured" in found["note"]


def test_no_overlap_at_all_is_said(gov, judged: Path, tmp_path) -> None:
    first = [_episode(100, i, "1", "none") for i in range(20)]
    second = [_episode(200, i, "2", "none") for i in range(20)]
    for name, records in (("v1.jsonl", first), ("v2.jsonl", second)):
        assert gov("ingest", str(_write(tmp_path / name, records)), cwd=judged).exit_code == 0
    done = gov("judge", "compare", "cot-monitor", "1", "2", "--format", "json", cwd=judged)
    found = json.loads(done.stdout)
    assert found["episodes"] == 0 and found["ratio"]["value"] is None
    assert "cannot be compared" in found["note"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["cot-monitor", "1", "7"], "judge 'cot-monitor' has no version '7' (known: 1, 2)"),
        (["nobody", "1", "2"], "judge 'nobody' is not registered"),
        (["cot-monitor", "1", "1"], "two different versions"),
    ],
)
def test_bad_versions_are_one_line_exit_two(gov, judged: Path, args, fragment: str) -> None:
    done = gov("judge", "compare", *args, cwd=judged)
    assert done.exit_code == 2
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_kappa_and_ratio_on_known_values() -> None:
    # po = 0.7 and pe = 0.5 (each judge says yes half the time): kappa = (0.7 - 0.5) / 0.5
    found = kappa([[20, 5], [10, 15]])
    assert found.value == pytest.approx(0.4)
    assert 0.1 < found.low < 0.4 < found.high < 0.7
    # perfect agreement on two balanced verdicts: kappa 1, interval below it
    perfect = kappa([[50, 0], [0, 50]])
    assert perfect.value == pytest.approx(1.0) and 0.85 < perfect.low < perfect.high <= 1.0
    assert np.isnan(kappa([[0, 0], [0, 0]]).value)
    ratio = rate_ratio(10, 1000, 30, 1000)
    assert ratio.value == pytest.approx(3.0) and 1.4 < ratio.low < 3.0 < ratio.high < 6.5
    with pytest.raises(ValueError):
        kappa([[1, 2, 3]])
    with pytest.raises(ValueError):
        rate_ratio(5, 3, 1, 10)
