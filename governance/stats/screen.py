"""A cheap screen for the onset condition, every prefix of a series at once.

For each prefix, the Bayes factor of "one rate before a split, another, higher, from it on"
against "one rate throughout", on a conjugate model (each rate with a Jeffreys Beta(1/2, 1/2)
prior, plain binomial counts), the split uniform over the prefix's positions and no later than
its last judged checkpoint but one (the onset condition asks for a rise covering the last two
judged checkpoints). Splits are tried at each of the eight positions before that checkpoint and
after the first, then about 20% apart towards the middle, each standing for the positions
nearest it: a prefix costs a few dozen sums whatever the length of the run, and cumulative sums
give every prefix at once.

It is a screen, not the test: the onset posterior (`onset.py`), which also weighs ramps, the
wobble between checkpoints and outliers, runs only where this Bayes factor is large enough that
the posterior could reach a policy's level (`evaluate.SCREEN_ODDS`, measured, with a margin).
It counts each checkpoint as the posterior does (`onset.capped`): a large checkpoint's raw
weight would otherwise hide from it a rise the posterior sees.
"""

from __future__ import annotations

import numpy as np

from .onset import MOST_EVENTS, capped

_NEAR = 8  # splits at each of this many positions before the last judged checkpoint but one
_STRETCH = 1.2  # then this far apart


# One fixed grid, so a prefix is screened alike alone and among all of a series' prefixes.
_OFFSETS = np.unique(
    np.concatenate([np.arange(_NEAR), np.round(_NEAR * _STRETCH ** np.arange(160)).astype(int)])
)
_HALFWAY = np.append((_OFFSETS[1:] + _OFFSETS[:-1] + 1) // 2, _OFFSETS[-1] + 1)


def _marginal(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log P(k in n) with a Jeffreys Beta(1/2, 1/2) prior on the rate (0 where n = 0)."""
    # scipy.special takes a quarter second to import: paid where it is used
    from scipy.special import betaln

    return np.asarray(betaln(k + 0.5, n - k + 0.5) - betaln(0.5, 0.5))


def _widths(halfway: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """How many of `limit` consecutive splits each tried one stands for."""
    upper = np.minimum(halfway, limit)
    return np.diff(np.concatenate([np.zeros_like(limit), upper], axis=1), axis=1)


MIN_RATIO = 1.5  # the onset model's smallest rise


def _at_least(kb: np.ndarray, nb: np.ndarray, ka: np.ndarray, na: np.ndarray) -> np.ndarray:
    """log P(the rate after the split is at least MIN_RATIO times the rate before), both rates'
    posteriors taken as log-normal (the onset model counts no smaller rise as a rise)."""
    from scipy.special import log_ndtr

    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = (ka + 0.5) / (na + 1), (kb + 0.5) / (nb + 1)
        spread = np.sqrt((1 - pa) / (ka + 0.5) + (1 - pb) / (kb + 0.5))
        mean = np.log(pa) - np.log(pb)
        return np.asarray(log_ndtr((mean - np.log(MIN_RATIO)) / spread))


def rise_odds(
    k: np.ndarray | list[int], n: np.ndarray | list[int], *, last: bool = False
) -> np.ndarray:
    """For every prefix (positions 0..t), the log Bayes factor of a rise at a split no later
    than its last judged checkpoint but one, against no rise; -inf where no split shows a higher
    rate after than before, or fewer than three checkpoints are judged. `last`: the last
    prefix's only (an array of one).

    Past the last judged checkpoint nothing but the prefix's length changes: the splits and
    their counts are the same, and only the uniform prior over the split's place spreads
    thinner. Those prefixes are the last judged one's, less that (exactly), so a series that
    ends in a long unjudged stretch (an environment version superseded early in a long run)
    costs what its judged part costs."""
    ks, ns = capped(k, n, MOST_EVENTS)  # as the onset posterior counts them
    t = len(ks)
    if t == 0:
        return np.zeros(0)
    judged = np.flatnonzero(ns > 0)
    if len(judged) < 3:  # too few judged checkpoints in every prefix
        return np.full(1 if last else t, -np.inf)
    stop = int(judged[-1]) + 1
    if stop < t:  # an unjudged tail: the judged part, then its last prefix spread thinner
        head = _odds(ks[:stop], ns[:stop], last)
        ends = np.arange(stop + 1, t + 1)[-1:] if last else np.arange(stop + 1, t + 1)
        tail = head[-1] + np.log(max(stop - 1, 1)) - np.log(np.maximum(ends - 1, 1))
        return np.asarray(tail if last else np.concatenate([head, tail]))
    return _odds(ks, ns, last)


def _odds(ks: np.ndarray, ns: np.ndarray, last: bool) -> np.ndarray:
    """rise_odds of a series, every prefix computed whole."""
    t = len(ks)
    cum_k = np.concatenate([[0.0], np.cumsum(ks)])
    cum_n = np.concatenate([[0.0], np.cumsum(ns)])
    judged = np.flatnonzero(ns > 0)
    count = np.cumsum(ns > 0)  # judged checkpoints in each prefix
    ends = np.arange(1, t + 1)  # prefix i holds the positions before ends[i]
    if last:
        count, ends = count[-1:], ends[-1:]
    enough = count >= 3
    second = np.where(enough, judged[np.maximum(count - 2, 0)], 0)  # last judged but one
    used = int(np.searchsorted(_OFFSETS, t)) + 1
    offsets = _OFFSETS[:used][None, :]
    # Splits 1 .. second are possible: the later half is tried back from `second`, the earlier
    # half on from the first, each tried split standing for the untried ones halfway to its
    # neighbours (so an early onset is placed as finely as a recent one).
    late = (second - second // 2)[:, None]  # how many splits the later half holds
    early = (second // 2)[:, None]
    halfway = _HALFWAY[:used][None, :]
    widths = [_widths(halfway, late), _widths(halfway, early)]
    split = np.concatenate([second[:, None] - offsets, 1 + offsets + 0 * early], axis=1)
    width = np.concatenate(widths, axis=1)
    valid = enough[:, None] & (width > 0)
    split = np.where(valid, split, 1)
    kb, nb = cum_k[split], cum_n[split]
    ka, na = cum_k[ends][:, None] - kb, cum_n[ends][:, None] - nb
    both = _marginal(cum_k[ends], cum_n[ends])[:, None]
    log_bf = _marginal(kb, nb) + _marginal(ka, na) - both + _at_least(kb, nb, ka, na)
    rising = valid & (nb > 0) & (na > 0) & (ka * nb > kb * na)
    weighted = np.where(rising, log_bf + np.log(np.maximum(width, 1)), -np.inf)
    top = weighted.max(axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.exp(weighted - safe[:, None]).sum(axis=1)) + safe
    return np.asarray(total - np.log(np.maximum(ends - 1, 1)))
