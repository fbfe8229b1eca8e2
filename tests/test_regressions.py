"""Defects found when the code was split into layers; each test failed before its fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from governance import open_registry
from governance.rollback import next_run_name


def _counts(
    step: int, n: int, env: str = "math", version: int = 1, **verdicts: int
) -> dict[str, Any]:
    record = {"rejected": 0, "rationalized": 0, "overt": 0, "divergent": 0, **verdicts}
    record["none"] = n - record["rejected"] - record["rationalized"] - record["overt"]
    return {
        "run": "main",
        "step": step,
        "environment": env,
        "environment_version": version,
        "judge": "cot-monitor",
        "judge_version": "1",
        "n": n,
        **record,
    }


def _run(
    registry: Any,
    artifact: Callable[[str], Path],
    tmp_path: Path,
    gov: Any,
    records: list[dict[str, Any]],
    exposure: Callable[[int], dict[str, float]] | None = None,
) -> None:
    """Register a checkpoint per distinct step (exposed to math), then ingest the counts."""
    steps = sorted({r["step"] for r in records})
    for step in steps:
        mix = exposure(step) if exposure else {"math": 1.0}
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), mix)
    report = tmp_path / "counts.jsonl"
    report.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = gov("ingest", str(report), cwd=registry.ws.root)
    assert done.exit_code == 0, done.stderr


def test_dvc_plots_writes_one_file_per_series(gov, example_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    done = gov("metrics", "--metric", "all", "--dvc-plots", str(out), cwd=example_copy)
    assert done.exit_code == 0, done.stderr
    said = int(done.stdout.split("wrote ")[1].split(" series")[0])
    files = sorted(out.glob("*.csv"))
    # 5 metrics x 10 environments: every series its own file, none overwriting another
    assert said == len(files) == 50
    assert {f.name.split("-")[0] for f in files} == {
        "rationalization_rate",
        "rationalization_share",
        "rejection_rate",
        "overt_rate",
        "divergence_rate",
    }


def test_the_next_run_after_a_rollback_keeps_the_whole_name(registry) -> None:
    registry.add_run("grpo-rope")
    assert next_run_name(registry, "grpo-rope") == "grpo-rope-r1"
    registry.add_run("grpo-rope-r1", parent_run=None)
    assert next_run_name(registry, "grpo-rope") == "grpo-rope-r2"
    assert next_run_name(registry, "grpo-rope-r1") == "grpo-rope-r2"
    assert next_run_name(registry, "main") == "main-r1"


def test_pressure_warns_exactly_where_the_policy_fires(gov, workspace: Path) -> None:
    for i in range(2):
        done = gov(
            "env", "version", "math", "--hash", f"{i + 1:064x}", "--note", "redesign", cwd=workspace
        )
        assert done.exit_code == 0, done.stderr
    shown = gov("audit", "pressure", cwd=workspace)
    assert "math" in shown.stdout and "redesigned" not in shown.stdout  # 2 is not more than 2
    gov("env", "version", "math", "--hash", f"{3:064x}", "--note", "redesign", cwd=workspace)
    shown = gov("audit", "pressure", cwd=workspace)
    assert "math: redesigned 3 times" in shown.stdout and "more than 2" in shown.stdout
    # one threshold: lowering the policy's limit lowers the command's
    policy = workspace / "policies" / "monitor-pressure.yaml"
    policy.write_text(policy.read_text().replace("redesigns: 2", "redesigns: 5"))
    assert "redesigned" not in gov("audit", "pressure", cwd=workspace).stdout


def test_the_restore_point_is_placed_on_the_metric_that_raised_the_flag(
    gov, registry, artifact, tmp_path: Path
) -> None:
    # Overt acting jumps at step 1100; rationalization stays at zero throughout.
    records = [_counts(100 * i, 300, overt=0 if i <= 10 else 24) for i in range(1, 17)]
    _run(registry, artifact, tmp_path, gov, records)
    ws = registry.ws.root
    checked = gov("check", "main@1600", "--format", "json", cwd=ws)
    assert checked.exit_code == 1
    assert json.loads(checked.stdout)["flagged"] == ["math"]
    rec = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    # before the jump, and not far before it: an all-zero series would place it anywhere
    assert rec["restore"] is not None and 800 <= int(rec["restore"].split("@")[1]) <= 1000, rec
    assert "overt_rate" in rec["set_by"]
    assert {e["metric"] for e in rec["flagged"]} == {"overt_rate"}


def test_the_restore_series_is_one_environment_version(
    gov, registry, artifact, tmp_path: Path
) -> None:
    # v1 ran at 4% for 12 checkpoints; the redesigned v2 starts at 0.5% and rises to 5% at step
    # 2200. Pooled, the two versions look like one noisy level and the rise is lost in it.
    v1 = [_counts(100 * i, 400, rationalized=16) for i in range(1, 13)]
    for step in range(100, 1300, 100):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), {"math": 1.0})
    report = tmp_path / "v1.jsonl"
    report.write_text("".join(json.dumps(r) + "\n" for r in v1))
    assert gov("ingest", str(report), cwd=registry.ws.root).exit_code == 0
    gov(
        "env",
        "version",
        "math",
        "--hash",
        f"{7:064x}",
        "--note",
        "harder tasks",
        cwd=registry.ws.root,
    )
    v2 = [_counts(100 * i, 400, version=2, rationalized=2 if i < 22 else 20) for i in range(13, 31)]
    _run(open_registry(registry.ws.root), artifact, tmp_path, gov, v2, lambda _: {"math@2": 1.0})
    ws = registry.ws.root
    assert gov("check", "main@3000", cwd=ws).exit_code == 1
    flag = json.loads(gov("flags", "show", "math", "--format", "json", cwd=ws).stdout)
    assert flag["version"] == 2
    rec = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    restore = int(rec["restore"].split("@")[1]) if rec["restore"] else None
    # inside v2 and before its rise (the restore allows for a small first stage in the checkpoints
    # before it): the pooled series blurred the onset back into v1's level, at or before 1200
    assert restore is not None and 1300 < restore < 2200, rec
    assert [e["environment_version"] for e in rec["flagged"]] == [2]


def test_a_rate_high_from_the_start_has_no_checkpoint_known_clean(
    gov, registry, artifact, tmp_path: Path
) -> None:
    # 1% at the first checkpoint, 60% from the second on: the restore point can only be the
    # first checkpoint, and nothing measures that one against anything before it. (A first
    # checkpoint at a third of the rest, 20%, is as well read as one odd checkpoint: the model
    # lets any checkpoint be an outlier within ten times the rest, and then sees no rise.)
    records = [_counts(100 * i, 200, rationalized=2 if i == 1 else 120) for i in range(1, 13)]
    _run(registry, artifact, tmp_path, gov, records)
    ws = registry.ws.root
    assert gov("check", "main@1200", cwd=ws).exit_code == 1
    rec = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    assert rec["restore"] == "main@100" and rec["known_clean"] is False
    # unknown, not 0.0, which a script would read as "certainly clean"
    assert rec["p_contaminated"] is None
    assert [e["p_contaminated"] for e in rec["flagged"]] == [None]
    assert "no checkpoint in the lineage is known to be clean" in rec["reason"]
    text = gov("rollback", "recommend", cwd=ws).stdout
    assert "no checkpoint in the lineage is known to be clean" in text
    assert "P(already contaminated): unknown" in text and "0.0000" not in text


def test_the_same_counts_in_other_bytes_are_refused_not_added_twice(
    gov, registry, artifact, tmp_path: Path
) -> None:
    # Aggregated counts carry no episode ids: the same counts ingested again from a file of
    # other bytes (Windows line endings, gzip, keys in another order) would double every count.
    import gzip

    from conftest import snapshot
    from governance.counts import ledger

    records = [_counts(100 * i, 300, rationalized=3, rejected=i) for i in range(1, 6)]
    _run(registry, artifact, tmp_path, gov, records)
    text = "".join(json.dumps(r) + "\n" for r in records)
    crlf = tmp_path / "counts-crlf.jsonl"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    packed = tmp_path / "counts.jsonl.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text(
        "".join(json.dumps(dict(reversed(r.items()))) + "\n" for r in records[::-1])
    )
    root = registry.ws.root
    before = snapshot(root)
    for again in (crlf, packed, shuffled):
        done = gov("ingest", str(again), cwd=root)
        assert done.exit_code == 2, done.stdout
        assert "holds exactly the counts of counts.jsonl" in done.stderr
        assert snapshot(root) == before
    # Counts that differ in one cell are another shard: added.
    other = [dict(r) for r in records]
    other[0]["rejected"], other[0]["none"] = other[0]["rejected"] + 1, other[0]["none"] - 1
    shard = tmp_path / "shard.jsonl"
    shard.write_text("".join(json.dumps(r) + "\n" for r in other))
    assert gov("ingest", str(shard), cwd=root).exit_code == 0
    assert [e.source for e in ledger(registry.ws)] == ["counts.jsonl", "shard.jsonl"]
    # Another batch that happens to hold the same counts, said so: added.
    assert gov("ingest", "--same-counts", str(crlf), cwd=root).exit_code == 0
    assert [e.source for e in ledger(registry.ws)][-1] == "counts-crlf.jsonl"
    # Two files of the same new counts in one call: the second is the first's twin there.
    fresh = [_counts(100 * i, 300, rationalized=4, rejected=i) for i in range(1, 6)]
    first, second = tmp_path / "fresh.jsonl", tmp_path / "fresh.jsonl.gz"
    first.write_text("".join(json.dumps(r) + "\n" for r in fresh))
    second.write_bytes(gzip.compress(first.read_bytes()))
    again = gov("ingest", str(first), str(second), cwd=root)
    assert again.exit_code == 2, again.stderr
    assert "holds exactly the counts of fresh.jsonl in this same call" in again.stderr
