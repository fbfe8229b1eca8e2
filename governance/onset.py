"""Onset analysis: when did a rate begin to rise, and how sure are we that it did at all?

A Bayesian changepoint model of binomial counts over a checkpoint series, a pure function of
(k, n) per checkpoint:
- before the onset the rate is p0; from the onset it rises to p1 = r x p0, at once (a step) or
  linearly over L checkpoints (a gradual rise);
- counts are beta-binomial with concentration phi, so checkpoints may differ by more than
  binomial noise (phi = infinity is plain binomial);
- checkpoints with no judgments (n = 0) keep their place in the order and say nothing.
p0, r, phi and L are integrated out over grids under flat (log-scale) priors; half the prior
mass is on "no rise at all", the other half spread evenly over the onset checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betaln, logsumexp

P0_GRID = np.geomspace(1e-4, 0.3, 18)
RATIO_GRID = np.geomspace(1.5, 40.0, 10)
PHI_GRID = (30.0, 100.0, 300.0, 1000.0, 3000.0, np.inf)
RAMPS = tuple(range(1, 16))
RATE_GRID = np.geomspace(1e-4, 0.95, 160)  # where likelihoods are tabulated
PRIOR_RISE = 0.5


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


def _loglik_table(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log P(k_i | n_i, rate, phi) for every tabulated rate and phi: shape (phi, rate, i)."""
    p = RATE_GRID[:, None]
    tables = []
    for phi in PHI_GRID:
        if np.isinf(phi):
            ll = k * np.log(p) + (n - k) * np.log1p(-p)
        else:
            a, b = p * phi, (1 - p) * phi
            ll = betaln(k + a, n - k + b) - betaln(a, b)
        tables.append(np.where(n > 0, ll, 0.0))
    return np.stack(tables)


def onset_posterior(k: Sequence[int] | np.ndarray, n: Sequence[int] | np.ndarray) -> OnsetPosterior:
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
    table = _loglik_table(ks, ns)  # (phi, rate, i)
    cum = np.concatenate([np.zeros((*table.shape[:2], 1)), np.cumsum(table, axis=2)], axis=2)
    j0 = _rate_index(P0_GRID)  # (p0,)
    j1 = _rate_index(P0_GRID[:, None] * RATIO_GRID[None, :])  # (p0, r)
    # No rise: p0 everywhere.
    null = cum[:, j0, t]  # (phi, p0)
    log_null = logsumexp(null) - np.log(null.size)
    # A rise at onset tau with ramp L: p0 before tau, the ramp, then p1; all tau at once.
    taus = np.arange(t)
    before = cum[:, j0, :t][:, :, None, :]  # (phi, p0, 1, tau)
    full = cum[:, j1, :]  # (phi, p0, r, t + 1)
    logs = np.full((t, len(RAMPS)), -np.inf)
    for li, ramp in enumerate(RAMPS):
        fracs = np.arange(1, ramp) / ramp  # the ramp's checkpoints before the full rate
        ramp_j = _rate_index(
            P0_GRID[:, None, None] * (1 + (RATIO_GRID[None, :, None] - 1) * fracs[None, None, :])
        )  # (p0, r, L-1)
        ll = np.broadcast_to(before, (len(PHI_GRID), len(P0_GRID), len(RATIO_GRID), t)).copy()
        for s in range(min(ramp - 1, t)):  # the s-th ramp checkpoint of onset tau is tau + s
            ramp_ll = table[:, ramp_j[:, :, s], :]  # (phi, p0, r, i)
            ll[..., : t - s] += ramp_ll[..., s:]
        end = np.minimum(t, taus + ramp - 1)
        ll += full[..., t : t + 1] - full[..., end]
        flat = ll.reshape(-1, t)
        logs[:, li] = logsumexp(flat, axis=0) - np.log(flat.shape[0])
    logs[0] = -np.inf  # an onset needs a checkpoint before it
    per_onset = logsumexp(logs, axis=1) - np.log(len(RAMPS))  # (t,), tau = 0 stays -inf
    log_rise = logsumexp(per_onset[1:]) - np.log(t - 1)
    prior = np.log([1 - PRIOR_RISE, PRIOR_RISE])
    evidence = logsumexp([log_null + prior[0], log_rise + prior[1]])
    p_rise = float(np.exp(log_rise + prior[1] - evidence))
    onset = np.exp(per_onset - logsumexp(per_onset))
    return OnsetPosterior(t, p_rise, onset)
