"""Onset analysis, the restore point, rollback apply, and the redesign gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import numpy as np
import pytest

from governance import open_registry
from governance.gates import decide
from governance.metrics import CountRow
from governance.stats.evaluate import ALARM_PRIOR, SCREEN_PRIOR
from governance.stats.onset import DEFAULT_PRIOR, OnsetPrior, onset_posterior
from governance.stats.restore import Placed, Target, place, restore_point


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator of each test's own: its data do not depend on which tests ran before."""
    return np.random.default_rng(2026)


def simulate(
    rng: np.random.Generator, t: int, onset: int | None, base: float, factor: float, ramp: int = 1
):
    n = rng.integers(40, 400, t)
    p = np.full(t, base)
    if onset is not None:
        for i in range(onset, t):
            p[i] = base * (1 + (factor - 1) * min(1.0, (i - onset + 1) / ramp))
    p = np.clip(p * np.exp(rng.normal(0, 0.2, t)), 0, 1)  # extra variation between checkpoints
    return rng.binomial(n, p), n


@pytest.mark.parametrize("ramp", [1, 4, 10])
def test_a_rise_is_found_and_the_restore_point_is_clean(rng, ramp: int) -> None:
    for _ in range(5):
        k, n = simulate(rng, 60, 30, 0.01, 6, ramp)
        post = onset_posterior(k, n)
        assert post.p_rise > 0.99
        low, high = post.interval(0.9)
        assert low <= 30 + ramp // 2 and high >= 28
        assert post.restore_index(0.02) < 30  # before the true onset
        assert abs(post.onset.sum() - 1) < 1e-9


def test_no_rise_and_a_single_spike_are_not_rises(rng) -> None:
    quiet = [onset_posterior(*simulate(rng, 60, None, 0.01, 1)).p_rise for _ in range(10)]
    assert max(quiet) < 0.9
    k, n = simulate(rng, 60, None, 0.01, 1)
    k[40] = n[40] // 10  # one checkpoint at 10%
    assert onset_posterior(k, n).p_rise < 0.95


def test_missing_checkpoints_keep_their_place(rng) -> None:
    k, n = simulate(rng, 50, 25, 0.01, 8)
    k[10:14] = 0
    n[10:14] = 0
    post = onset_posterior(k, n)
    assert post.p_rise > 0.99 and 20 <= post.estimate() <= 26


def test_the_prior_can_be_chosen(rng) -> None:
    k, n = simulate(rng, 60, 30, 0.01, 6, 1)
    binomial = onset_posterior(k, n, OnsetPrior(spread=(float("inf"),), dispersion="beta-binomial"))
    unwobbled = onset_posterior(k, n, OnsetPrior(spread=(0.0,), dispersion="log-normal"))
    assert np.allclose(binomial.onset, unwobbled.onset) and binomial.p_rise == unwobbled.p_rise
    slight = onset_posterior(k, n, OnsetPrior(spread=(0.01,), dispersion="log-normal"))
    assert np.abs(slight.onset - binomial.onset).max() < 0.02
    # Told that rises are steps, the model places this step more sharply than when a long ramp
    # might have begun earlier, and never later than the default does.
    steps = onset_posterior(k, n, OnsetPrior(ramps=(1,)))
    default = onset_posterior(k, n)
    assert steps.restore_index(0.02) >= default.restore_index(0.02)
    assert steps.p_onset_by(27) < default.p_onset_by(27)
    # A ramp weight of zero rules that length out: the same as leaving it off the list.
    zero = OnsetPrior(ramps=(1, 2, 3), ramp_weights=(1.0, 0.0, 1.0))
    assert np.allclose(
        onset_posterior(k, n, zero).onset, onset_posterior(k, n, OnsetPrior(ramps=(1, 3))).onset
    )
    with pytest.raises(ValueError, match="one weight per ramp"):
        OnsetPrior(ramps=(1, 2), ramp_weights=(1.0,))


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        onset_posterior([5], [3])
    assert onset_posterior([1], [10]).p_rise == 0.0  # one checkpoint: no baseline, no rise


