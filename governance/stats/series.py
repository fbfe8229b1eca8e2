"""Series: one metric over a run's checkpoints, for one environment version and one judge version.

The only place series are built from count rows. Judge versions are never pooled; environment
versions are pooled only when asked for the whole run (scope `run`), never across judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..metrics import COUNT_COLUMNS, METRICS, CountRow
from ..policies import Policy
from .intervals import wilson


@dataclass(frozen=True)
class Point:
    """One checkpoint of a series: the metric's numerator and denominator there."""

    run: str
    step: int
    k: int
    n: int
    status: str = "registered"

    @property
    def ref(self) -> str:
        return f"{self.run}@{self.step}"

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @cached_property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Wilson interval; None without evidence (n = 0)."""
        return wilson(self.k, self.n) if self.n else None

    @property
    def low(self) -> float | None:
        return None if self.interval is None else self.interval[0]

    @property
    def high(self) -> float | None:
        return None if self.interval is None else self.interval[1]


@dataclass(frozen=True, order=True)
class SeriesKey:
    environment: str | None  # None: the whole run
    environment_version: int | None
    judge: str
    judge_version: str

    @property
    def label(self) -> str:
        where = f"{self.environment} v{self.environment_version}" if self.environment else "run"
        return f"{where} · {self.judge} {self.judge_version}"


@dataclass
class Series:
    """One metric over checkpoints for one series key."""

    metric: str
    key: SeriesKey
    points: list[Point] = field(default_factory=list)

    @property
    def environment(self) -> str:
        return self.key.environment or "run"

    @property
    def environment_version(self) -> int | None:
        return self.key.environment_version

    @property
    def judge(self) -> str:
        return self.key.judge

    @property
    def judge_version(self) -> str:
        return self.key.judge_version


# (run, step, status) of each checkpoint a series may hold, in order
Order = Sequence[tuple[str, int, str]]


def build(
    rows: Iterable[CountRow],
    metric: str,
    order: Order | None = None,
    *,
    scope: str = "environment",
    environment: str | None = None,
    environment_version: int | None = None,
    judge: str | None = None,
    judge_version: str | None = None,
    fill: bool = False,
) -> dict[SeriesKey, list[Point]]:
    """The metric's series from count rows, in checkpoint order.

    `order`: the checkpoints to keep (a run's lineage), oldest first; without it, every row's
    checkpoint, by run and step. `scope="run"` adds environments up (judge versions never).
    `fill`: every checkpoint of `order` keeps its place, as n = 0 where nothing was judged (the
    onset analysis counts positions). The other arguments filter on the series key."""
    definition = METRICS[metric]
    selected = [
        r
        for r in rows
        if (environment is None or r.environment == environment)
        and (environment_version is None or r.environment_version == environment_version)
        and (judge is None or r.judge == judge)
        and (judge_version is None or r.judge_version == judge_version)
    ]
    if order is None:
        order = sorted({(r.run, r.step, "registered") for r in selected})
    position = {(r, s): (i, status) for i, (r, s, status) in enumerate(order)}
    found: dict[SeriesKey, dict[tuple[str, int], list[int]]] = {}
    for row in selected:
        where = (row.run, row.step)
        if where not in position:
            continue
        if scope == "environment":
            key = SeriesKey(row.environment, row.environment_version, row.judge, row.judge_version)
        else:
            key = SeriesKey(None, None, row.judge, row.judge_version)
        tally = found.setdefault(key, {}).setdefault(where, [0, 0])
        tally[0] += definition.numerator(row)
        tally[1] += definition.denominator(row)
    series: dict[SeriesKey, list[Point]] = {}
    for key, by_point in found.items():
        if fill:
            empty = [0, 0]
            series[key] = [
                Point(r, s, by_point.get((r, s), empty)[0], by_point.get((r, s), empty)[1], status)
                for r, s, status in order
            ]
        else:
            ordered = sorted(by_point.items(), key=lambda item: position[item[0]][0])
            series[key] = [Point(r, s, kn[0], kn[1], position[(r, s)][1]) for (r, s), kn in ordered]
    return series


def for_policy(
    policy: Policy, rows: Iterable[CountRow], order: Order
) -> dict[SeriesKey, list[Point]]:
    """The policy's series: its metric, scope and judge, over the checkpoints of `order`.

    An onset condition reads positions (a checkpoint nobody judged keeps its place, as n = 0,
    exactly as the restore point reads them), from the series' first judged checkpoint on; the
    other conditions read the judged checkpoints only."""
    judge = None if policy.judge == "any" else policy.judge
    onset = policy.condition.onset is not None
    found = build(rows, policy.metric, order, scope=policy.scope, judge=judge, fill=onset)
    return (
        {key: points[first_judged(points) :] for key, points in found.items()} if onset else found
    )


def first_judged(points: Sequence[Point]) -> int:
    """The position of the first point with judgments (the length: none has any). Before it
    the series did not exist yet (an environment added later): no evidence of a steady rate."""
    return next((i for i, p in enumerate(points) if p.n), len(points))


def many(
    rows: Sequence[CountRow],
    metrics: Sequence[str],
    order: Order | None = None,
    *,
    environment: str | None = None,
    judge: str | None = None,
) -> list[Series]:
    """Several metrics' series, sorted by metric and key (what `gov metrics` shows)."""
    found: list[Series] = []
    for metric in metrics:
        built = build(rows, metric, order, environment=environment, judge=judge)
        found += [Series(metric, key, points) for key, points in built.items()]
    return sorted(found, key=lambda s: (s.metric, _sort_key(s.key)))


def _sort_key(key: SeriesKey) -> tuple[str, int, str, str]:
    return (key.environment or "", key.environment_version or 0, key.judge, key.judge_version)


__all__ = [
    "COUNT_COLUMNS",
    "Order",
    "Point",
    "Series",
    "SeriesKey",
    "build",
    "first_judged",
    "for_policy",
    "many",
]
