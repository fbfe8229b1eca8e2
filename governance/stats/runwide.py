"""Run-wide onset: did a rise begin across a run's environments, even where no one
environment's series carries enough evidence to show it?

A pure function of a matrix of counts, environments x checkpoints (n = 0 where a cell was not
judged). The model pools evidence, never rates:
- every environment keeps its own base rate p_e, integrated per environment (a grid plus dense
  nodes around its own pooled rate), so a shift of the mix of environments is not a rise;
- a rise begins at one checkpoint tau for the whole run, at once or over a ramp (shared);
- from tau on, each environment is affected with probability `share` (integrated over a grid,
  so one environment alone, a few, or all), and an affected environment's rate is r_e x p_e,
  with log r_e normal around a run-wide log R (R and the spread between environments
  integrated): environments differ in how much they rise, and say so;
- within an environment the rate wobbles between checkpoints and a checkpoint may be an
  outlier, as in the per-environment model (`onset.py`);
- half the prior mass is on no rise at all; tau is uniform over the checkpoints after the first.

Given tau, the ramp, the share and the effect, environments are independent, so the run's
likelihood is a product over environments of "unaffected or affected" mixtures: the cost grows
with environments x checkpoints, and a long run is read as `onset.py` reads one (its last
checkpoints one by one, the older ones summed into blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .onset import OnsetPrior, OnsetReading, _compress, capped, logsumexp


@dataclass(frozen=True)
class RunPrior:
    """What the run-wide model assumes before it sees the counts."""

    ratio: tuple[float, ...] = tuple(np.geomspace(1.1, 30.0, 14))  # one environment's rise
    effect: tuple[float, ...] = tuple(np.geomspace(1.3, 10.0, 6))  # the run-wide typical rise
    effect_spread: tuple[float, ...] = (0.2, 0.5)  # sd of log r_e around log R
    share: tuple[float, ...] = (0.05, 0.2, 0.4, 0.7, 1.0)  # of environments affected
    ramps: tuple[int, ...] = (1, 3, 6, 10)
    p_rise: float = 0.5
    recent: int = 64
    blocks: int = 32
    # Each cell counts as at most this many events, its rate kept, as in the per-environment
    # model (OnsetPrior.most_events), here fewer: the quasi-likelihood tempers by a dispersion
    # estimated from the run's checkpoints so far, too few early on to see a wobble that dwarfs
    # counting noise. Runs of 20 steady environments x 30 checkpoints of a million episodes a
    # cell (wobble sd 0.2): uncapped, 3 of 3 blocked within six checkpoints; at 100 events, 3 of
    # 13; at 40, none of 13, and a 1.8x rise in 12 of them alarmed one checkpoint after it
    # began, restored from the one before it. bench/onset.py's run-level table is unchanged.
    # None: no cap.
    most_events: float | None = 40.0

    def __post_init__(self) -> None:
        if self.most_events is not None and not self.most_events >= 1:
            raise ValueError("most_events is at least 1 (or None)")
        if min(self.ratio) <= 1 or min(self.effect) <= 1 or min(self.effect_spread) <= 0:
            raise ValueError("ratios and effects are above 1 and their spreads positive")
        if not all(0 < s <= 1 for s in self.share) or not 0 < self.p_rise < 1:
            raise ValueError("shares are in (0, 1] and p_rise in (0, 1)")
        if min(self.ramps) < 1:
            raise ValueError("ramps are lengths >= 1")


DEFAULT_RUN_PRIOR = RunPrior()


@dataclass
class Contribution:
    """One environment's part in a run-wide rise."""

    index: int  # the environment's row in the matrix
    p_affected: float  # P(this environment rose with the run | a rise)
    effect: float  # its rise if affected: exp(E[log r_e | affected]) (1.0 where never affected)
    evidence: float  # E[log(its Bayes factor for the rise)], nats: what it adds to the case