def test_restore_point_on_the_example(gov, example_copy: Path) -> None:
    data = json.loads(gov("rollback", "recommend", "--format", "json", cwd=example_copy).stdout)
    assert data["restore"] is not None
    step = int(data["restore"].split("@")[1])
    assert step < 6250  # the planted onset
    assert data["p_contaminated"] <= 0.02
    [flagged] = data["flagged"]
    # the median onset within a checkpoint of the planted one, which the 90% interval holds
    assert flagged["environment"] == "code-unit-tests"
    assert flagged["onset"] in ("main@6000", "main@6250", "main@6500")
    low, high = (int(ref.split("@")[1]) for ref in flagged["onset_interval"])
    assert low <= 6250 <= high
    assert data["checkpoints_lost"] == (12000 - step) // 250
    assert "tool-use-booking" in data["fine"] and "math-proofs" in data["fine"]
    # The restore point lies well before the interval: the recommendation says why, naming the
    # interval's start and the share of the onset's probability that lies before it.
    assert step < low - 250
    assert flagged["onset_interval"][0] in data["far_back"] and "%" in data["far_back"]


def test_far_back_is_said_only_where_the_restore_point_is_far_back(rng) -> None:
    from governance.rollback import _far_back
    from governance.stats.series import SeriesKey

    key = SeriesKey("env", 1, "judge", "v1")
    order = [("main", 100 * i, "") for i in range(60)]
    n = np.full(60, 1000)
    sharp = rng.binomial(n, np.where(np.arange(60) < 30, 0.01, 0.3))
    placed = Placed("rationalization", key, onset_posterior(sharp, n), 0)
    assert placed.restore(0.02) == 29 and _far_back(placed, 29, order, 0.02) == ""
    # A slow, small rise: the evidence cannot rule out that it began well before its interval.
    small = rng.binomial(n // 10, np.where(np.arange(60) < 30, 0.01, 0.01 + 0.0015 * np.arange(60)))
    placed = Placed("rationalization", key, onset_posterior(small, n // 10), 0)
    low, _ = placed.posterior.interval(0.9)
    restore = placed.restore(0.02)
    said = _far_back(placed, restore, order, 0.02)
    assert restore < low - 1 and f"main@{100 * low}" in said and "2.0%" in said


def test_rollback_apply_forks_and_the_gate_blocks_the_old_version(
    gov, example_copy: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ex"
    shutil.copytree(example_copy, ws, symlinks=True)
    target = tmp_path / "restart.bin"
    dry = gov("rollback", "apply", "--to", str(target), cwd=ws)
    assert dry.exit_code == 0 and "dry run" in dry.stdout and not target.exists()
    done = gov("rollback", "apply", "--to", str(target), "--yes", cwd=ws)
    assert done.exit_code == 0, done.stderr
    reg = open_registry(ws)
    [new] = [r for r in reg.runs() if r.parent_run == "main"]
    restore = reg.checkpoint("main", new.forked_from_step or 0)
    assert target.read_bytes() == (ws / restore.artifact).read_bytes()
    assert reg.environment("code-unit-tests").status.value == "in_redesign"
    assert (ws / "audit" / "rollbacks" / f"{new.id}.json").is_file()

    # A checkpoint of the new run still trained on the flagged version is blocked ...
    mix = {e.id: 0.1 for e in reg.environments()}
    (ws / "ckpt").mkdir()
    (ws / "ckpt" / "a.bin").write_bytes(b"a")
    reg.add_checkpoint(new.id, restore.step + 250, ws / "ckpt" / "a.bin", mix)
    decision = decide(reg, f"{new.id}@{restore.step + 250}")
    assert decision.outcome == "block"
    assert any(
        r.policy == "redesign-gate" and r.series.environment == "code-unit-tests"
        for r in decision.fired
    )
    # ... and one trained on the redesign passes that gate.
    env_dir = ws / "environments" / "code-unit-tests"
    (env_dir / "scoring.yaml").write_text("grader: hidden tests\n")
    reg.add_environment_version("code-unit-tests", paths=[env_dir], note="hidden tests")
    (ws / "ckpt" / "b.bin").write_bytes(b"b")
    reg.add_checkpoint(new.id, restore.step + 500, ws / "ckpt" / "b.bin", mix)
    later = decide(reg, f"{new.id}@{restore.step + 500}")
    assert not any(r.policy == "redesign-gate" for r in later.fired)


def test_rollback_bad_input(gov, registry, workspace: Path, artifact, tmp_path: Path) -> None:
    from governance.models import EnvironmentStatus

    registry.add_checkpoint("main", 100, artifact("a.pt"), {"math": 1.0})
    nothing = gov("rollback", "recommend", cwd=workspace)
    assert nothing.exit_code == 0 and "no environment is flagged" in nothing.stdout
    registry.set_environment_status("math", EnvironmentStatus.FLAGGED, reason="by hand")
    few = gov("rollback", "recommend", cwd=workspace)
    assert few.exit_code == 2 and "too few for an onset analysis" in few.stderr


def test_a_restore_point_whose_artifact_is_gone_is_skipped(
    gov, example_copy: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ex"
    shutil.copytree(example_copy, ws, symlinks=True)
    first = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    run, step = first["restore"].split("@")
    gone = open_registry(ws).checkpoint(run, int(step))
    md5 = gone.artifact_md5
    (ws / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    (ws / gone.artifact).unlink()
    again = gov("rollback", "recommend", cwd=ws)
    assert again.exit_code == 0, again.stderr
    assert f"skipped (safer, not restorable): {first['restore']}: artifact gone" in again.stdout
    data = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    assert int(data["restore"].split("@")[1]) < int(step)
    assert data["checkpoints_lost"] > first["checkpoints_lost"]


def test_a_flagged_environment_without_judgments_is_named(
    gov, registry, workspace: Path, artifact
) -> None:
    from governance.models import EnvironmentStatus

    for step in (100, 200, 300):
        registry.add_checkpoint("main", step, artifact(f"c{step}.pt"), {"math": 1.0})
    registry.set_environment_status("math", EnvironmentStatus.FLAGGED, reason="by hand")
    result = gov("rollback", "recommend", cwd=workspace)
    assert result.exit_code == 2
    assert "environment 'math' is flagged but has no judgments" in result.stderr


def test_a_quarantined_checkpoint_is_no_restore_point_and_not_promotable(
    gov, example_copy: Path
) -> None:
    from governance.models import CheckpointStatus

    ws = example_copy
    first = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    run, step = first["restore"].split("@")
    assert first["skipped"] == []
    steps = sorted(c.step for c in open_registry(ws).checkpoints(run))
    earlier = steps[steps.index(int(step)) - 1]
    put = gov("checkpoint", "quarantine", first["restore"], "--reason", "bad shard", cwd=ws)
    assert put.exit_code == 0, put.stderr

    again = gov("rollback", "recommend", cwd=ws)
    assert again.exit_code == 0, again.stderr
    assert f"skipped (safer, not restorable): {first['restore']}: quarantined" in again.stdout
    data = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    assert data["restore"] == f"{run}@{earlier}"  # the next earlier checkpoint
    assert data["skipped"] == [f"{first['restore']}: quarantined"]
    assert data["checkpoints_lost"] == first["checkpoints_lost"] + 1

    # The check blocks it on the quarantine alone (its evidence passes); only a recorded
    # override promotes it.
    held = gov("check", first["restore"], "--format", "json", cwd=ws)
    assert held.exit_code == 1
    fired = [r["policy"] for r in json.loads(held.stdout)["results"] if r["status"] == "fired"]
    assert fired == ["quarantine-hold"]
    refused = gov("promote", first["restore"], cwd=ws)
    assert refused.exit_code == 1 and "quarantined" in refused.stderr
    assert open_registry(ws).checkpoint(run, int(step)).status == CheckpointStatus.QUARANTINED
    forced = gov("promote", first["restore"], "--override", "--reason", "vetted", cwd=ws)
    assert forced.exit_code == 0, forced.stderr
    assert open_registry(ws).checkpoint(run, int(step)).status == CheckpointStatus.PROMOTED


def test_a_long_steady_series_is_not_a_rise(rng) -> None:
    # 600 checkpoints of a steady 1%: a coarse grid of base rates once made "no rise" fit worse
    # than a rise that picks its rate from more combinations (P(rise) = 1.0 by step 400).
    n = rng.integers(40, 320, 600)
    k = rng.binomial(n, 0.01)
    assert onset_posterior(k, n).p_rise < 0.5


@pytest.mark.parametrize("rate", [0.45, 0.65])
def test_a_steady_high_rate_is_not_a_rise(rate: float, rng) -> None:
    # A share (of flags, of noticed bad reasons) can hold at 40% to 70%. With base rates only up
    # to 30% in the prior, no base rate fitted it and "no rise" lost to a rise at the first
    # checkpoint: P(rise) was 1.0 on steady series, on the full grid and on the screen's.
    n = rng.integers(30, 80, 25)
    k = rng.binomial(n, rate)
    for prior in (OnsetPrior(), ALARM_PRIOR, SCREEN_PRIOR):
        assert onset_posterior(k, n, prior).p_rise < 0.5
    # and a rise from there is still found
    k[15:] = rng.binomial(n[15:], min(0.95, rate * 1.6))
    assert onset_posterior(k, n).p_rise > 0.9


def test_a_rise_in_two_stages_restores_before_the_first(rng) -> None:
    # 2x at checkpoint 20, then 6x at 30: the onset is the first stage. A one-stage model reads
    # the first stage as the base rate and places its restore point between the stages.
    t = 45
    n = np.full(t, 400)
    rate = np.full(t, 0.01)
    rate[20:] = 0.02
    rate[30:] = 0.06
    k = rng.binomial(n, rate)
    one_stage = onset_posterior(k, n, OnsetPrior(two_stage=0.0))
    assert one_stage.restore_index(0.02) >= 20  # contaminated
    two = onset_posterior(k, n, OnsetPrior(two_stage=0.25))
    assert two.p_rise > 0.99
    assert two.restore_index(0.02) < 20
    # and a plain step is still placed before its onset (how far before is bench/onset.py's
    # waste column: a two-stage reading of noise can move it several checkpoints back)
    step = rng.binomial(n, np.where(np.arange(t) < 25, 0.01, 0.05))
    assert 0 < onset_posterior(step, n).restore_index(0.02) < 25


def test_the_first_checkpoint_is_never_known_clean() -> None:
    # High from the first checkpoint on, rising further at the second: the restore point can
    # only be the first checkpoint, whose own rate nothing measures against.
    rows = [
        CountRow("main", step, "math", 1, "", "j", "1", 200, 200 - k, 0, k, 0, 0)
        for step, k in zip(range(100, 1300, 100), [40, 120, *[118] * 10], strict=True)
    ]
    order = [("main", r.step, "registered") for r in rows]
    placed = place(rows, order, [Target("math", 1, "j", "1", "rationalization_rate")])
    point = restore_point(placed, 0.02)
    assert point.index == 0 and not point.known_clean
    later = [
        CountRow("main", step, "math", 1, "", "j", "1", 200, 200 - k, 0, k, 0, 0)
        for step, k in zip(range(100, 1300, 100), [2, 1, 3, 2, 40, *[42] * 7], strict=True)
    ]
    point = restore_point(
        place(later, order, [Target("math", 1, "j", "1", "rationalization_rate")]), 0.02
    )
    assert point.index is not None and 1 <= point.index < 4 and point.known_clean


def test_one_outlying_checkpoint_is_not_a_rise(rng) -> None:
    # A bad batch: one checkpoint at 8x, the rest steady. Allowing for outlying checkpoints, the
    # model reads it as an outlier; without, a rise (or a wobble) must explain it.
    n = np.full(40, 300)
    k = rng.binomial(n, 0.01)
    k[30] = 24
    robust = onset_posterior(k, n)
    assert robust.p_rise < onset_posterior(k, n, OnsetPrior(outliers=0.0)).p_rise
    assert robust.p_rise < 0.5
    # while a lasting rise of the same size is still found, and placed
    k[30:] = rng.binomial(n[30:], 0.08)
    lasting = onset_posterior(k, n)
    assert lasting.p_rise > 0.99 and lasting.estimate() == 30


def test_a_rise_long_ago_is_still_found_in_a_long_run() -> None:
    # 3x at checkpoint 100 of 2,000, never looked at since: the risen stretch is long and well
    # judged, so its rate is pinned down finely. On the coarse grid of risen rates alone the rise
    # fitted worse than "no rise" (P(rise) 0.75 here, the onset placed at 119).
    rng = np.random.default_rng(1)
    t = 2000
    rate = np.where(np.arange(t) < 100, 0.004, 0.012)
    n = rng.integers(40, 320, t)
    k = rng.binomial(n, np.clip(rate * np.exp(rng.normal(0, 0.25, t)), 0, 1))
    post = onset_posterior(k, n, OnsetPrior(two_stage=0.0))
    assert post.p_rise > 0.99 and 97 <= post.estimate() <= 103


def test_the_event_cap_changes_only_checkpoints_above_it() -> None:
    # Each checkpoint counts as at most `most_events` events, measured against the level of the
    # checkpoints before it: a series whose checkpoints all hold fewer is read exactly as
    # without the cap; a checkpoint far below the level (none in a million episodes of a 1%
    # series) is capped as its neighbours are, not left to pin its rate at zero; and each
    # checkpoint's cap depends on its past only, so every prefix is capped as the series is.
    from dataclasses import replace

    from governance.stats.onset import capped

    uncapped = replace(DEFAULT_PRIOR, most_events=None)
    k = [3, 5, 2, 4, 6, 3, 30, 41, 38, 44]
    n = [400] * 10
    below = onset_posterior(k, n)
    assert below.p_rise == onset_posterior(k, n, uncapped).p_rise
    assert np.array_equal(below.onset, onset_posterior(k, n, uncapped).onset)
    rng = np.random.default_rng(5)
    glitch = rng.binomial(1_000_000, 0.01 * np.exp(rng.normal(0, 0.1, 20)))
    glitch[6] = 0  # one checkpoint with no event at all
    assert onset_posterior(glitch, [1_000_000] * 20, uncapped).p_rise > 0.99  # the old misreading
    assert onset_posterior(glitch, [1_000_000] * 20).p_rise < 0.5
    ks, ns = capped(glitch, [1_000_000] * 20, 100.0)
    assert ks.max() <= 100.0 and np.allclose(ks / ns, glitch / 1_000_000)
    assert ns[6] <= 2 * 100.0 / 0.01  # scaled as the level (1%) would give it 100 events
    for t in range(1, 21):
        head = capped(glitch[:t], [1_000_000] * t, 100.0)
        assert np.array_equal(head[0], ks[:t]) and np.array_equal(head[1], ns[:t])


def test_rises_past_the_top_rate_carry_no_prior_mass() -> None:
    """A share at 20% can rise at most about fivefold: ratios that would take it past the top
    tabulated rate are one hypothesis (a rise to the top), not most of the prior. Adding ratios
    of 10,000 and 100,000 to the grid then changes nothing at that base rate, where before it
    took prior mass from the rises the counts can tell apart (P(rise) 0.86 -> 0.78)."""
    k = (24, 27, 22, 25, 23, 26, 24, 36, 38, 37)  # about 20%, then 31% for three checkpoints
    n = (120,) * 10
    base = OnsetPrior(two_stage=0.0)
    wide = OnsetPrior(two_stage=0.0, ratio=(*base.ratio, 1e4, 1e5))
    at_base = onset_posterior(k, n, base, zoom=False).p_rise
    assert at_base > 0.95
    assert abs(onset_posterior(k, n, wide, zoom=False).p_rise - at_base) < 1e-6


def test_each_base_rate_spreads_its_ratio_prior_over_the_rises_it_can_make() -> None:
    from governance.stats.onset import RATE_GRID, _ratio_nodes

    p0 = np.array([1e-4, 0.01, 0.2, 0.7])
    k, n = np.array([1, 2, 3, 4]), np.array([100] * 4)
    ratios, mass = _ratio_nodes(k, n, DEFAULT_PRIOR, p0)
    weight = np.exp(mass)
    assert np.allclose(weight.sum(axis=1), 1.0)
    top = RATE_GRID[-1]
    for i, rate in enumerate(p0):
        held = weight[i] > 0
        assert np.all(ratios[i][held] * rate <= top * (1 + 1e-9))
        # at 70% even the smallest rise reaches the top: one rise, to it
        assert np.all(ratios[i][held] >= min(min(DEFAULT_PRIOR.ratio), top / rate) - 1e-9)
    assert np.isclose(ratios[3][weight[3] > 0], top / 0.7).all()
    # 1.5 to 1000 fits under the top at 0.01% (flat on the log scale over all of it); at 20%
    # the last node stands for every rise to the top, 0.95 / 0.2 = 4.75
    assert np.isclose(ratios[0][weight[0] > 0].max(), 1000.0)
    assert np.isclose(ratios[2][weight[2] > 0].max(), top / 0.2)


@pytest.mark.parametrize("unjudged", [0, 2])
@pytest.mark.parametrize("length", [12, 200])
def test_a_low_first_judged_checkpoint_then_a_higher_rate_is_a_rise(
    unjudged: int, length: int
) -> None:
    # 1% at the first judged checkpoint, 5% from the next on, 1,000 episodes each: a low
    # outlier there and a rise at the next checkpoint explain it alike, and the model must not
    # take the outlier (on a long run, compressed into blocks, too). Leading unjudged
    # checkpoints keep their place and change nothing.
    n = np.full(length, 1000)
    k = np.full(length, 50)
    n[:unjudged] = k[:unjudged] = 0
    k[unjudged] = 10
    posterior = onset_posterior(k, n)
    assert posterior.p_rise > 0.99 and posterior.estimate() == unjudged + 1
    # a high first checkpoint before a steady rate is still an outlier, not a fall then a rise
    k[unjudged] = 250
    assert onset_posterior(k, n).p_rise < 0.5


def test_rollback_apply_refuses_a_damaged_cached_artifact(gov, example_copy: Path) -> None:
    # The restore point's file in DVC's cache, overwritten in place with other bytes of the same
    # size, was copied out as the checkpoint to restart from, and the run forked from it.
    ws = example_copy
    rec = json.loads(gov("rollback", "recommend", "--format", "json", cwd=ws).stdout)
    run, step = rec["restore"].split("@")
    md5 = open_registry(ws).checkpoint(run, int(step)).artifact_md5
    cached = ws / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    assert cached.is_file()
    cached.chmod(0o644)
    cached.write_bytes(bytes(cached.stat().st_size))
    head = git.Repo(ws).head.commit.hexsha
    target = ws / "restart.bin"
    done = gov("rollback", "apply", "--to", str(target), "--yes", cwd=ws)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "is damaged" in line and md5 in line
    assert not target.exists() and git.Repo(ws).head.commit.hexsha == head  # nothing applied
    assert [r.id for r in open_registry(ws).runs()] == ["main"]
