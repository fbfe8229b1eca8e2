"""The gate fails closed: missing evidence never passes."""

from __future__ import annotations

import json
from pathlib import Path

from test_regressions import _counts, _run

from governance import open_registry
from governance.backtest import backtest
from governance.gates import decide


def _history() -> list[dict]:
    # math at 1% for 12 checkpoints, then 16x that for 12 more; nothing was checked meanwhile
    return [_counts(100 * i, 300, rationalized=3 if i <= 12 else 48) for i in range(1, 25)]


def test_an_unjudged_checkpoint_sees_the_history_and_cannot_pass(
    gov, registry, artifact, tmp_path: Path
) -> None:
    _run(registry, artifact, tmp_path, gov, _history())
    registry.add_checkpoint("main", 3100, artifact("late.pt"), {"math": 1.0})
    checked = gov("check", "main@3100", "--format", "json", cwd=registry.ws.root)
    assert checked.exit_code == 1, checked.stderr
    data = json.loads(checked.stdout)
    assert data["outcome"] == "block"
    fired = {r["policy"] for r in data["results"] if r["status"] == "fired"}
    # its own judgments are missing, and the history before it shows the rise
    assert {"not-judged-yet", "rationalization-rate-rising"} <= fired
    promoted = gov("promote", "main@3100", cwd=registry.ws.root)
    assert promoted.exit_code == 1


def test_a_clean_unjudged_checkpoint_waits_for_its_judgments(
    gov, registry, artifact, tmp_path: Path
) -> None:
    steady = [_counts(100 * i, 300, rationalized=3) for i in range(1, 11)]
    _run(registry, artifact, tmp_path, gov, steady)
    registry.add_checkpoint("main", 1100, artifact("next.pt"), {"math": 1.0})
    waiting = gov("check", "main@1100", cwd=registry.ws.root)
    assert waiting.exit_code == 1
    assert "not judged yet: main@1100 has no judged episodes of its own" in waiting.stdout
    report = tmp_path / "late.jsonl"
    report.write_text(json.dumps(_counts(1100, 300, rationalized=3)) + "\n")
    assert gov("ingest", str(report), cwd=registry.ws.root).exit_code == 0
    judged = gov("check", "main@1100", cwd=registry.ws.root)
    assert judged.exit_code == 0, judged.stdout
    assert gov("promote", "main@1100", cwd=registry.ws.root).exit_code == 0


def test_a_policy_can_let_unjudged_checkpoints_through_with_a_warning(
    gov, registry, artifact, tmp_path: Path
) -> None:
    steady = [_counts(100 * i, 300, rationalized=3) for i in range(1, 11)]
    _run(registry, artifact, tmp_path, gov, steady)
    registry.add_checkpoint("main", 1100, artifact("next.pt"), {"math": 1.0})
    policy = registry.ws.root / "policies" / "not-judged-yet.yaml"
    policy.write_text(policy.read_text().replace("actions: [block]", "actions: [warn]"))
    decision = decide(registry, "main@1100")
    assert decision.outcome == "warn"
    assert [r.policy for r in decision.results if r.status == "fired"] == ["not-judged-yet"]


def test_the_backtest_blocks_the_checkpoints_check_would_block_for_want_of_judgments(
    gov, registry, artifact, tmp_path: Path
) -> None:
    steady = [_counts(100 * i, 300, rationalized=3) for i in range(1, 11)]
    _run(registry, artifact, tmp_path, gov, steady)
    registry.add_checkpoint("main", 1100, artifact("next.pt"), {"math": 1.0})
    reg = open_registry(registry.ws.root)
    result = backtest(reg, "main")
    assert result.outcomes["main@1100"] == "block" == decide(reg, "main@1100").outcome
    assert result.outcomes["main@1000"] == "pass" == decide(reg, "main@1000").outcome


def test_a_recheck_after_a_redesign_flags_only_the_version_that_rose(
    gov, example_copy: Path, tmp_path: Path
) -> None:
    import shutil

    ws = tmp_path / "ex"
    shutil.copytree(example_copy, ws, symlinks=True)
    reg = open_registry(ws)
    [flag] = [f for f in reg.flags() if f.environment == "code-unit-tests"]
    assert flag.version == 1
    done = gov("rollback", "apply", "--to", str(tmp_path / "restart.bin"), "--yes", cwd=ws)
    assert done.exit_code == 0, done.stderr
    env_dir = ws / "environments" / "code-unit-tests"
    (env_dir / "scoring.yaml").write_text("grader: hidden tests\n")
    reg = open_registry(ws)
    reg.add_environment_version("code-unit-tests", paths=[env_dir], note="hidden tests")
    # Checking an old checkpoint again reads v1's evidence: it blocks that checkpoint, and
    # flags nothing (v1's flag was raised and resolved; v2 has no evidence against it).
    again = gov("check", "main@12000", "--format", "json", cwd=ws)
    assert again.exit_code == 1
    assert json.loads(again.stdout)["flagged"] == []
    reg = open_registry(ws)
    assert reg.environment("code-unit-tests").status.value == "active"
    assert [f.version for f in reg.flags() if f.environment == "code-unit-tests"] == [1]
    # The restarted run, trained on v2, is not blocked by the redesign gate; and --latest
    # follows it rather than `main`.
    [new] = [r for r in reg.runs() if r.parent_run == "main"]
    mix = {e.id: 1 / len(reg.environments()) for e in reg.environments()}
    (ws / "ckpt").mkdir()
    (ws / "ckpt" / "b.bin").write_bytes(b"b")
    step = (new.forked_from_step or 0) + 250
    reg.add_checkpoint(new.id, step, ws / "ckpt" / "b.bin", mix)
    latest = gov("check", "--latest", "--dry-run", "--format", "json", cwd=ws)
    data = json.loads(latest.stdout)
    assert data["checkpoint"] == f"{new.id}@{step}"
    assert not [r for r in data["results"] if r["policy"] == "redesign-gate"]
