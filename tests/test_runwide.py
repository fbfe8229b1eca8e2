"""The run-wide onset model: evidence pooled across environments, rates never pooled."""

from __future__ import annotations

import numpy as np
import pytest

from governance.stats.evaluate import prior_odds
from governance.stats.onset import onset_posterior
from governance.stats.runwide import dispersion, run_onset


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(414)


def simulate(
    rng: np.random.Generator,
    environments: int = 30,
    t: int = 40,
    onset: int | None = None,
    share: float = 0.6,
    factor: float = 2.0,
    shift: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of a run: each environment its own base rate (0.5% to 8%), 15 to 60 judged
    episodes per cell, a log-normal wobble, 5% of cells unjudged; from `onset`, a `share` of
    the environments rise by about `factor`; from `shift`, the environments with the higher
    base rates get 3x the episodes and the others a third (the mix changes, no rate does)."""
    base = np.exp(rng.uniform(np.log(0.005), np.log(0.08), environments))
    n = rng.integers(15, 61, (environments, t))
    rate = np.repeat(base[:, None], t, axis=1)
    affected = np.zeros(environments, dtype=bool)
    if onset is not None:
        affected = rng.random(environments) < share
        each = factor * np.exp(rng.uniform(-0.2, 0.2, environments))
        rate[affected, onset:] *= each[affected, None]
    if shift is not None:
        high = base > np.median(base)
        n[high, shift:] *= 3
        n[~high, shift:] = np.maximum(1, n[~high, shift:] // 3)
    rate = rate * np.exp(rng.normal(0, 0.25, rate.shape))
    n[rng.random(n.shape) < 0.05] = 0
    return rng.binomial(n, np.clip(rate, 0, 0.95)), n, affected


def test_a_shared_rise_no_single_environment_shows_is_found(rng) -> None:
    found = 0
    for _ in range(5):
        k, n, affected = simulate(rng, onset=25, factor=2.0)
        # each environment alone, with its share of the run's prior: silent
        alone = [onset_posterior(k[e], n[e]).p_rise for e in range(len(k))]
        odds = np.exp(prior_odds(len(k)))
        silent = sum(p * odds / (1 - p + p * odds) < 0.95 for p in alone)
        assert silent >= len(k) - 3
        post = run_onset(k, n)
        found += post.p_rise * post.p_onset_by(38) >= 0.95
        if post.p_rise >= 0.95:
            assert abs(post.estimate() - 25) <= 3
            assert post.restore_index(0.02) < 25  # before the onset: clean
            leading = post.leading(5)
            assert leading and all(affected[c.index] for c in leading)
            assert all(1.3 < c.effect < 3.5 for c in leading)
    assert found >= 4


def test_a_shift_of_the_mix_is_not_a_rise(rng) -> None:
    fooled_totals = 0
    for _ in range(6):
        k, n, _ = simulate(rng, shift=20)
        totals = onset_posterior(k.sum(axis=0), n.sum(axis=0))
        fooled_totals += totals.p_rise > 0.95
        assert run_onset(k, n).p_rise < 0.5
    assert fooled_totals >= 2  # the pooled rate rises: the mix moved to higher base rates


def test_steady_runs_rarely_read_as_rising(rng) -> None:
    high = [run_onset(*simulate(rng)[:2]).p_rise for _ in range(30)]
    assert sum(p >= 0.95 for p in high) <= 1
    assert float(np.median(high)) < 0.3


def test_one_environment_rising_alone_is_named(rng) -> None:
    k, n, _ = simulate(rng, onset=None)
    k[7, 20:] = rng.binomial(n[7, 20:], 0.3)  # from about 2% to 30%
    post = run_onset(k, n)
    assert post.p_rise > 0.99
    assert [c.index for c in post.leading(3)] == [7]
    assert post.share < 0.2


@pytest.mark.parametrize("alone", [True, False])
def test_the_posterior_without_the_leading_environment_is_the_run_without_it(
    alone: bool, rng
) -> None:
    """What the posterior says without its leading environment (which tells one environment's
    rise from the run's) is what the run's counts without that environment say: one rising
    alone, or a rise shared by half the run, at two checkpoints each."""
    k, n, _ = simulate(rng, onset=None if alone else 22, share=0.5, factor=3.0)
    if alone:
        k[7, 20:] = rng.binomial(n[7, 20:], 0.3)
    post = run_onset(k, n)
    top = max(post.contributions, key=lambda c: (c.evidence, -c.index)).index
    assert post.without_top == top
    rest = run_onset(np.delete(k, top, axis=0), np.delete(n, top, axis=0), details=False)
    for index in (15, 30):
        expected = rest.p_rise * rest.p_onset_by(index)
        assert post.p_without_top_by(index) == pytest.approx(expected, abs=1e-6)
    # alone, the rest holds no rise; shared, it still does
    assert (rest.p_rise * rest.p_onset_by(30) < 0.5) is alone


def test_asking_again_with_the_environments_parts_reads_the_same_posterior(rng) -> None:
    """An alarm asks without the environments' parts, then with them: the answer is the one a
    first look with them gives, however often and in whatever order it is asked (the looks
    share one fit, which none of them changes)."""
    k, n, _ = simulate(rng, onset=22, share=0.5, factor=3.0)
    first = run_onset(k, n, details=False)
    again = [run_onset(k, n), run_onset(k, n), run_onset(k, n, details=False)]
    # the same run with an unjudged environment in front: the same counts, computed afresh
    fresh = run_onset(np.vstack([np.zeros_like(k[:1]), k]), np.vstack([np.zeros_like(n[:1]), n]))
    for post in [*again, fresh]:
        assert post.p_rise == first.p_rise
        assert np.array_equal(post.onset, first.onset)
    for post in again[:2]:
        assert [(c.index + 1, c.p_affected, c.evidence) for c in post.contributions] == [
            (c.index, c.p_affected, c.evidence) for c in fresh.contributions
        ]
        assert post.without_top + 1 == fresh.without_top
        assert post.p_rise_without_top == fresh.p_rise_without_top
        assert np.array_equal(post.onset_without_top, fresh.onset_without_top)
    assert not again[2].contributions  # without details: no parts


def test_cells_not_judged_and_environments_added_later(rng) -> None:
    k, n, _ = simulate(rng, environments=10, t=30, onset=15, share=1.0, factor=4.0)
    n[3, :12], k[3, :12] = 0, 0  # an environment added at the 13th checkpoint
    n[:, 8], k[:, 8] = 0, 0  # a checkpoint nobody judged
    post = run_onset(k, n)
    assert np.isfinite(post.p_rise) and abs(post.onset.sum() - 1) < 1e-9
    assert post.onset[8] == pytest.approx(0.0, abs=0.02)
    assert post.p_rise > 0.99 and 13 <= post.estimate() <= 17


def test_the_restore_keeps_its_promise_over_many_runs(rng) -> None:
    dirty = caught = 0
    for _ in range(40):
        onset = int(rng.integers(12, 30))
        k, n, _ = simulate(rng, t=40, onset=onset, share=float(rng.uniform(0.5, 1.0)))
        post = run_onset(k, n)
        if post.p_rise >= 0.95:
            caught += 1
            dirty += post.restore_index(0.02) >= onset
    assert caught >= 30
    assert dirty <= 2  # alpha 0.02: a few percent at most, with room for chance


def test_dispersion_reads_the_wobble_not_the_step(rng) -> None:
    n = np.full((2, 60), 2000.0)
    steady = rng.binomial(n[0].astype(int), 0.05 * np.exp(rng.normal(0, 0.3, 60)))
    plain = rng.binomial(n[1].astype(int), 0.05)
    both = np.stack([steady, plain]).astype(float)
    found = dispersion(both, n)
    assert found[0] > 4 and found[1] < 1.6
    stepped = plain.astype(float).copy()
    stepped[30:] = rng.binomial(2000, 0.15, 30)  # a 3x step
    assert dispersion(stepped[None, :], n[1:]) < 2.5  # one difference in 59 changes


@pytest.mark.parametrize(
    ("k", "n", "message"),
    [
        ([[1, 2]], [[10, 10]], "two or more environments"),
        ([[1, 2], [0, 0]], [[10, 10], [0, 0]], "two or more environments"),
        ([[1, 2], [1]], [[10, 10], [10]], "matrices"),
        ([[1, 20], [1, 1]], [[10, 10], [10, 10]], "0 <= k <= n"),
    ],
)
def test_bad_matrices_are_refused(k, n, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_onset(k, n)


def test_the_prior_is_shared_out_among_environments() -> None:
    assert prior_odds(1) == 0.0
    for peers in (2, 30, 300):
        each = 1 / (1 + np.exp(-prior_odds(peers)))
        assert 1 - (1 - each) ** peers == pytest.approx(0.5)


def test_a_long_replay_finds_the_first_alarm_of_its_stretch(rng) -> None:
    from governance.metrics import CountRow
    from governance.policies import Action, Condition, Onset, Policy
    from governance.stats import replay as replay_module
    from governance.stats.evaluate import evaluate_run
    from governance.stats.replay import replay
    from governance.stats.series import matrices

    k, n, _ = simulate(rng, environments=6, t=600, onset=450, share=1.0, factor=2.5)
    rows = [
        CountRow("main", (i + 1) * 10, f"env{e}", 1, "", "judge", "1", int(n[e, i]),
                 int(n[e, i] - k[e, i]), 0, int(k[e, i]), 0, 0)
        for e in range(len(k)) for i in range(k.shape[1]) if n[e, i]
    ]  # fmt: skip
    order = [("main", (i + 1) * 10, "registered") for i in range(k.shape[1])]
    policy = Policy(
        name="wide", description="run-wide", metric="rationalization_rate", scope="run",
        condition=Condition(onset=Onset(probability=0.99)), actions=(Action.BLOCK,),
    )  # fmt: skip
    assert replay_module.RUN_WIDE_EVERY < 600  # the run is long enough to be strided
    [alarm] = replay(rows, order, [policy], 0.02, first_only=True).alarms
    assert 450 <= alarm.index < 520
    # every checkpoint before the alarm, evaluated one by one, is clear: it is the first
    [(key, matrix)] = matrices(policy, rows, order).items()
    judged = np.flatnonzero(matrix.ns.sum(axis=0))
    for index in judged[(judged >= 300) & (judged < alarm.index)]:
        run, step, _ = matrix.order[index]
        verdict = evaluate_run(policy, key, matrix, (run, step), int(index), details=False)
        assert verdict.status != "fired", index
    assert alarm.restore_index is not None and alarm.restore_index < 450
