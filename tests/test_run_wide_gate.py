"""The run-wide policy through the public commands: a rise shared by most of a run's
environments, too thin in each to show alone, is caught by gov check, replayed by gov backtest
(with and without a workspace), placed by gov rollback recommend and shown on the review page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_regressions import _counts

ENVS = [f"env{i:02d}" for i in range(20)]
ONSET = 1300  # the 13th checkpoint
LAST = 2000
KEYS = ("run", "policy", "environment", "judge_version", "step", "outcome", "restore_step")


def _records(shared: bool = True) -> list[dict[str, Any]]:
    """20 environments, 30 judged episodes each per checkpoint, base rates 1.5% to 4%; from
    step 1300, 14 of them at 2.2x their rate (none of them alone enough to alarm)."""
    rng = np.random.default_rng(77)
    base = np.linspace(0.015, 0.04, len(ENVS))
    found = []
    for step in range(100, LAST + 1, 100):
        for i, env in enumerate(ENVS):
            rate = base[i] * (2.2 if shared and step >= ONSET and i < 14 else 1.0)
            k = int(rng.binomial(30, rate))
            found.append(_counts(step, 30, env=env, rationalized=k))
    return found


@pytest.fixture
def shared_run(registry, artifact, tmp_path: Path, gov) -> Path:
    for env in ENVS:
        registry.add_environment(env, content_hash=f"{ENVS.index(env) + 100:064x}")
    mix = {env: 1 / len(ENVS) for env in ENVS}
    for step in range(100, LAST + 1, 100):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), mix)
    report = tmp_path / "counts.jsonl"
    report.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    assert gov("ingest", str(report), cwd=registry.ws.root).exit_code == 0
    return registry.ws.root


def test_check_catches_a_shared_rise_no_environment_shows(gov, shared_run: Path) -> None:
    done = gov("check", f"main@{LAST}", "--format", "json", cwd=shared_run)
    assert done.exit_code == 1, done.stdout
    decision = json.loads(done.stdout)
    fired = [r for r in decision["results"] if r["status"] == "fired"]
    assert [r["policy"] for r in fired] == ["run-rationalization-rising"]
    [run] = fired
    assert "environment" not in run["series"]  # the whole run (None is left out)
    assert run["probability"] >= 0.95
    assert 1100 <= int(run["onset"].split("@")[1]) <= 1500
    named = {c["environment"] for c in run["contributors"]}
    assert named and named <= set(ENVS[:14])  # only environments that rose carry the case
    assert all(1.3 < c["effect"] < 4 for c in run["contributors"])
    assert "most evidence from" in run["reason"]
    assert decision["flagged"] == []  # a run-wide rise flags no one environment


def test_a_steady_run_passes(gov, registry, artifact, tmp_path: Path) -> None:
    for env in ENVS:
        registry.add_environment(env, content_hash=f"{ENVS.index(env) + 100:064x}")
    for step in range(100, LAST + 1, 100):
        registry.add_checkpoint(
            "main", step, artifact(f"s{step}.pt"), {env: 1 / len(ENVS) for env in ENVS}
        )
    report = tmp_path / "steady.jsonl"
    report.write_text("".join(json.dumps(r) + "\n" for r in _records(shared=False)))
    assert gov("ingest", str(report), cwd=registry.ws.root).exit_code == 0
    done = gov("check", f"main@{LAST}", "--format", "json", cwd=registry.ws.root)
    assert done.exit_code == 0, done.stdout
    [run] = [r for r in json.loads(done.stdout)["results"] if r["policy"].startswith("run-")]
    assert run["status"] == "clear" and run["probability"] < 0.5


def test_rollback_recommend_places_the_run_restore_point(gov, shared_run: Path) -> None:
    done = gov("rollback", "recommend", "--format", "json", cwd=shared_run)
    assert done.exit_code == 0, done.stderr
    rec = json.loads(done.stdout)
    assert rec["restore"] is not None and int(rec["restore"].split("@")[1]) < ONSET
    [evidence] = rec["flagged"]
    assert evidence["scope"] == "run" and evidence["environment"] == "run"
    assert evidence["p_contaminated"] <= 0.02
    assert evidence["leading"] and all(e.split()[0] in ENVS[:14] for e in evidence["leading"])
    text = gov("rollback", "recommend", cwd=shared_run)
    assert "run" in text.stdout and rec["restore"] in text.stdout


def test_backtest_replays_the_run_alarm_with_and_without_a_workspace(
    gov, shared_run: Path, tmp_path: Path
) -> None:
    on_disk = gov("backtest", "--format", "json", cwd=shared_run)
    assert on_disk.exit_code == 0, on_disk.stderr  # nothing was promoted
    alarms = json.loads(on_disk.stdout)["alarms"]
    [run] = [a for a in alarms if a["policy"] == "run-rationalization-rising"]
    assert run["environment"] is None
    assert ONSET <= run["step"] <= LAST
    assert run["restore_step"] is not None and run["restore_step"] < ONSET
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    free = gov("backtest", "--counts", str(export), "--format", "json", cwd=tmp_path)
    assert free.exit_code == 1, free.stderr
    replayed = json.loads(free.stdout)["alarms"]
    assert [{k: a[k] for k in KEYS} for a in replayed] == [{k: a[k] for k in KEYS} for a in alarms]


def test_the_review_page_shows_the_run_above_the_environments(gov, shared_run: Path) -> None:
    assert gov("check", f"main@{LAST}", cwd=shared_run).exit_code == 1
    done = gov("report", cwd=shared_run)
    assert done.exit_code == 0, done.stderr
    page = (shared_run / "report.html").read_text()
    run_at, envs_at = page.index('id="run-wide"'), page.index("per environment</h2>")
    assert run_at < envs_at
    panel = page[run_at:envs_at]
    assert "rising" in panel and "environment carrying the evidence" in panel
    assert "<svg" in panel and 'class="restore"' in panel


def test_policy_explain_reads_the_run_matrix(gov, shared_run: Path) -> None:
    done = gov(
        "policy",
        "explain",
        "run-rationalization-rising",
        f"main@{LAST}",
        "--format",
        "json",
        cwd=shared_run,
    )
    assert done.exit_code == 0, done.stderr
    [step] = json.loads(done.stdout)["series"]
    assert step["status"] == "fired" and "across the run" in step["reason"]
    assert step["series"].startswith("run")
