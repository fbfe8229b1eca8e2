"""Onset analysis: when did a rate begin to rise, and how sure are we that it did at all?

A Bayesian changepoint model of binomial counts over a checkpoint series, a pure function of
(k, n) per checkpoint:
- before the onset the rate is p0; from the onset it rises to p1 = r x p0, at once (a step) or
  linearly over L checkpoints (a gradual rise);
- the rate wobbles between checkpoints (log-normal, its sd integrated over a grid; 0 is plain
  binomial), so checkpoints may differ by more than binomial noise;
- a rise may come in two stages: a first, smaller rise (p0 -> r1 x p0, a step or a ramp), then a
  second one (to r2 x r1 x p0) some checkpoints later; the onset is the first stage's, so a
  restore point between the stages counts as contaminated, as it is;
- checkpoints with no judgments (n = 0) keep their place in the order and say nothing; no onset
  is placed before the first judged one.
p0, r, phi and L are integrated out over grids (`OnsetPrior`; flat on the log scale by default);
half the prior mass is on "no rise at all", the other half spread evenly over the onset
checkpoints (and, for two stages, the second stage evenly over the checkpoints after the first).
The model cannot see an onset at the first checkpoint (nothing comes before it to compare with),
so the first checkpoint's cleanliness is assumed, never measured: `OnsetPosterior.known_clean`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

RATE_GRID = np.geomspace(1e-4, 0.95, 160)  # where likelihoods are tabulated
MOST_EVENTS = 100.0  # a checkpoint's evidence at most (OnsetPrior.most_events, the screen's too)
_HERMITE = np.polynomial.hermite.hermgauss(12)  # nodes and weights for a log-normal wobble


@dataclass(frozen=True)
class OnsetPrior:
    """What the model assumes before it sees the counts.

    p0 and r are integrated over their grids with equal weight (log-spaced by default, so flat on
    the log scale), the ramp length over `ramps` with weights `ramp_weights` (equal by default).
    Extra variation between checkpoints is either beta-binomial with each concentration in
    `spread` (inf: plain binomial), or, with `dispersion="log-normal"`, a log-normal wobble of the
    rate with each standard deviation in `spread` (0: none). Half the mass is on "no rise at all"
    unless `p_rise` says otherwise; the onset is uniform over the checkpoints after the first."""

    # Base rates from 0.01% to 77%, log-spaced (18 nodes to 30%, then two more at the same
    # spacing): a series whose steady rate lies above the grid would fit "no rise" at none of its
    # nodes, and read as a rise at its first checkpoint (a share of flags, a hidden share, can be
    # steady at 40% to 70%).
    p0: tuple[float, ...] = tuple(1e-4 * (3000.0 ** (1 / 17)) ** np.arange(20))
    ratio: tuple[float, ...] = tuple(np.geomspace(1.5, 1000.0, 16))  # from near zero to over half
    # A log-normal wobble keeps the extra variation relative to the rate at every level; a
    # beta-binomial's grows without bound as the rate falls (at 0.4% a concentration of 1000 is a
    # 50% wobble), which lets "no rise" explain any early rise of a rare behaviour away.
    spread: tuple[float, ...] = (0.0, 0.2, 0.4)
    dispersion: Literal["beta-binomial", "log-normal"] = "log-normal"
    ramps: tuple[int, ...] = tuple(range(1, 16))
    ramp_weights: tuple[float, ...] | None = None
    p_rise: float = 0.5
    # Two-stage rises: P(two stages | a rise), the first stage's ratios and ramp lengths, the
    # second stage's ramp lengths (its ratio over the first stage's rate is on `ratio`).
    # At 0.05, 6.1% of bench/onset.py's two-stage restores (seed 11, 200 series) fell between
    # the stages; at 0.15, 1.0%, for one checkpoint more of median waste over all rises.
    two_stage: float = 0.15
    first_ratio: tuple[float, ...] = (1.8, 2.5)
    first_step: float = 0.001  # a first stage adds at least this to the rate (0.1 points)
    first_ramps: tuple[int, ...] = (1, 4, 8)
    second_ramps: tuple[int, ...] = (1, 3, 6, 10)
    second_gap: int = 14  # the second onset 1 .. this many checkpoints after the first's end
    dense: int = 15  # base-rate nodes added around the pooled rate (see _p0_nodes)
    # The chance that a checkpoint is an outlier (a bad batch, a judge hiccup): its rate anywhere
    # from a tenth to ten times the rest. One bad checkpoint is then no evidence of a lasting rise.
    outliers: float = 0.03
    # A long series keeps its last `recent` checkpoints one by one and sums the older ones (all
    # but the first) into at most `blocks` runs of consecutive checkpoints (see _compress): the
    # cost stops growing with the run, and an onset far back is placed to within its block.
    recent: int = 64
    blocks: int = 32
    # A checkpoint counts as at most this many events (k and n scaled down together, its rate
    # kept; measured against the level before it, see `capped`): past a hundred or so, its rate
    # is known to within the wobble between checkpoints, and more episodes tell little more
    # about the run's course. Without the cap, a checkpoint of 10^5 to 10^7 episodes pins its
    # rate far more finely than the grids the model integrates over (the wobble's quadrature
    # nodes, the tabulated rates), and "no rise" against a rise turns on which node lands
    # nearest the rate. On 60 series each of 20 to 60
    # such checkpoints (base 0.3% to 30%, wobble 0 to 0.3), the default policies blocked 29
    # steady series, 46 with one outlier, and 18 steps before they began; capped, 1, 2 and 1.
    # A 100x step at 10^6 episodes had its restore point 15 checkpoints early; capped, the
    # checkpoint before it. bench/onset.py's table (up to 400 events a checkpoint) is
    # unchanged. None: no cap.
    most_events: float | None = MOST_EVENTS

    def __post_init__(self) -> None:
        if self.ramp_weights is not None and len(self.ramp_weights) != len(self.ramps):
            raise ValueError("ramp_weights needs one weight per ramp length")
        if min(self.ramps) < 1 or not 0 < self.p_rise < 1:
            raise ValueError("ramps are lengths >= 1 and p_rise is in (0, 1)")
        if self.dispersion == "log-normal" and not np.isfinite(max(self.spread)):
            raise ValueError("a log-normal wobble's sd is finite (0: none)")
        if not 0 <= self.outliers < 1:
            raise ValueError("outliers is a probability in [0, 1)")
        if not 0 <= self.two_stage < 1:
            raise ValueError("two_stage is a probability in [0, 1)")
        if self.recent < 2 or self.blocks < 1:
            raise ValueError("recent is at least 2 checkpoints and blocks at least 1")
        if self.most_events is not None and not self.most_events >= 1:
            raise ValueError("most_events is at least 1 (or None)")
        if self.two_stage and (
            min(self.first_ramps + self.second_ramps) < 1
            or min(self.first_ratio) <= 1
            or self.second_gap < 1
        ):
            raise ValueError("stage ramps are lengths >= 1 and first-stage ratios are above 1")

    def log_ramp_weights(self) -> np.ndarray:
        w = np.ones(len(self.ramps)) if self.ramp_weights is None else np.array(self.ramp_weights)
        with np.errstate(divide="ignore"):
            return np.asarray(np.log(w / w.sum()))


DEFAULT_PRIOR = OnsetPrior()


class OnsetReading:
    """What a posterior over an onset says about checkpoints: shared by the one-series and the
    run-wide posteriors (each has `onset`, P(onset at i | a rise) for every checkpoint i)."""

    onset: np.ndarray
    p_rise: float

    @staticmethod
    def known_clean(index: int) -> bool:
        """Whether the model measures, rather than assumes, that checkpoint `index` is before
        the onset: never for the first checkpoint, which has nothing before it to compare with
        (its rate may have been high from the start)."""
        return index >= 1

    def p_onset_by(self, index: int) -> float:
        """P(onset at or before checkpoint `index` | a rise): the chance it is contaminated."""
        if index < 0:
            return 0.0
        return float(self.onset[: index + 1].sum())

    def estimate(self) -> int:
        """The posterior median onset."""
        return int(np.searchsorted(np.cumsum(self.onset), 0.5))

    def interval(self, mass: float = 0.9) -> tuple[int, int]:
        """An equal-tailed credible interval for the onset (indices, inclusive)."""
        cdf = np.cumsum(self.onset)
        tail = (1 - mass) / 2
        return int(np.searchsorted(cdf, tail)), int(np.searchsorted(cdf, 1 - tail))

    def restore_index(self, alpha: float) -> int:
        """The latest checkpoint whose chance of being after the onset is at most alpha
        (-1: none, not even the first)."""
        cdf = np.cumsum(self.onset)
        below = np.nonzero(cdf <= alpha)[0]
        return int(below[-1]) if below.size else -1


@dataclass
class OnsetPosterior(OnsetReading):
    """The posterior over the onset of a rise in a checkpoint series."""

    checkpoints: int
    p_rise: float  # probability that the rate rose at all
    onset: np.ndarray = field(repr=False)  # P(onset at i | a rise), i = 0..checkpoints-1
    p_two_stage: float = 0.0  # P(the rise came in two stages | a rise)


def logsumexp(a: np.ndarray | Sequence[float], axis: int | None = None) -> np.ndarray:
    """log(sum(exp(a))) along `axis` (all of it by default), without overflow; an all -inf slice
    gives -inf. scipy's does the same with more checks, which cost more than the sum here."""
    a = np.asarray(a, dtype=float)
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return np.asarray(np.squeeze(out, axis=axis) if axis is not None else out.reshape(()))


