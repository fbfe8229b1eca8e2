"""Posteriors of a rate under a Jeffreys prior, Beta(k + 1/2, n - k + 1/2): the chance that it
is above a level, and that it rose by a factor over a baseline's own uncertain rate."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PRIOR = 0.5  # Jeffreys: Beta(k + 1/2, n - k + 1/2)
GRID = 400  # quantiles of the baseline posterior integrated over for a rise
TAIL = 1e-3


@lru_cache(maxsize=1 << 20)
def prob_above(k: int, n: int, level: float) -> float:
    """P(rate > level) for k successes in n, under the Jeffreys Beta posterior."""
    # scipy.special takes a quarter second to import: paid where it is used
    from scipy.special import betainc

    return float(1.0 - betainc(k + PRIOR, n - k + PRIOR, level))


@lru_cache(maxsize=1 << 20)
def prob_rise(k: int, n: int, k0: int, n0: int, factor: float) -> float:
    """P(rate > factor x baseline rate), both under independent Jeffreys Beta posteriors.

    Integrates over GRID equal-probability quantiles of the baseline's posterior."""
    from scipy.special import betainc

    threshold = np.minimum(1.0, factor * _baseline_quantiles(k0, n0))
    return float(np.mean(1.0 - betainc(k + PRIOR, n - k + PRIOR, threshold)))


def rise_bound(k: int, n: int, k0: int, n0: int, factor: float) -> float:
    """A cheap upper bound of prob_rise: P(rate > factor x the baseline's 0.1% quantile) + 0.001.

    (P(X > fY) <= P(X > f y_q) + q for the q-quantile y_q of Y.) Used to skip the exact
    integral where the answer is clearly below a confidence level."""
    low = float(_baseline_quantiles(k0, n0, tail=True)[0])
    return prob_above(k, n, min(1.0, factor * low)) + TAIL


@lru_cache(maxsize=1 << 16)
def _baseline_quantiles(k0: int, n0: int, tail: bool = False) -> np.ndarray:
    from scipy.special import betaincinv

    u = np.array([TAIL]) if tail else (np.arange(GRID) + 0.5) / GRID
    return np.asarray(betaincinv(k0 + PRIOR, n0 - k0 + PRIOR, u))
