"""What keeps the onset condition cheap on a long run: the screen before the posterior, the
summed history of a long series, and the replay's standing alarms."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from governance.backtest import bundled_policies
from governance.metrics import CountRow
from governance.policies import load_policies
from governance.stats.evaluate import ALARM_PRIOR, _onset, evaluate, screen_odds
from governance.stats.onset import DEFAULT_PRIOR, _compress, onset_posterior
from governance.stats.replay import replay
from governance.stats.screen import rise_odds
from governance.stats.series import Point, SeriesKey


def _series(rng: np.random.Generator, t: int, onset: int | None, base: float, factor: float):
    n = rng.integers(8, 600, t)
    n[rng.random(t) < 0.05] = 0
    rate = np.full(t, base)
    if onset is not None:
        ramp = int(rng.choice([1, 4, 10]))
        steps = np.minimum(1.0, (np.arange(t - onset) + 1) / ramp)
        rate[onset:] = base * (1 + (factor - 1) * steps)
    rate = np.clip(rate * np.exp(rng.normal(0, 0.25, t)), 0, 0.95)
    return rng.binomial(n, rate), n


def test_one_prefix_is_screened_as_among_all_of_them() -> None:
    rng = np.random.default_rng(4)
    k, n = _series(rng, 300, 200, 0.01, 3)
    every = rise_odds(k, n)
    for t in (2, 3, 40, 199, 205, 299):
        alone = rise_odds(k[: t + 1], n[: t + 1], last=True)[0]
        assert alone == every[t] or (np.isneginf(alone) and np.isneginf(every[t]))
    assert np.all(np.isneginf(every[:2]))  # fewer than three judged: nothing to screen
    assert every[299] > 20 > every[199]  # a 3x rise a hundred checkpoints long, and before it


def test_the_screen_never_hides_what_the_posterior_would_fire_on() -> None:
    # Fresh series (seeds the screen's margin was not measured on): wherever the posterior
    # reaches a policy's level, the screen lets it be computed.
    rng = np.random.default_rng(20261202)
    checked = 0
    for _ in range(24):
        t = int(rng.integers(15, 70))
        onset = int(rng.integers(1, t - 3)) if rng.random() < 0.8 else None
        base = float(np.exp(rng.uniform(np.log(0.003), np.log(0.1))))
        k, n = _series(rng, t, onset, base, float(rng.uniform(2, 8)))
        odds = rise_odds(k, n)
        for i in range(2, t, 3):
            judged = np.flatnonzero(n[: i + 1] > 0)
            if len(judged) < 3:
                continue
            post = _onset(tuple(k[: i + 1]), tuple(n[: i + 1]), ALARM_PRIOR)
            p = post.p_rise * post.p_onset_by(int(judged[-2]))
            for need in (0.95, 0.99):
                if p >= need:
                    checked += 1
                    assert odds[i] >= screen_odds(need), (k[: i + 1], n[: i + 1], p)
    assert checked > 50


def test_a_steady_series_is_cleared_by_the_screen_alone() -> None:
    rng = np.random.default_rng(5)
    n = rng.integers(40, 320, 400)
    k = rng.binomial(n, 0.01)
    policy = next(
        lp.policy
        for lp in load_policies(bundled_policies(), bundled_policies().parent)
        if lp.policy.name == "rationalization-rate-rising"
    )
    key = SeriesKey("env", 1, "j", "1")
    points = [
        Point("main", 10 * (i + 1), int(a), int(b))
        for i, (a, b) in enumerate(zip(k, n, strict=True))
    ]
    result = evaluate(policy, key, points, ("main", 4000))
    assert result.status == "clear" and "no rise on the screen" in result.reason
    assert result.probability is None  # no posterior was computed


def test_a_long_series_is_summed_but_its_rise_is_placed_finely() -> None:
    k = np.arange(2000.0)
    n = np.full(2000, 5000.0)
    ks, ns, sizes, starts = _compress(k, n, DEFAULT_PRIOR)
    assert len(ks) <= 1 + DEFAULT_PRIOR.blocks + DEFAULT_PRIOR.recent
    assert ks.sum() == k.sum() and ns.sum() == n.sum() and sizes.sum() == 2000
    assert starts[0] == 0 and sizes[0] == 1 and np.all(sizes[-DEFAULT_PRIOR.recent :] == 1)
    # A 2.5x rise at checkpoint 250 of 600, found late: summed and unsummed agree on P(rise), and
    # the restore point is before the onset, within a few checkpoints of the unsummed model's.
    rng = np.random.default_rng(8)
    n = rng.integers(40, 320, 600)
    rate = np.where(np.arange(600) < 250, 0.005, 0.0125)
    k = rng.binomial(n, np.clip(rate * np.exp(rng.normal(0, 0.2, 600)), 0, 1))
    summed = onset_posterior(k, n)
    whole = onset_posterior(k, n, replace(DEFAULT_PRIOR, recent=10_000))
    assert abs(summed.p_rise - whole.p_rise) < 0.01
    assert whole.restore_index(0.02) - 10 <= summed.restore_index(0.02) < 250


def _rows(k: np.ndarray, n: np.ndarray) -> list[CountRow]:
    return [
        CountRow("main", 10 * (i + 1), "env", 1, "h", "j", "1", int(b), int(b - a), 0, int(a), 0, 0)
        for i, (a, b) in enumerate(zip(k, n, strict=True))
    ]


def test_an_onset_alarm_stands_for_the_rest_of_the_replay() -> None:
    # A rise that then goes back down: the alarm raised during it stands on every later
    # checkpoint (a rise that began does not un-begin), so each is blocked.
    rng = np.random.default_rng(9)
    n = rng.integers(100, 300, 60)
    rate = np.where((np.arange(60) >= 20) & (np.arange(60) < 35), 0.08, 0.01)
    k = rng.binomial(n, rate)
    rows = _rows(k, n)
    order = [("main", r.step, "registered") for r in rows]
    policies = [
        lp.policy
        for lp in load_policies(bundled_policies(), bundled_policies().parent)
        if lp.policy.name == "rationalization-rate-rising"
    ]
    done = replay(rows, order, policies, 0.02)
    (alarm,) = done.alarms
    assert 20 < alarm.index < 30
    assert done.outcomes[: alarm.index] == ["pass"] * alarm.index
    assert done.outcomes[alarm.index :] == ["block"] * (60 - alarm.index)
    assert alarm.fired_at == 60 - alarm.index


def test_a_replay_shared_out_over_the_cores_gives_what_one_process_gives(monkeypatch) -> None:
    import governance.stats.replay as replay_module

    rng = np.random.default_rng(12)
    rows = []
    for env in range(6):
        n = rng.integers(50, 300, 50)
        rate = np.where(np.arange(50) >= 25 + env, 0.02 * (1 + env % 3), 0.01)
        k = rng.binomial(n, rate if env % 2 == 0 else np.full(50, 0.01))
        rows += [
            CountRow(
                "main",
                10 * (i + 1),
                f"e{env}",
                1,
                "h",
                "j",
                "1",
                int(b),
                int(b - a),
                0,
                int(a),
                0,
                0,
            )
            for i, (a, b) in enumerate(zip(k, n, strict=True))
        ]
    order = [("main", 10 * (i + 1), "registered") for i in range(50)]
    policies = [lp.policy for lp in load_policies(bundled_policies(), bundled_policies().parent)]
    alone = replay(rows, order, policies, 0.02)
    monkeypatch.setattr(replay_module, "PARALLEL_ABOVE", 0)
    shared = replay(rows, order, policies, 0.02)
    assert alone.alarms and [vars(a) for a in shared.alarms] == [vars(a) for a in alone.alarms]
    assert shared.outcomes == alone.outcomes and shared.flagged == alone.flagged


def test_an_unjudged_tail_costs_nothing_and_changes_nothing() -> None:
    # Past a series' last judged checkpoint (an environment version superseded early in a long
    # run) only the prefix's length changes: its prefixes are the last judged one's, spread
    # thinner, without computing them whole. The same answer as computing every prefix whole.
    from governance.stats.screen import _odds

    rng = np.random.default_rng(3)
    for _ in range(300):
        t = int(rng.integers(10, 200))
        n = rng.integers(0, 300, t).astype(float)
        n[int(rng.integers(3, t)) :] = 0  # judged up to here, never after
        if (n > 0).sum() < 3:
            continue
        rate = np.where(np.arange(t) > t * rng.random(), 0.06, 0.02)
        k = rng.binomial(n.astype(int), rate).astype(float)
        fast, whole = rise_odds(k, n), _odds(k, n, False)
        assert np.array_equal(np.isfinite(fast), np.isfinite(whole))
        assert np.allclose(fast[np.isfinite(fast)], whole[np.isfinite(whole)], atol=1e-9)
        assert np.allclose(rise_odds(k, n, last=True), _odds(k, n, True), atol=1e-9)


def test_a_policy_that_needs_less_is_not_cleared_by_the_coarse_grid() -> None:
    """The coarse grid stops the full one below 0.5, which was measured for policies at 0.95:
    for one at 0.9 the bar is as many log odds below its level. On these counts (a hidden share
    rising from a quarter to over a half) the coarse grid says 0.44 and the full one 0.95: the
    policy at 0.9 fires, where it was cleared on the coarse grid."""
    from governance.policies import Condition, Onset
    from governance.stats.evaluate import SCREEN_PRIOR, coarse_bar

    k = (43, 51, 30, 44, 48, 30, 33, 43, 38, 54, 55, 60, 64, 95, 155, 201)
    n = (151, 170, 159, 164, 184, 140, 169, 184, 138, 159, 249, 379, 353, 370, 376, 390)
    coarse = _onset(k, n, SCREEN_PRIOR)
    full = _onset(k, n, ALARM_PRIOR)
    assert coarse.p_rise * coarse.p_onset_by(14) < 0.5 < 0.9 < full.p_rise * full.p_onset_by(14)
    assert coarse_bar(0.95) == coarse_bar(0.99) == 0.5 and 0.15 < coarse_bar(0.9) < 0.5
    bundled = next(
        lp.policy
        for lp in load_policies(bundled_policies(), bundled_policies().parent)
        if lp.policy.name == "rationalization-rate-rising"
    )
    policy = bundled.model_copy(update={"condition": Condition(onset=Onset(probability=0.9))})
    points = [Point("main", 10 * (i + 1), a, b) for i, (a, b) in enumerate(zip(k, n, strict=True))]
    result = evaluate(policy, SeriesKey("env", 1, "j", "1"), points, ("main", 160))
    assert result.status == "fired", result.reason
