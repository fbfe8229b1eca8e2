"""The restore point from the counts alone: on each series that raised an alarm (a metric, an
environment version, a judge version), the onset posterior along the lineage; the restore point
is the latest checkpoint whose chance of being at or after the onset is at most alpha on every
one of them, so the earliest series' restore wins.

Pure: `gov rollback recommend` adds what only the registry knows (quarantine, whether the
artifact can still be had); `gov backtest` names the same point at the moment of each alarm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics import CountRow
from .evaluate import placed_posterior
from .onset import DEFAULT_PRIOR, OnsetPosterior, OnsetPrior, OnsetReading
from .series import Order, SeriesKey, Table, build, columns, first_judged


@dataclass(frozen=True)
class Target:
    """A series to place the onset on; None matches any version (and any judge)."""

    environment: str
    environment_version: int | None
    judge: str | None
    judge_version: str | None
    metric: str


@dataclass(frozen=True)
class Placed:
    """One series' onset posterior, from its first judged checkpoint (`offset` in the order)."""

    metric: str
    key: SeriesKey  # environment None: the run-wide model over every environment
    posterior: OnsetReading
    offset: int

    def restore(self, alpha: float) -> int:
        """The latest safe position in the order by this series alone (-1: none)."""
        index = self.posterior.restore_index(alpha)
        return -1 if index < 0 else self.offset + index

    def p_contaminated(self, position: int) -> float:
        return self.posterior.p_onset_by(position - self.offset)

    def known_clean(self, position: int) -> bool:
        """Whether this series measures, rather than assumes, that `position` is before the
        onset (a position before the series began is no evidence against it either)."""
        return position < self.offset or OnsetPosterior.known_clean(position - self.offset)

    def ref(self, order: Order, index: int) -> str:
        run, step, _ = order[min(self.offset + index, len(order) - 1)]
        return f"{run}@{step}"


# How the posteriors are computed: job(i) for each index, returned by index (one after the other
# by default; the caller may spread them over processes, as `gov rollback recommend` does).
Each = Callable[[Callable[[int], OnsetPosterior], Sequence[int]], dict[int, OnsetPosterior]]


def place(
    rows: Iterable[CountRow] | Table,
    order: Order,
    targets: Sequence[Target],
    prior: OnsetPrior = DEFAULT_PRIOR,
) -> list[Placed]:
    """The onset posterior of every series the targets name (empty where none has judgments)."""
    every = {
        (p.metric, p.key): p for found in place_each(rows, order, targets, prior) for p in found
    }
    return sorted(every.values(), key=lambda p: (p.key, p.metric))


def place_each(
    rows: Iterable[CountRow] | Table,
    order: Order,
    targets: Sequence[Target],
    prior: OnsetPrior = DEFAULT_PRIOR,
    each: Each | None = None,
) -> list[list[Placed]]:
    """For each target, in order, the onset posterior of every series it names (empty where
    none has judgments); a series two targets name is computed once."""
    table = rows if isinstance(rows, Table) else Table.of(rows)
    found: dict[tuple[str, SeriesKey], tuple[int, np.ndarray, np.ndarray]] = {}
    named: list[list[tuple[str, SeriesKey]]] = []
    for target in targets:
        series = build(
            table,
            target.metric,
            order,
            environment=target.environment,
            environment_version=target.environment_version,
            judge=target.judge,
            judge_version=target.judge_version,
            fill=True,
        )
        mine = []
        for key, points in series.items():
            first = first_judged(points)
            if first == len(points):
                continue
            mine.append((target.metric, key))
            if (target.metric, key) not in found:
                found[(target.metric, key)] = (first, *columns(points[first:]))
        named.append(mine)
    jobs = list(found)
    posteriors = (each or _one_by_one)(
        lambda i: placed_posterior(found[jobs[i]][1], found[jobs[i]][2], prior), range(len(jobs))
    )
    placed = {
        (metric, key): Placed(metric, key, posteriors[i], found[(metric, key)][0])
        for i, (metric, key) in enumerate(jobs)
    }
    return [sorted((placed[n] for n in mine), key=lambda p: (p.key, p.metric)) for mine in named]


def _one_by_one(
    job: Callable[[int], OnsetPosterior], indexes: Sequence[int]
) -> dict[int, OnsetPosterior]:
    return {i: job(i) for i in indexes}


@dataclass(frozen=True)
class RestorePoint:
    index: int | None  # position in the order; None: no usable checkpoint is safe enough
    safe: int  # the latest position safe enough by the counts alone (-1: none)
    set_by: Placed  # the series whose restore was the earliest
    skipped: tuple[tuple[int, str], ...]  # safer positions passed over, and why
    known_clean: bool  # False: the restore is its series' first judged checkpoint, assumed clean


def restore_point(
    placed: Sequence[Placed],
    alpha: float,
    unusable: Callable[[int], str | None] = lambda _: None,
) -> RestorePoint:
    """The latest position safe on every series and usable (`unusable` says why not)."""
    if not placed:
        raise ValueError("no series to place a restore point on")
    earliest = min(placed, key=lambda p: (p.restore(alpha), p.key, p.metric))
    safe = earliest.restore(alpha)
    skipped: list[tuple[int, str]] = []
    for index in range(safe, -1, -1):
        why = unusable(index)
        if why is None:
            clean = all(p.known_clean(index) for p in placed)
            return RestorePoint(index, safe, earliest, tuple(skipped), clean)
        skipped.append((index, why))
    return RestorePoint(None, safe, earliest, tuple(skipped), False)
