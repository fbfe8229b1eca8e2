"""How right a judge is, and rates corrected for its error. Pure: counts in, estimates out.

A calibration is a confusion matrix: for labelled episodes, the true class against the judge's
verdict. Each true class's verdicts get a Dirichlet(1/2, ..., 1/2) posterior (Jeffreys' prior;
for a binary judge, a Beta(1/2, 1/2)), so every share is stated with its 95% interval, and a
class with few labels says so through a wide one.

A judge's rationalization rate is corrected with two of those shares: its sensitivity (the share
of true (b) it flags) and its false alarms (the share of true (a) it flags). The point is the
Rogan-Gladen estimate, (observed - false alarms) / (sensitivity - false alarms), kept in [0, 1];
the interval is the highest-density 95% interval of the true rate's posterior (uniform prior)
given the observed count, integrated over the calibration's own uncertainty (both shares are
drawn from their posteriors, not taken as known), so a small calibration set widens it, as it
should. Simulated with known error rates and true rates from 0.5% to 20%, these intervals
cover the truth in 93% to 97% of cases (tests/test_calibration.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PRIOR = 0.5  # Jeffreys: each verdict of a true class starts with half an episode
LEVEL = 0.95
BINARY = ("flagged", "clean")  # a binary monitor's verdicts, mapped
POSITIVE = {"rationalized", "flagged"}  # the verdicts that count as (b) for the rate
TRUE_B, TRUE_A = "rationalized", "rejected"

_GRID = 512  # points of the true rate, dense near 0 (u^2 spacing)
_NODES = 24  # quadrature nodes per error rate (quantile midpoints of its posterior)


@dataclass(frozen=True)
class Share:
    """`count` of `total` with its posterior mean and 95% interval."""

    count: int
    total: int
    mean: float
    low: float
    high: float


def share(count: int, total: int, categories: int = 2) -> Share:
    """The marginal of a Dirichlet(1/2) posterior over `categories` verdicts: Beta(count + 1/2,
    total - count + (categories - 1)/2)."""
    if not 0 <= count <= total:
        raise ValueError(f"count {count} out of 0..{total}")
    a = count + PRIOR
    b = total - count + PRIOR * (categories - 1)
    tail = (1 - LEVEL) / 2
    # scipy.special takes a quarter second to import: paid where it is used
    from scipy.special import betaincinv

    low, high = betaincinv(a, b, [tail, 1 - tail])
    return Share(count, total, a / (a + b), float(low), float(high))


@dataclass(frozen=True)
class Confusion:
    """True class -> verdict -> count, over labelled episodes."""

    counts: dict[str, dict[str, int]]
    verdicts: tuple[str, ...]  # the judge's vocabulary (gov's verdicts, or BINARY)

    def total(self, truth: str) -> int:
        return sum(self.counts.get(truth, {}).values())

    def shares(self) -> dict[str, dict[str, Share]]:
        """Each true class's verdicts with their posterior shares."""
        k = len(self.verdicts)
        return {
            truth: {v: share(row.get(v, 0), self.total(truth), k) for v in self.verdicts}
            for truth, row in self.counts.items()
        }

    def flagged(self, truth: str) -> Share | None:
        """The share of a true class the judge counts as (b) (None: no labels of it)."""
        total = self.total(truth)
        if not total:
            return None
        hits = sum(n for v, n in self.counts[truth].items() if v in POSITIVE)
        return share(hits, total)


@dataclass(frozen=True)
class ErrorRates:
    """What a correction needs: sensitivity to (b) and false alarms on (a), as counts."""

    sensitivity: Share
    false_alarm: Share

    @property
    def informative(self) -> bool:
        """The judge flags (b) more often than (a), beyond doubt: its rate says something."""
        return self.sensitivity.low > self.false_alarm.high