def _rate_index(rates: np.ndarray) -> np.ndarray:
    """Nearest tabulated rate, on the log scale."""
    logs = np.log(RATE_GRID)
    idx = np.searchsorted(logs, np.log(np.clip(rates, RATE_GRID[0], RATE_GRID[-1])))
    idx = np.clip(idx, 1, len(RATE_GRID) - 1)
    left = np.log(np.clip(rates, RATE_GRID[0], RATE_GRID[-1])) - logs[idx - 1]
    right = logs[idx] - np.log(np.clip(rates, RATE_GRID[0], RATE_GRID[-1]))
    return np.asarray(np.where(left < right, idx - 1, idx))


def _binomial(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.asarray(k * np.log(p) + (n - k) * np.log1p(-p))


def _p0_nodes(k: np.ndarray, n: np.ndarray, prior: OnsetPrior) -> tuple[np.ndarray, np.ndarray]:
    """Where the base rate p0 is integrated, and each node's log prior mass (flat on the log
    scale over the prior's range): the prior's grid, plus a dense cluster around the pooled rate.

    A long, well-judged series pins the rate down far more finely than any fixed grid; with
    nodes too coarse, "no rise" fits worse than a rise that can pick its rate from more
    combinations, and a steady series would read as rising."""
    low, high = float(min(prior.p0)), float(max(prior.p0))
    dense = _dense(k, n, prior)
    nodes = np.unique(np.concatenate([prior.p0, dense[(dense > low) & (dense < high)]]))
    logs = np.log(nodes)
    edges = np.concatenate([[np.log(low)], (logs[1:] + logs[:-1]) / 2, [np.log(high)]])
    return nodes, np.log(np.diff(edges) / (np.log(high) - np.log(low)))


def _ratio_nodes(
    k: np.ndarray, n: np.ndarray, prior: OnsetPrior, p0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each base-rate node, the ratios the risen rate is integrated over and their log prior
    masses (flat on the log scale over the prior's ratio range): the prior's grid, plus the
    ratios that land on dense nodes around the pooled rate of the series' later half. A long,
    well-judged risen stretch pins its rate down as finely as a steady series does; on the
    coarse grid alone a rise would fit worse than "no rise" there. Shapes (p0, r); a ratio
    outside the range has no mass."""
    grid = np.array(prior.ratio)
    low, high = np.log(grid.min()), np.log(grid.max())
    # A risen rate is at most the top of the tabulated rates: above a base rate of p0, the
    # ratios are flat on the log scale from the lowest to the smaller of the highest and
    # top / p0, the last of them standing for every rise to the top. (The whole grid at every
    # p0 would put most of a share's prior, 20% at its base, on rises past 100%, a hypothesis
    # no counts can favour, and charge a rise of a common behaviour for it.)
    to_top = RATE_GRID[-1] / p0[:, None]
    cap = np.minimum(high, np.log(to_top))
    most = np.maximum(cap, low + 1e-6)
    late = len(k) // 2
    targets = _dense(k[late:], n[late:], prior)
    ratios = np.concatenate(
        [np.broadcast_to(grid, (len(p0), len(grid))), targets[None, :] / p0[:, None]], axis=1
    )
    ratios.sort(axis=1)
    logs = np.log(ratios)
    above = logs > most
    first_above = above & (np.cumsum(above, axis=1) == 1)
    inside = (logs >= low) & (~above | first_above)
    clipped = np.clip(logs, low, most)
    middle = (clipped[:, 1:] + clipped[:, :-1]) / 2
    edges = np.concatenate([np.full((len(p0), 1), low), middle, most], axis=1)
    with np.errstate(divide="ignore"):
        mass = np.log(np.where(inside, np.diff(edges, axis=1), 0.0) / (most - low))
    ratios = np.where(first_above, np.exp(most), ratios)
    # Above a base rate of top / 1.5 (63%) even the smallest rise passes the top: one node, a
    # rise to the top, holds all the mass (from a base rate at the top itself, a rise can only
    # be read as one past it, as before).
    short = cap <= low
    alone = short & (np.arange(ratios.shape[1]) == 0)[None, :]
    inside = np.where(short, alone, inside)
    mass = np.where(short, np.where(alone, 0.0, -np.inf), mass)
    ratios = np.where(alone, np.where(to_top > 1, to_top, np.exp(low)), ratios)
    return np.where(inside, ratios, grid[0]), mass


def _dense(k: np.ndarray, n: np.ndarray, prior: OnsetPrior) -> np.ndarray:
    """`prior.dense` rates around the pooled rate, as wide as its uncertainty (log units)."""
    pooled = (k.sum() + 0.5) / (n.sum() + 1.0)
    half = min(0.7, max(0.04, 5.0 / np.sqrt(k.sum() + 1.0)))
    return np.asarray(np.exp(np.log(pooled) + np.linspace(-half, half, prior.dense)))


def _loglik_table(
    k: np.ndarray,
    n: np.ndarray,
    prior: OnsetPrior,
    extra: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
) -> np.ndarray:
    """log P(k_i | n_i, rate, spread) for every tabulated rate and spread: (spread, rate, i).
    The rates are RATE_GRID's, then `extra`'s (evaluated exactly). A position that sums `size`
    checkpoints wobbles by the spread / sqrt(size) (their wobbles average out)."""
    shrink = np.ones(len(k)) if sizes is None else 1.0 / np.sqrt(sizes)
    rates = RATE_GRID if extra is None else np.concatenate([RATE_GRID, extra])
    p = np.clip(rates, 1e-9, 1 - 1e-9)[:, None]
    tables = []
    outlying = None
    if prior.outliers > 0:  # a checkpoint at 1/10 to 10 times the rate, log-uniformly
        factors = np.exp(np.linspace(np.log(0.1), np.log(10.0), 9))
        scaled = np.clip(p[None] * factors[:, None, None], 1e-9, 1 - 1e-9)
        each = _binomial(k, n, scaled)
        outlying = logsumexp(each, axis=0) - np.log(len(factors))
        # The first judged checkpoint is an outlier only above the rate: with nothing before
        # it, "a low outlier, then the rate as it stays" is "a rise at the second checkpoint"
        # read the other way, and the outlier, a constant 3% against a rise's 0.5 / (T - 1) at
        # each place, would win it on every run longer than 17 checkpoints however strong the
        # rise. The gate cannot tell them apart, so it does not pass a rise as a fluke. (A high
        # first checkpoint, a bad batch before a steady run, is still an outlier.)
        first = np.argmax(n > 0)
        high = factors >= 1
        outlying[:, first] = logsumexp(each[high, :, first], axis=0) - np.log(high.sum())
    for spread in prior.spread:
        if prior.dispersion == "log-normal" and spread > 0:
            nodes, weights = _HERMITE
            wobble = np.exp(np.sqrt(2) * spread * np.multiply.outer(nodes, shrink))
            wobbled = np.clip(p[None] * wobble[:, None, :], 1e-9, 1 - 1e-9)
            ll = logsumexp(
                _binomial(k, n, wobbled) + np.log(weights / np.sqrt(np.pi))[:, None, None], axis=0
            )
        elif prior.dispersion == "log-normal" or np.isinf(spread):
            ll = _binomial(k, n, p)
        else:
            # only the beta-binomial needs it (scipy.special takes a quarter second to import)
            from scipy.special import betaln

            a, b = p * spread, (1 - p) * spread
            ll = betaln(k + a, n - k + b) - betaln(a, b)
        if outlying is not None:
            ll = np.logaddexp(np.log1p(-prior.outliers) + ll, np.log(prior.outliers) + outlying)
        tables.append(np.where(n > 0, ll, 0.0))
    return np.stack(tables)


def onset_posterior(
    k: Sequence[int] | np.ndarray,
    n: Sequence[int] | np.ndarray,
    prior: OnsetPrior = DEFAULT_PRIOR,
    *,
    zoom: bool = True,
) -> OnsetPosterior:
    """The onset posterior of a series of counts: k successes in n trials per checkpoint.

    On a long series whose onset lies in the summed history, a second pass reads it finely
    there (`zoom`); P(rise) barely moves with it, so an alarm may skip it."""
    ks = np.asarray(k, dtype=float)
    ns = np.asarray(n, dtype=float)
    if ks.shape != ns.shape or ks.ndim != 1:
        raise ValueError("k and n must be sequences of the same length")
    if np.any(ks < 0) or np.any(ks > ns):
        raise ValueError("every count needs 0 <= k <= n")
    if len(ks) < 2 or not np.any(ns > 0):
        t = len(ks)
        return OnsetPosterior(t, 0.0, np.full(max(t, 1), 1.0 / max(t, 1)))
    lead = int(np.argmax(ns > 0))
    # Before its first judgment the series said nothing: no onset is placed there. (The onset
    # array keeps every position; `known_clean` counts from the series' start, so callers that
    # ask it, as the restore point does, trim a series to its first judged checkpoint first.)
    if lead:
        inner = onset_posterior(ks[lead:], ns[lead:], prior, zoom=zoom)
        onset = np.concatenate([np.zeros(lead), inner.onset])
        onset.flags.writeable = False
        return OnsetPosterior(len(ks), inner.p_rise, onset, inner.p_two_stage)
    key = (ks.tobytes(), ns.tobytes(), prior, zoom)
    if key in _SEEN:
        return _SEEN[key]
    ks, ns = capped(ks, ns, prior.most_events)
    post = _posterior(*_compress(ks, ns, prior), len(ks), prior)
    window = _focus(post, len(ks), prior) if zoom else None
    if window is not None:  # the onset lies in the summed history: read it finely there
        post = _posterior(*_compress(ks, ns, prior, window), len(ks), prior)
    post.onset.flags.writeable = False  # shared by every caller that asks again
    if len(_SEEN) >= _REMEMBER:
        _SEEN.pop(next(iter(_SEEN)))
    _SEEN[key] = post
    return post


def capped(
    k: np.ndarray | Sequence[float], n: np.ndarray | Sequence[float], most: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Counts along the last axis with each checkpoint counted as at most `most` events, k and n
    scaled down together (its rate kept); None: as they are.

    A checkpoint is measured against the level of the ones before it (the mean of their rates,
    or its own rate for the first): one far above that level is capped by its own events, one
    far below it (no event in a million episodes of a 1% series) by the events the level would
    give it, so no checkpoint pins its rate more finely than the model's grids resolve, whichever
    way it departs. Each checkpoint's scale depends on its past only: a prefix of a series is
    capped as the whole series' first checkpoints are (the screen of every prefix at once, and
    a replay that sees only the past, agree with a check at that checkpoint)."""
    ks = np.asarray(k, dtype=float)
    ns = np.asarray(n, dtype=float)
    if most is None or ks.size == 0:
        return ks, ns
    judged = ns > 0
    rates = np.where(judged, ks / np.where(judged, ns, 1.0), 0.0)
    seen: np.ndarray = np.cumsum(judged, axis=-1) - judged  # judged checkpoints before each one
    before = np.cumsum(rates, axis=-1) - rates
    level = np.where(seen > 0, before / np.maximum(seen, 1), rates)
    scale = np.minimum(1.0, most / np.maximum(np.maximum(ks, ns * level), 1.0))
    return ks * scale, ns * scale


# The posteriors computed in this process, by their counts and prior (a pure function's
# results): the review page asks again for the series its restore point placed moments before.
_REMEMBER = 512
_SEEN: dict[tuple[bytes, bytes, OnsetPrior, bool], OnsetPosterior] = {}


def _focus(post: OnsetPosterior, length: int, prior: OnsetPrior) -> tuple[int, int] | None:
    """Where to keep checkpoints one by one on a second pass: from the checkpoint where the
    onset's first 0.1% lies to its median, at least `prior.recent` and at most twice that; None
    when a rise is unlikely or the summed history holds less than 1% of the onset's mass (or the
    series was not summed at all)."""
    old = length - prior.recent
    if old - 1 < 2 * prior.blocks or post.p_rise < 0.5 or post.p_onset_by(old - 1) < 0.01:
        return None
    cdf = np.cumsum(post.onset)
    first = max(1, min(int(np.searchsorted(cdf, 0.001)), old - 1))
    median = int(np.searchsorted(cdf, 0.5)) + 1
    return first, min(old, max(first + prior.recent, median), first + 2 * prior.recent)


def _posterior(
    ks: np.ndarray,
    ns: np.ndarray,
    sizes: np.ndarray,
    starts: np.ndarray,
    length: int,
    prior: OnsetPrior,
) -> OnsetPosterior:
    """The posterior over `length` checkpoints, read as the positions `_compress` made."""
    t = len(ks)
    p0_grid, weights = _p0_nodes(ks, ns, prior)
    ratios, ratio_mass = _ratio_nodes(ks, ns, prior, p0_grid)  # (p0, r) each
    exact = [p0_grid, (p0_grid[:, None] * ratios).ravel()]
    if prior.two_stage > 0:
        exact.append((p0_grid[:, None] * np.array(prior.first_ratio)[None, :]).ravel())
    # Each distinct rate once: the dense risen rates are the same for every base rate.
    rates, row = np.unique(np.concatenate(exact), return_inverse=True)
    row = len(RATE_GRID) + row.ravel()  # each exact rate's row of the table
    table = _loglik_table(ks, ns, prior, rates, sizes)  # (spread, rate, i)
    cum = np.concatenate([np.zeros((*table.shape[:2], 1)), np.cumsum(table, axis=2)], axis=2)
    size = len(p0_grid)
    j0 = row[:size]  # (p0,): exact rows of the table
    j1 = row[size : size + ratios.size].reshape(ratios.shape)  # (p0, r)
    # No rise: p0 everywhere.
    null = cum[:, j0, t] + weights  # (phi, p0)
    log_null = logsumexp(null) - np.log(len(prior.spread))
    # A rise at onset tau with ramp L: p0 before tau, the ramp, then p1; all tau at once.
    taus = np.arange(t)
    before = (cum[:, j0, :t] + weights[:, None])[:, :, None, :] + ratio_mass[None, :, :, None]
    full = cum[:, j1, :]  # (phi, p0, r, t + 1)
    logs = np.full((t, len(prior.ramps)), -np.inf)
    for li, ramp in enumerate(prior.ramps):
        fracs = np.arange(1, ramp) / ramp  # the ramp's checkpoints before the full rate
        ramp_j = _rate_index(
            p0_grid[:, None, None] * (1 + (ratios[:, :, None] - 1) * fracs[None, None, :])
        )  # (p0, r, L-1)
        ll = np.broadcast_to(before, (len(prior.spread), *ratios.shape, t)).copy()
        for s in range(min(ramp - 1, t)):  # the s-th ramp checkpoint of onset tau is tau + s
            ramp_ll = table[:, ramp_j[:, :, s], :]  # (phi, p0, r, i)
            ll[..., : t - s] += ramp_ll[..., s:]
        end = np.minimum(t, taus + ramp - 1)
        ll += full[..., t : t + 1] - full[..., end]
        flat = ll.reshape(-1, t)
        top = flat.max(axis=0)  # logsumexp over the grid, in place (the hot loop)
        np.exp(np.subtract(flat, top, out=flat), out=flat)
        logs[:, li] = np.log(flat.sum(axis=0)) + top - np.log(len(prior.spread))
    logs[0] = -np.inf  # an onset needs a checkpoint before it
    single = logsumexp(logs + prior.log_ramp_weights(), axis=1)  # (t,); tau = 0 stays -inf
    per_onset, p_two = single, np.zeros(t)
    if prior.two_stage > 0:
        double = _two_stage(table, cum, prior, p0_grid, weights, j0, row[size + ratios.size :])
        w = prior.two_stage
        parts = np.stack([np.log1p(-w) + single, np.log(w) + double])
        per_onset = logsumexp(parts, axis=0)
        with np.errstate(invalid="ignore"):
            p_two = np.nan_to_num(np.exp(parts[1] - per_onset))
    # The onset is uniform over the checkpoints after the first: a block holds as many as it sums.
    per_onset = per_onset + np.log(sizes)
    per_onset[0] = -np.inf
    log_rise = logsumexp(per_onset[1:]) - np.log(length - 1)
    odds = np.log([1 - prior.p_rise, prior.p_rise])
    evidence = logsumexp([log_null + odds[0], log_rise + odds[1]])
    p_rise = float(np.exp(log_rise + odds[1] - evidence))
    mass = np.exp(per_onset - logsumexp(per_onset))
    # A block's mass goes to its first checkpoint: its whole block counts as contaminated.
    onset = np.zeros(length)
    onset[starts] = mass
    return OnsetPosterior(length, p_rise, onset, float(np.sum(mass * p_two)))


def _compress(
    k: np.ndarray, n: np.ndarray, prior: OnsetPrior, focus: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The series the model reads: (k, n, size, start) per position. A short series is itself
    (every size 1). A long one keeps its first checkpoint (nothing comes before it), its last
    `prior.recent` and those in `focus` (a range) one by one, and sums the rest into at most
    `prior.blocks` runs of consecutive checkpoints of nearly equal length: an alarm reads recent
    checkpoints finely and the old history as a whole."""
    t = len(k)
    old = t - prior.recent - 1  # the checkpoints between the first and the recent ones
    if old < 2 * prior.blocks:
        return k, n, np.ones(t), np.arange(t)
    lo, hi = focus if focus is not None else (t - prior.recent, t - prior.recent)
    parts = [np.zeros(1, dtype=int), np.arange(lo, hi), np.arange(t - prior.recent, t)]
    for a, b in ((1, lo), (hi, t - prior.recent)):  # the summed stretches, blocks shared out
        if b > a:
            count = max(1, round(prior.blocks * (b - a) / old))
            parts.append(np.unique(a + (np.arange(count) * (b - a)) // count))
    starts = np.unique(np.concatenate(parts))
    return (
        np.add.reduceat(k, starts),
        np.add.reduceat(n, starts),
        np.diff(np.append(starts, t)).astype(float),
        starts,
    )


def _ramp_ll(
    table: np.ndarray, low: np.ndarray, ratio: np.ndarray, length: int, t: int
) -> np.ndarray:
    """log-likelihood of the ramp checkpoints of a rise starting at each tau: the rate goes from
    `low` to `low x ratio` over `length` checkpoints, the last of them at the full rate (so the
    ramp proper is the first length - 1). Shapes: low (p0, a), ratio (b,) -> (spread, p0, a, b,
    t); positions past the end add nothing."""
    out = np.zeros((table.shape[0], *low.shape, len(ratio), t))
    for s in range(min(length - 1, t)):
        rate = low[:, :, None] * (1 + (ratio[None, None, :] - 1) * (s + 1) / length)
        out[..., : t - s] += table[:, _rate_index(rate), :][..., s:]
    return out


def _two_stage(
    table: np.ndarray,
    cum: np.ndarray,
    prior: OnsetPrior,
    p0: np.ndarray,
    weights: np.ndarray,
    j0: np.ndarray,
    first_rows: np.ndarray,
) -> np.ndarray:
    """log P(counts | two stages, first onset at tau) for every tau, averaged over the grids, the
    ramps and the second onset.

    The second onset comes `gap` checkpoints after the first stage reaches its rate, `gap` even
    over 1 .. `second_gap`; a second onset past the last checkpoint is not yet seen (the counts
    show the first stage only). Its terms do not depend on tau, so they are tabulated once."""
    t = table.shape[2]
    r1, r2 = np.array(prior.first_ratio), np.array(prior.ratio)
    p1 = p0[:, None] * r1[None, :]  # (p0, r1)
    # A first stage too small to matter (2x a rate of 0.01%) is no contamination: ruled out.
    material = p1 - p0[:, None] >= prior.first_step  # (p0, r1)
    if not material.any():
        return np.full(t, -np.inf)
    j1 = first_rows.reshape(p1.shape)  # exact rows of the table
    j2 = _rate_index(p1[:, :, None] * r2[None, None, :])  # (p0, r1, r2)
    taus = np.arange(t)
    c1 = cum[:, j1, :]  # (spread, p0, r1, t + 1)
    c2 = cum[:, j2, :]  # (spread, p0, r1, r2, t + 1)
    # second[..., tau2]: the first stage's rate up to tau2, then the second stage (any ratio and
    # ramp, averaged); past the end, the first stage's rate to the end.
    second = np.full((*c1.shape[:-1], t), -np.inf)
    for length in prior.second_ramps:
        end = np.minimum(t, taus + length - 1)
        a = c1[..., None, :t] + (c2[..., t : t + 1] - c2[..., end])
        a += _ramp_ll(table, p1, r2, length, t).reshape(a.shape)
        np.logaddexp(second, logsumexp(a, axis=3), out=second)
    second -= np.log(len(prior.second_ramps) * len(r2))
    longest = max(prior.first_ramps) + prior.second_gap + 1
    unseen = np.broadcast_to(c1[..., t : t + 1], (*c1.shape[:-1], longest))
    second = np.concatenate([second, unseen], axis=-1)
    c0 = (cum[:, j0, :] + weights[:, None])[:, :, None, :]  # (spread, p0, 1, t + 1)
    found = np.full((len(prior.first_ramps), t), -np.inf)
    gaps = np.arange(1, prior.second_gap + 1)
    excluded = np.where(material, 0.0, -np.inf)[None, :, :, None]
    share = np.log((np.exp(weights)[:, None] * material).sum() / len(r1))  # the prior mass left
    for li, length in enumerate(prior.first_ramps):
        first_end = np.minimum(t, taus + length - 1)
        head = excluded + (
            c0[..., :t] + _ramp_ll(table, p0[:, None], r1, length, t)[:, :, 0] - c1[..., first_end]
        )
        onsets = taus[:, None] + length - 1 + gaps[None, :]  # (tau, gap) -> tau2
        ll = head + logsumexp(second[..., onsets], axis=-1) - np.log(len(gaps))
        found[li] = (
            logsumexp(ll.reshape(-1, t), axis=0) - np.log(len(prior.spread) * len(r1)) - share
        )
    return np.asarray(logsumexp(found, axis=0) - np.log(len(prior.first_ramps)))
