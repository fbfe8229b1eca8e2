"""Onset analysis: when did a rate begin to rise, and how sure are we that it did at all?

A Bayesian changepoint model of binomial counts over a checkpoint series, a pure function of
(k, n) per checkpoint:
- before the onset the rate is p0; from the onset it rises to p1 = r x p0, at once (a step) or
  linearly over L checkpoints (a gradual rise);
- counts are beta-binomial with concentration phi, so checkpoints may differ by more than
  binomial noise (phi = infinity is plain binomial);
- checkpoints with no judgments (n = 0) keep their place in the order and say nothing.
p0, r, phi and L are integrated out over grids (`OnsetPrior`; flat on the log scale by default);
half the prior mass is on "no rise at all", the other half spread evenly over the onset
checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import betaln, logsumexp

RATE_GRID = np.geomspace(1e-4, 0.95, 160)  # where likelihoods are tabulated
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

    p0: tuple[float, ...] = tuple(np.geomspace(1e-4, 0.3, 18))
    ratio: tuple[float, ...] = tuple(np.geomspace(1.5, 40.0, 10))
    spread: tuple[float, ...] = (30.0, 100.0, 300.0, 1000.0, 3000.0, float("inf"))
    dispersion: Literal["beta-binomial", "log-normal"] = "beta-binomial"
    ramps: tuple[int, ...] = tuple(range(1, 16))
    ramp_weights: tuple[float, ...] | None = None
    p_rise: float = 0.5

    def __post_init__(self) -> None:
        if self.ramp_weights is not None and len(self.ramp_weights) != len(self.ramps):
            raise ValueError("ramp_weights needs one weight per ramp length")
        if min(self.ramps) < 1 or not 0 < self.p_rise < 1:
            raise ValueError("ramps are lengths >= 1 and p_rise is in (0, 1)")

    def log_ramp_weights(self) -> np.ndarray:
        w = np.ones(len(self.ramps)) if self.ramp_weights is None else np.array(self.ramp_weights)
        with np.errstate(divide="ignore"):
            return np.asarray(np.log(w / w.sum()))


DEFAULT_PRIOR = OnsetPrior()


@dataclass
class OnsetPosterior:
    """The posterior over the onset of a rise in a checkpoint series."""

    checkpoints: int
    p_rise: float  # probability that the rate rose at all
    onset: np.ndarray = field(repr=False)  # P(onset at i | a rise), i = 0..checkpoints-1

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


def _loglik_table(k: np.ndarray, n: np.ndarray, prior: OnsetPrior) -> np.ndarray:
    """log P(k_i | n_i, rate, spread) for every tabulated rate and spread: (spread, rate, i)."""
    p = RATE_GRID[:, None]
    tables = []
    for spread in prior.spread:
        if prior.dispersion == "log-normal" and spread > 0:
            nodes, weights = _HERMITE
            wobbled = np.clip(
                p[None] * np.exp(np.sqrt(2) * spread * nodes)[:, None, None], 1e-9, 1 - 1e-9
            )
            ll = logsumexp(
                _binomial(k, n, wobbled) + np.log(weights / np.sqrt(np.pi))[:, None, None], axis=0
            )
        elif prior.dispersion == "log-normal" or np.isinf(spread):
            ll = _binomial(k, n, p)
        else:
            a, b = p * spread, (1 - p) * spread
            ll = betaln(k + a, n - k + b) - betaln(a, b)
        tables.append(np.where(n > 0, ll, 0.0))
    return np.stack(tables)


def onset_posterior(
    k: Sequence[int] | np.ndarray,
    n: Sequence[int] | np.ndarray,
    prior: OnsetPrior = DEFAULT_PRIOR,
) -> OnsetPosterior:
    """The onset posterior of a series of counts: k successes in n trials per checkpoint."""
    ks = np.asarray(k, dtype=float)
    ns = np.asarray(n, dtype=float)
    if ks.shape != ns.shape or ks.ndim != 1:
        raise ValueError("k and n must be sequences of the same length")
    if np.any(ks < 0) or np.any(ks > ns):
        raise ValueError("every count needs 0 <= k <= n")
    t = len(ks)
    if t < 2 or not np.any(ns > 0):
        return OnsetPosterior(t, 0.0, np.full(max(t, 1), 1.0 / max(t, 1)))
    table = _loglik_table(ks, ns, prior)  # (spread, rate, i)
    cum = np.concatenate([np.zeros((*table.shape[:2], 1)), np.cumsum(table, axis=2)], axis=2)
    p0_grid, ratio_grid = np.array(prior.p0), np.array(prior.ratio)
    j0 = _rate_index(p0_grid)  # (p0,)
    j1 = _rate_index(p0_grid[:, None] * ratio_grid[None, :])  # (p0, r)
    # No rise: p0 everywhere.
    null = cum[:, j0, t]  # (phi, p0)
    log_null = logsumexp(null) - np.log(null.size)
    # A rise at onset tau with ramp L: p0 before tau, the ramp, then p1; all tau at once.
    taus = np.arange(t)
    before = cum[:, j0, :t][:, :, None, :]  # (phi, p0, 1, tau)
    full = cum[:, j1, :]  # (phi, p0, r, t + 1)
    logs = np.full((t, len(prior.ramps)), -np.inf)
    for li, ramp in enumerate(prior.ramps):
        fracs = np.arange(1, ramp) / ramp  # the ramp's checkpoints before the full rate
        ramp_j = _rate_index(
            p0_grid[:, None, None] * (1 + (ratio_grid[None, :, None] - 1) * fracs[None, None, :])
        )  # (p0, r, L-1)
        ll = np.broadcast_to(before, (len(prior.spread), len(p0_grid), len(ratio_grid), t)).copy()
        for s in range(min(ramp - 1, t)):  # the s-th ramp checkpoint of onset tau is tau + s
            ramp_ll = table[:, ramp_j[:, :, s], :]  # (phi, p0, r, i)
            ll[..., : t - s] += ramp_ll[..., s:]
        end = np.minimum(t, taus + ramp - 1)
        ll += full[..., t : t + 1] - full[..., end]
        flat = ll.reshape(-1, t)
        top = flat.max(axis=0)  # logsumexp over the grid, in place (the hot loop)
        np.exp(np.subtract(flat, top, out=flat), out=flat)
        logs[:, li] = np.log(flat.sum(axis=0)) + top - np.log(flat.shape[0])
    logs[0] = -np.inf  # an onset needs a checkpoint before it
    per_onset = logsumexp(logs + prior.log_ramp_weights(), axis=1)  # (t,); tau = 0 stays -inf
    log_rise = logsumexp(per_onset[1:]) - np.log(t - 1)
    odds = np.log([1 - prior.p_rise, prior.p_rise])
    evidence = logsumexp([log_null + odds[0], log_rise + odds[1]])
    p_rise = float(np.exp(log_rise + odds[1] - evidence))
    onset = np.exp(per_onset - logsumexp(per_onset))
    return OnsetPosterior(t, p_rise, onset)