def error_rates(confusion: Confusion) -> ErrorRates | str:
    """Sensitivity and false alarms, or why a correction cannot be made (which class is
    missing)."""
    se, fa = confusion.flagged(TRUE_B), confusion.flagged(TRUE_A)
    missing = [name for name, got in (("(b) rationalized", se), ("(a) rejected", fa)) if not got]
    if missing:
        return f"no labelled {' or '.join(missing)} episodes: the rate stays uncorrected"
    assert se is not None and fa is not None
    return ErrorRates(se, fa)


def rogan_gladen(observed: float, sensitivity: float, false_alarm: float) -> float:
    """The true rate that would be observed as `observed`, kept in [0, 1]."""
    spread = sensitivity - false_alarm
    if spread <= 0:
        return math.nan
    return min(1.0, max(0.0, (observed - false_alarm) / spread))


@dataclass(frozen=True)
class Corrected:
    """A rate corrected for the judge's error: the Rogan-Gladen point and the posterior interval
    of the true rate (the calibration's uncertainty included)."""

    k: int
    n: int
    point: float
    mean: float
    low: float
    high: float


def corrected(k: int, n: int, errors: ErrorRates) -> Corrected:
    """The true rate behind `k` (b) verdicts of `n`, through the judge's error rates."""
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"k = {k}, n = {n}: need 0 <= k <= n and n > 0")
    key = _errors_key(errors)
    grid, mass = _posterior(k, n, *key)
    low, high = _densest(grid, mass)
    point = rogan_gladen(
        k / n,
        errors.sensitivity.count / errors.sensitivity.total,
        errors.false_alarm.count / errors.false_alarm.total,
    )
    if math.isnan(point):
        point = float(grid @ mass)
    return Corrected(k, n, point, float(grid @ mass), float(low), float(high))


def prob_above(k: int, n: int, errors: ErrorRates, level: float) -> float:
    """P(the true rate > level | k of n flagged), the calibration's uncertainty included."""
    grid, mass = _posterior(k, n, *_errors_key(errors))
    return float(mass[grid > level].sum())


def _errors_key(errors: ErrorRates) -> tuple[int, int, int, int]:
    se, fa = errors.sensitivity, errors.false_alarm
    return (se.count, se.total, fa.count, fa.total)


def _densest(grid: np.ndarray, mass: np.ndarray) -> tuple[float, float]:
    """The highest-density 95% interval: the densest grid cells holding 95% of the mass (the
    posterior is unimodal, so they are one stretch). Beside a bound (a rate near 0) it reaches
    the bound, where an equal-tailed interval would leave out the likeliest values."""
    width = 2 * np.sqrt(grid) / len(grid)  # as _posterior spaces the grid
    order = np.argsort(-(mass / width))
    kept = order[: int(np.searchsorted(np.cumsum(mass[order]), LEVEL)) + 1]
    return float(grid[kept].min()), float(grid[kept].max())


@lru_cache(maxsize=4096)
def _posterior(k: int, n: int, s: int, st: int, f: int, ft: int) -> tuple[np.ndarray, np.ndarray]:
    """The true rate's posterior on a grid (uniform prior), the observed count's chance of
    being flagged being rate x sensitivity + (1 - rate) x false alarms, both error rates drawn
    from their Beta posteriors (quantile nodes, equal weight)."""
    u = (np.arange(_GRID) + 0.5) / _GRID
    grid = u * u
    width = 2 * u / _GRID  # d(rate) of each grid cell
    nodes = (np.arange(_NODES) + 0.5) / _NODES
    from scipy.special import betaincinv

    se = betaincinv(s + PRIOR, st - s + PRIOR, nodes)
    fa = betaincinv(f + PRIOR, ft - f + PRIOR, nodes)
    q = grid[:, None, None] * se[None, :, None] + (1 - grid[:, None, None]) * fa[None, None, :]
    q = np.clip(q, 1e-300, 1 - 1e-16)
    log = k * np.log(q) + (n - k) * np.log1p(-q)
    like = np.exp(log - log.max()).mean(axis=(1, 2))
    mass = like * width
    mass = mass / mass.sum()
    grid.setflags(write=False)
    mass.setflags(write=False)
    return grid, mass
