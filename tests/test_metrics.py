"""Metrics with their intervals, per environment version and judge version, never pooled."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_ingest import episode, write_jsonl

from governance import api, open_registry, render
from governance.stats.intervals import wilson


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), table I: 0/10 -> [0, 0.2775]; 15/148 -> [0.0624, 0.1605].
    low, high = wilson(0, 10)
    assert low == 0 and math.isclose(high, 0.2775, abs_tol=1e-4)
    low, high = wilson(15, 148)
    assert math.isclose(low, 0.0624, abs_tol=1e-4) and math.isclose(high, 0.1605, abs_tol=1e-4)


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_brackets_the_estimate(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson(k, n)
    assert 0 <= low <= k / n <= high <= 1
    if 0 < k < n:
        assert low < k / n < high


@pytest.fixture
def judged(registry, workspace: Path, artifact, tmp_path: Path) -> Path:
    for step in (100, 200, 300):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), {"math": 1.0})
    registry.add_judge("cot-monitor", "2", rubric_hash="c" * 64)
    records = [episode(100, i, "rationalized" if i < 2 else "none") for i in range(20)]
    records += [episode(200, i, "rejected" if i < 5 else "none") for i in range(10)]
    records += [
        episode(100, i, "rationalized" if i < 6 else "none", judge_version="2") for i in range(20)
    ]
    write_jsonl(tmp_path / "r.jsonl", records)
    from governance.ingest import ingest

    ingest(registry, [tmp_path / "r.jsonl"])
    return workspace


def test_series_per_judge_version_are_not_pooled(judged: Path) -> None:
    found = api.metrics(open_registry(judged), names=["rationalization_rate"]).series
    assert [(s.judge_version, [(p.step, p.k, p.n) for p in s.points]) for s in found] == [
        ("1", [(100, 2, 20), (200, 0, 10)]),
        ("2", [(100, 6, 20)]),
    ]
    point = found[0].points[0]
    assert point.value == 0.1 and (point.low, point.high) == wilson(2, 20)


def test_share_with_no_bad_reasons_is_insufficient_evidence(
    gov, judged: Path, tmp_path: Path
) -> None:
    from governance.ingest import ingest

    # At step 300 the judge saw no bad reason at all (none or overt only): the share's
    # denominator, rejected + rationalized, is 0 there although 12 episodes were judged.
    records = [episode(300, i, "overt" if i < 2 else "none") for i in range(12)]
    ingest(open_registry(judged), [write_jsonl(tmp_path / "quiet.jsonl", records)])
    [v1] = [
        s
        for s in api.metrics(open_registry(judged), names=["rationalization_share"]).series
        if s.judge_version == "1"
    ]
    by_step = {p.step: p for p in v1.points}
    assert by_step[100].value == 1.0  # 2 rationalized, 0 rejected
    assert by_step[200].value == 0.0 and by_step[200].n == 5
    zero = by_step[300]
    assert (zero.k, zero.n, zero.value, zero.low, zero.high) == (0, 0, None, None, None)
    table = gov("metrics", "--metric", "rationalization_share", cwd=judged).stdout
    assert "judge cot-monitor 1" in table and "judge cot-monitor 2" in table
    assert "not pooled" in table
    v1_table = table.split("judge cot-monitor 1", 1)[1].split("judge cot-monitor 2", 1)[0]
    rows = {line.split()[0]: line for line in v1_table.splitlines() if "main@" in line}
    assert set(rows) == {"main@100", "main@200", "main@300"}
    assert "insufficient evidence" in rows["main@300"]
    assert not any("insufficient evidence" in rows[r] for r in ("main@100", "main@200"))
    data = json.loads(
        gov("metrics", "--metric", "rationalization_share", "--format", "json", cwd=judged).stdout
    )
    [v1_json] = [s for s in data if s["judge_version"] == "1"]
    points = {p["step"]: p for p in v1_json["points"]}
    assert points[300]["n"] == 0 and points[300]["value"] is None
    assert points[300]["low"] is None and points[300]["high"] is None
    assert points[200]["value"] == 0.0


def test_metrics_formats(gov, judged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = gov("metrics", "--format", "csv", cwd=judged)
    assert out.exit_code == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["metric"] for r in rows} == {
        "rationalization_rate",
        "rationalization_share",
        "rejection_rate",
        "overt_rate",
        "divergence_rate",
    }
    # A table shows the headline metric; the files and JSON carry every metric unless named.
    table = gov("metrics", cwd=judged).stdout
    assert "rationalization_rate ·" in table and "rejection_rate" not in table
    found = api.metrics(judged)
    assert found.headline == ["rationalization_rate"]
    assert {s.metric for s in found.series} == {r["metric"] for r in rows}
    named = api.metrics(judged, names=["overt_rate", "rejection_rate"])
    assert named.headline == ["overt_rate", "rejection_rate"]
    assert {s.metric for s in named.series} == {"overt_rate", "rejection_rate"}
    rejection = [r for r in rows if r["metric"] == "rejection_rate" and r["step"] == "200"]
    assert rejection[0]["k"] == "5" and rejection[0]["n"] == "10"
    data = json.loads(gov("metrics", "--env", "math", "--format", "json", cwd=judged).stdout)
    assert all(s["environment"] == "math" for s in data)
    # every point as the CSV has it (the interval as the Wilson formula gives it)
    by_key = ("metric", "environment_version", "judge_version")
    csv_math = {
        (*(str(r[c]) for c in by_key), r["step"]): r for r in rows if r["environment"] == "math"
    }
    for series in data:
        for point in series["points"]:
            row = csv_math[(*(str(series[c]) for c in by_key), str(point["step"]))]
            assert (point["k"], point["n"]) == (int(row["k"]), int(row["n"]))
            assert (point["low"], point["high"]) == wilson(point["k"], point["n"])
    # past COMPACT_POINTS points, the same JSON on one line (the C encoder's speed)
    indented = gov("metrics", "--format", "json", cwd=judged).stdout
    monkeypatch.setattr(render, "COMPACT_POINTS", 0)
    compact = gov("metrics", "--format", "json", cwd=judged).stdout
    assert compact.count("\n") == 1 < indented.count("\n")
    assert json.loads(compact) == json.loads(indented)
    none = gov("metrics", "--env", "code-tests", cwd=judged)
    assert "no judgments" in none.stdout
    bad = gov("metrics", "--env", "chess", cwd=judged)
    assert bad.exit_code == 2 and "chess" in bad.stderr


def test_series_follow_the_lineage(judged: Path, registry, artifact, tmp_path: Path) -> None:
    registry.add_run("main-r1", parent_run="main", forked_from_step=100)
    registry.add_checkpoint("main-r1", 150, artifact("r150.pt"), {"math": 1.0})
    write_jsonl(tmp_path / "r1.jsonl", [{**episode(150, 0), "run": "main-r1"}])
    from governance.ingest import ingest

    ingest(registry, [tmp_path / "r1.jsonl"])
    found = api.metrics(
        registry, names=["rationalization_rate"], run="main-r1", judge="cot-monitor"
    ).series
    v1 = next(s for s in found if s.judge_version == "1")
    assert [(p.run, p.step) for p in v1.points] == [("main", 100), ("main-r1", 150)]


@pytest.mark.parametrize("dense", [True, False], ids=["dense-cells", "sorted-cells"])
def test_series_built_as_columns_hold_the_summed_counts(
    example_template: Path, dense: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The columns read straight from DuckDB, grouped by array arithmetic, against plain sums of
    # the row objects: every metric, per environment version and for the whole run; both ways
    # of grouping (counted in a dense array of cells, or sorted, past a size).
    from governance import counts
    from governance.metrics import METRICS
    from governance.stats import series
    from governance.stats.series import build

    monkeypatch.setattr(series, "_DENSE_CELLS", 1 << 24 if dense else 0)

    reg = open_registry(example_template)
    rows = counts.rows(reg.ws)
    order = reg.order("main")
    where = {(r, s): i for i, (r, s, _) in enumerate(order)}
    for metric, definition in METRICS.items():
        for scope in ("environment", "run"):
            expected: dict[tuple, dict[int, list[int]]] = {}
            for row in rows:
                key = (
                    (row.environment, row.environment_version, row.judge, row.judge_version)
                    if scope == "environment"
                    else (None, None, row.judge, row.judge_version)
                )
                tally = expected.setdefault(key, {}).setdefault(where[(row.run, row.step)], [0, 0])
                tally[0] += definition.numerator(row)
                tally[1] += definition.denominator(row)
            built = build(counts.table(reg.ws), metric, order, scope=scope)
            assert {tuple(vars(k).values()) for k in built} == set(expected)
            for key, points in built.items():
                want = expected[tuple(vars(key).values())]
                assert [(p.step, p.k, p.n) for p in points] == [
                    (order[i][1], *want[i]) for i in sorted(want)
                ]
            filled = build(counts.table(reg.ws), metric, order, scope=scope, fill=True)
            for key, points in filled.items():
                want = expected[tuple(vars(key).values())]
                assert len(points) == len(order)
                assert [(p.k, p.n) for p in points] == [
                    tuple(want.get(i, (0, 0))) for i in range(len(order))
                ]
