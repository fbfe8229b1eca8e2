"""gov policy lint, explain and test, and gov backtest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from governance import open_registry
from governance.backtest import backtest
from governance.gates import decide

ROOT = Path(__file__).resolve().parent.parent


def test_backtest_replays_what_check_would_have_said(gov, example_template: Path) -> None:
    reg = open_registry(example_template)
    result = backtest(reg, "main")
    assert result.checkpoints == 48
    # Every checkpoint's replayed outcome is what `gov check` decides there, seeing its past.
    for ckpt in reg.checkpoints("main")[::5]:
        assert result.outcomes[ckpt.ref] == decide(reg, ckpt.ref).outcome, ckpt.ref
    first = next(a for a in result.alarms if a.policy == "rationalization-rate-rising")
    assert first.series.environment == "code-unit-tests"
    assert result.flagged == {"code-unit-tests": first.checkpoint}
    data = json.loads(gov("backtest", "--format", "json", cwd=example_template).stdout)
    assert data["flagged"] == result.flagged
    table = gov("backtest", cwd=example_template).stdout
    assert f"would flag code-unit-tests at {first.checkpoint}" in table


def test_backtest_names_promotions_it_would_have_blocked(
    gov, example_template: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "ex"
    shutil.copytree(example_template, copy, symlinks=True)
    forced = gov("promote", "main@11000", "--override", "--reason", "test", cwd=copy)
    assert forced.exit_code == 0, forced.stderr
    assert backtest(open_registry(copy), "main").blocked_promotions == ["main@11000"]


def test_bundled_policy_tests_pass(gov, example_template: Path) -> None:
    result = gov("policy", "test", cwd=example_template)
    assert result.exit_code == 0, result.stdout
    assert "9 passed, 0 failed" in result.stdout


def test_a_failing_policy_test_exits_1(gov, example_template: Path, tmp_path: Path) -> None:
    tests = tmp_path / "cases"
    tests.mkdir()
    (tests / "wrong.yaml").write_text(
        "policy: rationalization-rate-rising\ncases:\n"
        "  - name: claims a steady rate fires\n    series: [[1, 200], [1, 200], [1, 200], [1, 200],"
        " [1, 200], [1, 200], [1, 200], [1, 200], [1, 200], [1, 200]]\n    expect: fired\n"
    )
    result = gov("policy", "test", str(tests), cwd=example_template)
    assert result.exit_code == 1
    assert (
        "FAIL rationalization-rate-rising: claims a steady rate fires (expected fired, got clear"
        in result.stdout
    )


def test_lint_finds_conditions_that_can_never_fire(gov, tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    base = "description: d\nmetric: overt_rate\nactions: [block]\n"
    (folder / "never.yaml").write_text(
        "name: never\n"
        + base
        + "condition: {above: {level: 0.9, confidence: 0.999}}\nmin_evidence: {n: 5}\n"
    )
    (folder / "fine.yaml").write_text(
        "name: fine\n" + base + "condition: {above: {level: 0.02}}\nmin_evidence: {n: 100}\n"
    )
    (folder / "typo.yaml").write_text("name: typo\n" + base + "condition: {above: {levle: 0.02}}\n")
    (folder / "soon.yaml").write_text("name: soon\n" + base + "condition: {onset: {}}\n")
    # the fewest events that fire is found by halving: counting up to it hung on a floor of
    # 10^12 episodes, the largest a policy may ask
    big = "condition: {above: {level: 0.02}}\nmin_evidence: {n: %d}\n"
    (folder / "vast.yaml").write_text("name: vast\n" + base + big % 10**12)
    (folder / "past.yaml").write_text("name: past\n" + base + big % (10**12 + 1))
    late = "condition: {above: {level: 0.6}}\nmin_evidence: {n: 20}\n"
    (folder / "late.yaml").write_text("name: late\n" + base + late)
    result = gov("policy", "lint", str(folder))
    assert result.exit_code == 2
    assert (
        "policies/never.yaml: error: can never fire at the minimum evidence n = 5" in result.stderr
    )
    assert (
        "policies/typo.yaml:5: error: field condition.above.levle: unknown field" in result.stderr
    )
    assert "soon.yaml" not in result.stdout + result.stderr  # onset conditions are available
    assert "fine.yaml" not in result.stdout + result.stderr
    assert "vast.yaml" not in result.stdout + result.stderr
    assert (
        "policies/past.yaml:6: error: field min_evidence.n: Input should be less than or equal"
        in result.stderr
    )
    # P(rate > 0.6) >= 0.95 under the Jeffreys posterior, counted up here one event at a time
    from scipy.special import betainc

    fewest = next(k for k in range(21) if 1 - betainc(k + 0.5, 20 - k + 0.5, 0.6) >= 0.95)
    assert f"policies/late.yaml: warning: at n = 20 it fires only from {fewest}/20" in (
        result.stdout + result.stderr
    )
    assert "7 policy files, 3 errors, 1 warning" in result.stdout


def test_explain_walks_through_the_computation(gov, example_template: Path) -> None:
    result = gov(
        "policy",
        "explain",
        "rationalization-rate-rising",
        "main@11000",
        "--env",
        "code-unit-tests",
        cwd=example_template,
    )
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "history: the lineage of main up to and including main@11000; nothing later" in text
    assert "FIRED" in text and "P(a rise began before this checkpoint) = 1.000" in text
    unknown = gov("policy", "explain", "nope", "main@11000", cwd=example_template)
    assert unknown.exit_code == 2 and "no policy named 'nope'" in unknown.stderr


def test_a_bad_policy_in_the_workspace_stops_check_cleanly(
    gov, example_template: Path, tmp_path: Path
) -> None:
    from conftest import snapshot

    copy = tmp_path / "ex"
    shutil.copytree(example_template, copy, symlinks=True)
    (copy / "policies" / "broken.yaml").write_text(
        "name: overt-rate-above\ndescription: x\nmetric: overt_rate\n"
        "condition: {above: {level: 0.1}}\nactions: [warn]\n"
    )
    before = snapshot(copy)
    result = gov("check", "main@4000", cwd=copy)
    assert result.exit_code == 2
    assert (
        "policies/overt-rate-above.yaml: policy name 'overt-rate-above' is already used by "
        "policies/broken.yaml" in result.stderr
    )
    assert snapshot(copy) == before