@dataclass
class RunOnsetPosterior(OnsetReading):
    """The posterior over a run-wide onset."""

    checkpoints: int
    environments: int
    p_rise: float  # P(a rise began, shared by one or more environments)
    onset: np.ndarray = field(repr=False)  # P(onset at i | a rise), i = 0..checkpoints-1
    share: float  # E[share of environments affected | a rise]
    effect: float  # exp(E[log R | a rise]): the typical affected environment's rise
    contributions: list[Contribution] = field(repr=False, default_factory=list)
    # With the contributions: the same posterior without the environment that contributes most
    # (the contribution with the most evidence; -1 where none): P(a rise) and the onset's
    # distribution, to tell a run-wide rise from one environment's own
    without_top: int = -1
    p_rise_without_top: float = 0.0
    onset_without_top: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def p_without_top_by(self, index: int) -> float:
        """P(a rise began at or before checkpoint `index`) without the leading environment."""
        if index < 0 or self.without_top < 0:
            return 0.0
        return self.p_rise_without_top * float(self.onset_without_top[: index + 1].sum())

    def leading(self, count: int = 5, at_least: float = 0.5) -> list[Contribution]:
        """The environments that contribute most to the evidence, most first: those affected
        with probability at least `at_least`, at most `count` of them."""
        ranked = sorted(self.contributions, key=lambda c: (-c.evidence, c.index))
        return [c for c in ranked if c.p_affected >= at_least][:count]


