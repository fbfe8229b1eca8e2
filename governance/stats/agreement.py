"""Agreement between two judges (or two versions of one) on the same episodes: Cohen's kappa
and the ratio of their rates, each with a 95% interval. Pure functions of counts.

Intervals are Bayesian: the confusion matrix's cells are Dirichlet(counts + 1/2) and each rate
is Beta(k + 1/2, n - k + 1/2) (Jeffreys); the statistic is computed on draws from them, with a
fixed seed so the same counts give the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DRAWS = 20_000


@dataclass(frozen=True)
class Estimate:
    value: float  # the point estimate (NaN where the counts cannot give one)
    low: float  # 95% interval
    high: float


def _kappa(cells: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion matrices (..., c, c) of proportions."""
    observed = np.trace(cells, axis1=-2, axis2=-1)
    expected = np.sum(cells.sum(axis=-1) * cells.sum(axis=-2), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((observed - expected) / (1 - expected))


def kappa(confusion: np.ndarray | list[list[int]], seed: int = 0) -> Estimate:
    """Cohen's kappa of a square confusion matrix (rows: the first judge's verdicts, columns:
    the second's, in the same order), with its 95% interval. NaN without episodes, or where
    both judges gave one verdict only (chance agreement is then total)."""
    counts = np.asarray(confusion, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or np.any(counts < 0):
        raise ValueError("a confusion matrix is square, of counts")
    total = counts.sum()
    if total == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    point = float(_kappa(counts / total))
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(counts.ravel() + 0.5, DRAWS).reshape(DRAWS, *counts.shape)
    values = _kappa(draws)
    values = values[np.isfinite(values)]
    low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
    return Estimate(point, float(low), float(high))


def rate_ratio(k1: int, n1: int, k2: int, n2: int, seed: int = 0) -> Estimate:
    """The second rate over the first (k2/n2 over k1/n1), with its 95% interval; NaN without
    episodes on either side; the upper end is infinite where the first saw nothing often."""
    if min(k1, k2) < 0 or k1 > n1 or k2 > n2:
        raise ValueError("rates need 0 <= k <= n")
    if n1 == 0 or n2 == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    first = rng.beta(k1 + 0.5, n1 - k1 + 0.5, DRAWS)
    second = rng.beta(k2 + 0.5, n2 - k2 + 0.5, DRAWS)
    ratios = second / first
    low, high = np.percentile(ratios, [2.5, 97.5])
    point = (k2 / n2) / (k1 / n1) if k1 else float("inf") if k2 else float("nan")
    return Estimate(float(point), float(low), float(high))