def run_onset(
    k: np.ndarray | list[list[int]],
    n: np.ndarray | list[list[int]],
    prior: RunPrior = DEFAULT_RUN_PRIOR,
    *,
    details: bool = True,
) -> RunOnsetPosterior:
    """The run-wide onset posterior of a matrix of counts: k of n judged episodes per
    environment (rows) and checkpoint (columns), n = 0 where a cell was not judged. Needs two
    or more environments with judgments (with one, the per-environment model is the model).
    `details`: also each environment's part (an alarm's replay skips it)."""
    shape = "k and n must be matrices of the same shape (environments x checkpoints)"
    try:
        ks = np.asarray(k, dtype=float)
        ns = np.asarray(n, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(shape) from exc
    if ks.shape != ns.shape or ks.ndim != 2:
        raise ValueError(shape)
    if np.any(ks < 0) or np.any(ks > ns):
        raise ValueError("every count needs 0 <= k <= n")
    judged = ns.sum(axis=1) > 0
    if judged.sum() < 2:
        raise ValueError("a run-wide analysis needs two or more environments with judgments")
    environments, length = ks.shape
    ks, ns = capped(ks, ns, prior.most_events)  # each cell's evidence, its rate kept
    if length < 2:
        return RunOnsetPosterior(length, environments, 0.0, np.ones(max(length, 1)), 0.0, 1.0)
    knobs = OnsetPrior(recent=prior.recent, blocks=prior.blocks)
    _, _, sizes, starts = _compress(ks[0], ns[0], knobs)
    rows = np.flatnonzero(judged)
    kc = np.add.reduceat(ks[rows], starts, axis=1)
    nc = np.add.reduceat(ns[rows], starts, axis=1)
    memo = (kc.tobytes(), nc.tobytes(), rows.tobytes(), starts.tobytes(), length, prior)
    fit = _FITS.get(memo)
    if fit is None:
        fit = _fit(evidence(kc, nc, prior), sizes, starts, length, prior)
        fit.onset.flags.writeable = False  # shared by every reader of this fit
        if len(_FITS) >= 2:
            _FITS.pop(next(iter(_FITS)))
        _FITS[memo] = fit
    out = RunOnsetPosterior(length, environments, fit.p_rise, fit.onset, fit.share, fit.effect)
    if details:
        _detail(out, fit, rows, sizes, starts, length, prior)
    return out


# The last fits, by their counts and prior: an alarm asks first without the environments' parts
# (cheap when nothing fired), then again with them, from the same fit.
_FITS: dict[tuple[object, ...], _Fit] = {}


def evidence(k: np.ndarray, n: np.ndarray, prior: RunPrior = DEFAULT_RUN_PRIOR) -> np.ndarray:
    """Each environment's log Bayes factor of "affected by a rise at tau, with ramp L and ratio
    r" over "no rise": shape (environments, ramps, ratios, tau).

    Counts are Poisson at rate n x p x m (m = 1 before the onset, rising to r over the ramp),
    p with the scale-free prior 1/p, which both models share and which integrates out in closed
    form: log BF = sum_i k_i log m_i - K log(sum_i n_i m_i / N). Extra variation between
    checkpoints (the dispersion `dispersion` estimates) tempers it, as quasi-likelihood does."""
    e, t = k.shape
    total_k, total_n = k.sum(axis=1), n.sum(axis=1)
    ck = np.concatenate([np.zeros((e, 1)), np.cumsum(k, axis=1)], axis=1)
    cn = np.concatenate([np.zeros((e, 1)), np.cumsum(n, axis=1)], axis=1)
    ratios = np.array(prior.ratio)
    taus = np.arange(t)
    longest = max(prior.ramps)
    # the counts at tau, tau + 1, ... (zero past the end): (env, tau, s)
    ahead_k = sliding_window_view(np.pad(k, ((0, 0), (0, longest))), longest, axis=1)[:, :t]
    ahead_n = sliding_window_view(np.pad(n, ((0, 0), (0, longest))), longest, axis=1)[:, :t]
    out = np.empty((e, len(prior.ramps), len(ratios), t))
    log_n = np.log(np.maximum(total_n, 1e-300))[:, None, None]
    for li, ramp in enumerate(prior.ramps):
        end = np.minimum(taus + ramp - 1, t)  # the first checkpoint at the full rate
        full_k = (ck[:, t : t + 1] - ck[:, end])[:, None, :]
        full_n = (cn[:, t : t + 1] - cn[:, end])[:, None, :]
        weighted = full_k * np.log(ratios)[None, :, None]
        scaled = cn[:, None, :t] + full_n * ratios[None, :, None]
        if ramp > 1:  # the ramp's s-th checkpoint of onset tau, tau + s, at 1 + (r - 1)(s + 1)/L
            steps = 1 + (ratios[None, :] - 1) * (np.arange(1, ramp)[:, None] / ramp)  # (s, r)
            weighted += (ahead_k[:, :, : ramp - 1] @ np.log(steps)).transpose(0, 2, 1)
            scaled += (ahead_n[:, :, : ramp - 1] @ steps).transpose(0, 2, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, li] = weighted - total_k[:, None, None] * (np.log(scaled) - log_n)
    return np.asarray(out / dispersion(k, n)[:, None, None, None])


def dispersion(k: np.ndarray, n: np.ndarray, weight: float = 4.0) -> np.ndarray:
    """Each environment's variation between checkpoints over what counting alone gives (at
    least 1): the median squared difference between consecutive judged checkpoints, over its
    expectation under counting noise at their local rate (a step changes one difference, and a
    median does not follow one), shrunk towards 1 as if `weight` more had been seen."""
    found = np.ones(len(k))
    for row in range(len(k)):
        judged = np.flatnonzero(n[row])
        if len(judged) < 3:
            continue
        kk, nn = k[row, judged], n[row, judged]
        local = (kk[1:] + kk[:-1] + 0.5) / (nn[1:] + nn[:-1] + 1.0)
        scale = local * (1 - local) * (1 / nn[1:] + 1 / nn[:-1])
        ratios = np.diff(kk / nn) ** 2 / scale
        count = len(ratios)
        found[row] = (count * float(np.median(ratios)) / _CHI2_MEDIAN + weight) / (count + weight)
    return np.asarray(np.maximum(1.0, found))


_CHI2_MEDIAN = 0.4549364  # the median of a chi-square with one degree of freedom


@dataclass
class _Fit:
    """The run's posterior from each environment's log Bayes factors, with what each
    environment's part is read from: the ratio summed out per effect (`mixed`, from `scaled`
    and the weights `q`), its log (`a`), and the gains summed over environments (`total`)."""

    p_rise: float
    post: np.ndarray  # given a rise, over the cells (share, ramp, tau, effect)
    onset: np.ndarray
    share: float
    effect: float
    q: np.ndarray
    scaled: np.ndarray
    mixed: np.ndarray
    a: np.ndarray
    linear: _Linear
    total: np.ndarray


def _fit(
    bf: np.ndarray,
    sizes: np.ndarray,
    starts: np.ndarray,
    length: int,
    prior: RunPrior,
) -> _Fit:
    """The run's posterior from each environment's log Bayes factors (env, ramp, r, tau): the
    share affected, the run-wide effect and its spread, the ramp and the onset summed out."""
    logr = np.log(np.array(prior.ratio))
    effects = [(big, sd) for big in np.log(prior.effect) for sd in prior.effect_spread]
    q = np.array([-((logr - big) ** 2) / (2 * sd**2) for big, sd in effects]).T  # (r, combo)
    q = np.exp(q - logsumexp(q, axis=0)[None, :])
    x = bf.transpose(0, 1, 3, 2)  # (env, ramp, tau, r)
    top = x.max(axis=3, keepdims=True)
    scaled = np.exp(x - top)
    mixed = scaled @ q  # (env, ramp, tau, combo): the ratio summed out, for each effect
    a = np.log(mixed) + top
    shares = np.array(prior.share)
    # each environment's gain, log(1 - share + share x BF), summed over environments: in single
    # precision and the linear domain (the hot loop), exactly log(share) + log BF where BF is huge
    linear = _Linear.of(a)
    total = np.empty((len(shares), *a.shape[1:]))  # (share, ramp, tau, combo)
    for i, share in enumerate(shares):
        total[i] = linear.gains(share).sum(axis=0, dtype=np.float64)
    p_rise, post, onset = _given(total, sizes, starts, length, prior)
    share = float(np.einsum("sltc,s->", post, shares))
    effect = float(np.exp(np.einsum("sltc,c->", post, np.array([b for b, _ in effects]))))
    return _Fit(p_rise, post, onset, share, effect, q, scaled, mixed, a, linear, total)


def _detail(
    out: RunOnsetPosterior,
    fit: _Fit,
    rows: np.ndarray,
    sizes: np.ndarray,
    starts: np.ndarray,
    length: int,
    prior: RunPrior,
) -> None:
    """Each environment's part in the rise, and the posterior without the leading one."""
    logr = np.log(np.array(prior.ratio))
    shares = np.array(prior.share)
    post, q, scaled, mixed, a = fit.post, fit.q, fit.scaled, fit.mixed, fit.a
    # Each environment's part is an average over the posterior's cells (share, ramp, onset,
    # effect): over the fewest cells that hold all but 1e-10 of its mass, not all of them
    # (a few hundred of 23,000 at the defaults), which bounds each average's error by that
    # mass times its largest term and makes 300 environments cost milliseconds.
    flat = post.ravel()
    ranked = np.argsort(flat)[::-1]
    held = np.cumsum(flat[ranked])
    cells = ranked[: int(np.searchsorted(held, held[-1] * (1 - 1e-10))) + 1]
    w = flat[cells]
    si, li, ti, ci = np.unravel_index(cells, post.shape)
    with np.errstate(divide="ignore"):
        unaffected = np.where(shares < 1, np.log1p(-np.minimum(shares, 0.999)), -np.inf)
    log_share = np.log(shares)[si][None, :] + a[:, li, ti, ci]  # (env, cell)
    gain = np.logaddexp(unaffected[si][None, :], log_share)
    affected = np.exp(log_share - gain)
    p_aff = affected @ w
    # E[log r | affected] in each cell: the ratio's posterior within the cell's effect
    weighted = np.einsum("emr,rm->em", scaled[:, li, ti, :], (q * logr[:, None])[:, ci])
    mean_r = weighted / mixed[:, li, ti, ci]
    log_r = (affected * mean_r) @ w
    evidence = gain @ w
    out.contributions.extend(
        Contribution(
            int(row), float(min(1.0, p)), float(np.exp(lr / p)) if p > 1e-9 else 1.0, float(ev)
        )
        for row, p, lr, ev in zip(rows, p_aff, log_r, evidence, strict=True)
    )
    if len(rows) < 2:
        return
    # Without the environment that contributes most: its gains taken out of the sum over
    # environments (they are independent given the cell), the rest as above
    contributions = out.contributions
    top = max(range(len(rows)), key=lambda i: (contributions[i].evidence, -rows[i]))
    total = fit.total.copy()  # the fit's own stays whole for the next reader
    for i, one in enumerate(shares):
        mine = fit.linear.gains(one, top)[0]
        lost = np.isneginf(mine)  # where it alone ruled the rise out: summed anew
        total[i] -= np.where(lost, 0.0, mine)
        if lost.any():
            others = np.delete(a[:, lost], top, axis=0)
            total[i][lost] = _Linear.of(others).gains(one).sum(axis=0, dtype=np.float64)
    out.without_top = int(rows[top])
    out.p_rise_without_top, _, out.onset_without_top = _given(total, sizes, starts, length, prior)


@dataclass(frozen=True)
class _Linear:
    """Each environment's log Bayes factors `a` (env, ...) with BF - 1 in single precision,
    computed once for every share: the gains' hot loop."""

    a: np.ndarray
    factor: np.ndarray  # BF - 1, float32, BF capped at e^30
    huge: np.ndarray  # where BF is above the cap

    @classmethod
    def of(cls, a: np.ndarray) -> _Linear:
        factor = np.exp(np.minimum(a, 30.0)).astype(np.float32) - np.float32(1.0)
        return cls(a, factor, a > 30.0)

    def gains(self, share: float, env: int | None = None) -> np.ndarray:
        """Each environment's gain in each cell, log(1 - share + share x BF) (only `env`'s, as
        a one-row array, when given): in single precision and the linear domain, exactly
        log(share) + log BF where BF is huge."""
        pick = slice(None) if env is None else slice(env, env + 1)
        a, factor, huge = self.a[pick], self.factor[pick], self.huge[pick]
        with np.errstate(divide="ignore"):  # all affected, and one rules the rise out: -inf
            gain = np.log1p(np.float32(share) * factor)
        if huge.any():
            gain = np.where(huge, np.log(share) + a, gain)
        return np.asarray(gain)


def _given(
    total: np.ndarray, sizes: np.ndarray, starts: np.ndarray, length: int, prior: RunPrior
) -> tuple[float, np.ndarray, np.ndarray]:
    """P(a rise), the posterior over the cells given a rise (share, ramp, tau, combo) and the
    onset's distribution, from the gains summed over environments."""
    # the onset is uniform over the checkpoints after the first: a block holds as many as it sums
    with np.errstate(divide="ignore"):
        place = np.log(sizes) - np.log(length - 1)
    place[0] = -np.inf
    cells = total.shape[0] * total.shape[1] * total.shape[3]  # share, ramp, effect
    weights = total + place[None, None, :, None] - np.log(cells)
    log_rise = float(logsumexp(weights))  # the log Bayes factor of a rise
    odds = np.log([1 - prior.p_rise, prior.p_rise])
    p_rise = float(np.exp(log_rise + odds[1] - np.logaddexp(odds[0], log_rise + odds[1])))
    post = np.exp(weights - log_rise)
    onset = np.zeros(length)
    onset[starts] = post.sum(axis=(0, 1, 3))
    return p_rise, post, onset
