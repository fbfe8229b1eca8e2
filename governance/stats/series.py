"""Series: one metric over a run's checkpoints, for one environment version and one judge version.

The only place series are built from count rows. Judge versions are never pooled; environment
versions are pooled only when asked for the whole run (scope `run`), never across judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, overload

from ..metrics import COUNT_COLUMNS, METRICS, CountRow
from ..policies import Policy
from .intervals import wilson

if TYPE_CHECKING:  # numpy is loaded when a series is built, not when the CLI starts
    import numpy as np

    from .calibration import Corrected


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
    points: Sequence[Point] = field(default_factory=list)
    # episodes its judge gave no verdict, by RUN@STEP (gov judge run says so): not in n
    unjudged: dict[str, int] = field(default_factory=dict)
    # with --corrected: the rate corrected for the judge's error by RUN@STEP, and how (or why not)
    corrected: dict[str, Corrected] = field(default_factory=dict)
    correction: str | None = None

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


class Points(Sequence[Point]):
    """A series' points as columns: each point's position in `order`, and its k and n. Reads as
    a sequence of Point (made on demand); a slice is a Points again. A long run's series are
    built and screened without making a Python object per checkpoint."""

    __slots__ = ("ks", "note", "ns", "order", "positions")

    def __init__(
        self,
        order: Order,
        positions: np.ndarray,
        ks: np.ndarray,
        ns: np.ndarray,
        note: str | None = None,
    ):
        self.order = order
        self.positions = positions
        self.ks = ks
        self.ns = ns
        self.note = note  # how the series was made, where a reader must know (a judge bridge)

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> Points: ...

    def __getitem__(self, index: int | slice) -> Point | Points:
        if isinstance(index, slice):
            return Points(
                self.order, self.positions[index], self.ks[index], self.ns[index], self.note
            )
        run, step, status = self.order[int(self.positions[index])]
        return Point(run, step, int(self.ks[index]), int(self.ns[index]), status)

    def __repr__(self) -> str:
        return f"Points({list(self)!r})"

    def seen(self) -> list[tuple[str, int, int]]:
        """(RUN@STEP, k, n) of every point, as a decision records what it read: made from the
        columns at once, not a Point at a time (a fired series of 2,000 checkpoints)."""
        refs = [f"{run}@{step}" for run, step, _ in self.order]
        return [
            (refs[p], k, n)
            for p, k, n in zip(
                self.positions.tolist(), self.ks.tolist(), self.ns.tolist(), strict=True
            )
        ]


@dataclass
class Table:
    """Count rows as columns, read once and shared by every series built from them."""

    keys: list[tuple[str, int, str, str]]  # (environment, version, judge, judge version)
    checkpoint: np.ndarray  # per row: its index in `checkpoints`
    key: np.ndarray  # per row: its index in `keys`
    checkpoints: list[tuple[str, int]]
    columns: dict[str, np.ndarray]  # each count column

    @classmethod
    def of(cls, rows: Iterable[CountRow]) -> Table:
        import numpy as np

        rows = list(rows)
        checkpoints: dict[tuple[str, int], int] = {}
        keys: dict[tuple[str, int, str, str], int] = {}
        where = [checkpoints.setdefault((r.run, r.step), len(checkpoints)) for r in rows]
        which = [
            keys.setdefault(
                (r.environment, r.environment_version, r.judge, r.judge_version), len(keys)
            )
            for r in rows
        ]
        columns = {
            name: np.fromiter((getattr(r, name) for r in rows), dtype=np.int64, count=len(rows))
            for name in COUNT_COLUMNS
        }
        return cls(
            list(keys),
            np.asarray(where, dtype=np.int64),
            np.asarray(which, dtype=np.int64),
            list(checkpoints),
            columns,
        )


_DENSE_CELLS = 1 << 24  # series x positions up to which they are counted in a dense array


def build(
    rows: Iterable[CountRow] | Table,
    metric: str,
    order: Order | None = None,
    *,
    scope: str = "environment",
    environment: str | None = None,
    environment_version: int | None = None,
    judge: str | None = None,
    judge_version: str | None = None,
    fill: bool = False,
) -> dict[SeriesKey, Points]:
    """The metric's series from count rows, in checkpoint order.

    `order`: the checkpoints to keep (a run's lineage), oldest first; without it, every row's
    checkpoint, by run and step. `scope="run"` adds environments up (judge versions never).
    `fill`: every checkpoint of `order` keeps its place, as n = 0 where nothing was judged (the
    onset analysis counts positions). The other arguments filter on the series key."""
    import numpy as np

    table = rows if isinstance(rows, Table) else Table.of(rows)
    definition = METRICS[metric]
    filters = (environment, environment_version, judge, judge_version)
    group = _grouping(table, order, scope, filters)
    length = len(group.order)
    columns = SimpleNamespace(**{name: c[group.keep] for name, c in table.columns.items()})
    numerator = np.asarray(definition.numerator(columns), dtype=np.int64)
    denominator = np.asarray(definition.denominator(columns), dtype=np.int64)
    size = len(group.cells)
    k = np.bincount(group.inverse, weights=numerator, minlength=size).astype(np.int64)
    n = np.bincount(group.inverse, weights=denominator, minlength=size).astype(np.int64)
    series: dict[SeriesKey, Points] = {}
    for key, part in group.parts:
        positions = group.cells[part] % length
        if fill:
            ks, ns = np.zeros(length, dtype=np.int64), np.zeros(length, dtype=np.int64)
            ks[positions], ns[positions] = k[part], n[part]
            series[key] = Points(group.order, np.arange(length), ks, ns)
        else:
            series[key] = Points(group.order, positions, k[part], n[part])
    return series


@dataclass
class _Grouping:
    """Which rows of a table a series reads, and which cell (series, position) each goes to: the
    same for every metric over the same checkpoints and filters, so a check's policies share it."""

    order: Order
    keep: np.ndarray  # rows read
    cells: np.ndarray  # the distinct cells, series x length + position, ascending
    inverse: np.ndarray  # each kept row's cell (an index into cells)
    parts: list[tuple[SeriesKey, np.ndarray]]  # each series' cells (indices into cells)


# The last groupings made, by the table and order objects they were made from (held here, so
# that their ids are not reused) and the filters.
_GROUPINGS: dict[tuple[object, ...], tuple[Table, Order | None, _Grouping]] = {}


def _grouping(
    table: Table,
    order: Order | None,
    scope: str,
    filters: tuple[str | None, int | None, str | None, str | None],
) -> _Grouping:
    import numpy as np

    cache = (id(table), id(order), len(order) if order is not None else -1, scope, *filters)
    found = _GROUPINGS.get(cache)
    if found is not None and found[0] is table and found[1] is order:
        return found[2]
    environment, environment_version, judge, judge_version = filters
    wanted = np.array(
        [
            (environment is None or e == environment)
            and (environment_version is None or v == environment_version)
            and (judge is None or j == judge)
            and (judge_version is None or jv == judge_version)
            for e, v, j, jv in table.keys
        ],
        dtype=bool,
    )
    selected = wanted[table.key] if len(table.key) else np.zeros(0, dtype=bool)
    placed_order: Order
    if order is None:
        used = np.unique(table.checkpoint[selected])
        placed_order = sorted((*table.checkpoints[i], "registered") for i in used)
    else:
        placed_order = order
    position = {(r, s): i for i, (r, s, _) in enumerate(placed_order)}
    placed = np.array([position.get(c, -1) for c in table.checkpoints] or [-1], dtype=np.int64)
    at = placed[table.checkpoint] if len(table.checkpoint) else np.zeros(0, dtype=np.int64)
    keep = selected & (at >= 0)
    if scope == "environment":
        names = [SeriesKey(*key) for key in table.keys]
        code = table.key[keep]
    else:
        pooled: dict[tuple[str, str], int] = {}
        per_key = [pooled.setdefault((j, jv), len(pooled)) for _, _, j, jv in table.keys]
        names = [SeriesKey(None, None, j, jv) for j, jv in pooled]
        code = np.asarray(per_key, dtype=np.int64)[table.key[keep]]
    length = len(placed_order)
    index = code * length + at[keep]  # one cell per series and position
    span = len(names) * length
    if span <= _DENSE_CELLS:  # found in place, without sorting every row
        present = np.bincount(index, minlength=span) > 0
        cells = np.flatnonzero(present)
        slot = np.cumsum(present) - 1
        inverse = slot[index]
    else:
        cells, inverse = np.unique(index, return_inverse=True)
    bounds = np.flatnonzero(np.diff(cells // length)) + 1
    parts = [
        (names[int(cells[part[0]] // length)], part)
        for part in (np.split(np.arange(len(cells)), bounds) if len(cells) else [])
    ]
    group = _Grouping(placed_order, keep, cells, np.asarray(inverse).ravel(), parts)
    if len(_GROUPINGS) >= 8:
        _GROUPINGS.pop(next(iter(_GROUPINGS)))
    _GROUPINGS[cache] = (table, order, group)
    return group


def for_policy(
    policy: Policy, rows: Iterable[CountRow] | Table, order: Order
) -> dict[SeriesKey, Points]:
    """The policy's series: its metric, scope and judge, over the checkpoints of `order`.

    An onset condition reads positions (a checkpoint nobody judged keeps its place, as n = 0,
    exactly as the restore point reads them), from the series' first judged checkpoint on; the
    other conditions read the judged checkpoints only."""
    judge = None if policy.judge == "any" else policy.judge
    onset = policy.condition.onset is not None
    found = build(rows, policy.metric, order, scope=policy.scope, judge=judge, fill=onset)
    if policy.environments is not None:
        found = {k: v for k, v in found.items() if k.environment in policy.environments}
    if policy.judge_bridge is not None and onset:
        found = bridged(found, policy.judge_bridge.judge, *policy.judge_bridge.versions)
    return (
        {key: points[first_judged(points) :] for key, points in found.items()} if onset else found
    )


@dataclass(frozen=True)
class Matrix:
    """A run's environments side by side, for one metric and judge version: k and n per
    environment version (row) and position of `order` (column), n = 0 where a cell was not
    judged. What a run-wide policy reads: evidence pooled across environments, rates not."""

    order: Order
    environments: list[tuple[str, int]]  # (environment, version) of each row
    ks: np.ndarray  # (rows, positions)
    ns: np.ndarray
    offset: int = 0  # the position of its first column in the lineage's order

    def __len__(self) -> int:
        return int(self.ks.shape[1])

    def upto(self, index: int) -> Matrix:
        """The matrix seeing positions 0..index only."""
        return Matrix(
            self.order,
            self.environments,
            self.ks[:, : index + 1],
            self.ns[:, : index + 1],
            self.offset,
        )

    def label(self, row: int) -> str:
        environment, version = self.environments[row]
        return f"{environment} v{version}"


def matrices(
    policy: Policy, rows: Iterable[CountRow] | Table, order: Order
) -> dict[SeriesKey, Matrix]:
    """A run-wide policy's matrices, one per judge version (never pooled), over the checkpoints
    of `order` from the first judged by that version on: every environment version a row."""
    import numpy as np

    judge = None if policy.judge == "any" else policy.judge
    found = build(rows, policy.metric, order, judge=judge, fill=True)
    grouped: dict[SeriesKey, list[tuple[SeriesKey, Points]]] = {}
    for key, points in found.items():
        run_key = SeriesKey(None, None, key.judge, key.judge_version)
        grouped.setdefault(run_key, []).append((key, points))
    out: dict[SeriesKey, Matrix] = {}
    for run_key, members in grouped.items():
        members.sort(key=lambda m: (m[0].environment or "", m[0].environment_version or 0))
        ks = np.stack([points.ks for _, points in members])
        ns = np.stack([points.ns for _, points in members])
        judged = np.flatnonzero(ns.sum(axis=0))
        if not len(judged):
            continue
        first = int(judged[0])
        out[run_key] = Matrix(
            order[first:],
            [(key.environment or "", key.environment_version or 0) for key, _ in members],
            ks[:, first:],
            ns[:, first:],
            first,
        )
    return out


def bridged(
    found: dict[SeriesKey, Points], judge: str, old: str, new: str
) -> dict[SeriesKey, Points]:
    """Each environment version's series of judge version `new`, with the checkpoints before its
    first judged one taken from version `old`, scaled by the ratio of the two versions' rates on
    the checkpoints both judged (any environment), at its upper 95% bound: the earlier rates are
    raised (or the later ones' history kept as high as it could be), so the change itself never
    reads as a rise. Filled series only (every position of the order). Without such
    checkpoints, nothing is carried across and each series says so."""
    import numpy as np

    from .agreement import rate_ratio

    pairs = [
        (found[SeriesKey(k.environment, k.environment_version, judge, old)], points)
        for k, points in found.items()
        if k.judge == judge
        and k.judge_version == new
        and SeriesKey(k.environment, k.environment_version, judge, old) in found
    ]
    both = [(a.ns > 0) & (b.ns > 0) for a, b in pairs]
    k_old = sum(int(a.ks[m].sum()) for (a, _), m in zip(pairs, both, strict=True))
    n_old = sum(int(a.ns[m].sum()) for (a, _), m in zip(pairs, both, strict=True))
    k_new = sum(int(b.ks[m].sum()) for (_, b), m in zip(pairs, both, strict=True))
    n_new = sum(int(b.ns[m].sum()) for (_, b), m in zip(pairs, both, strict=True))
    out = dict(found)
    ratio = rate_ratio(k_old, n_old, k_new, n_new).high if n_old and n_new else float("nan")
    for key, points in found.items():
        if key.judge != judge or key.judge_version != new:
            continue
        if not np.isfinite(ratio):
            out[key] = Points(
                points.order,
                points.positions,
                points.ks,
                points.ns,
                f"judge_bridge {judge} {old} -> {new}: no checkpoint was judged by both "
                f"versions, so nothing is carried across: the series of version {new} stands "
                "alone",
            )
            continue
        earlier = found.get(SeriesKey(key.environment, key.environment_version, judge, old))
        judged = np.flatnonzero(points.ns)
        if earlier is None or not len(judged):
            continue
        before = np.arange(len(points.ns)) < judged[0]
        ks, ns = points.ks.copy(), points.ns.copy()
        if ratio >= 1:  # the earlier rate x ratio: fewer episodes for the same count
            ns[before] = np.maximum(earlier.ks[before], np.rint(earlier.ns[before] / ratio))
            ks[before] = earlier.ks[before]
        else:
            ns[before] = earlier.ns[before]
            ks[before] = np.rint(earlier.ks[before] * ratio)
        out[key] = Points(
            points.order,
            points.positions,
            ks,
            ns,
            f"carried across from {judge} version {old} by judge_bridge (its rates x{ratio:.2f}, "
            f"the upper 95% bound of the ratio on the {sum(int(m.sum()) for m in both)} "
            "checkpoint-environment cells both versions judged)",
        )
    return out


def peers(series: dict[SeriesKey, Points]) -> dict[SeriesKey, np.ndarray]:
    """For each series, at each of its points: how many environments the same judge version
    had judged by then (at least 1). An onset policy asks of each of them whether it rose: the
    more there are, the less any one rise is to be expected (`evaluate.prior_odds`)."""
    import numpy as np

    firsts: dict[tuple[str, str], dict[str, int]] = {}
    for key, points in series.items():
        judged = np.flatnonzero(points.ns)
        if len(judged):
            group = firsts.setdefault((key.judge, key.judge_version), {})
            env = key.environment or ""
            first = int(points.positions[judged[0]])
            group[env] = min(group.get(env, first), first)
    out = {}
    for key, points in series.items():
        known = np.sort(list(firsts.get((key.judge, key.judge_version), {}).values()))
        out[key] = np.maximum(1, np.searchsorted(known, points.positions, side="right"))
    return out


def first_judged(points: Sequence[Point]) -> int:
    """The position of the first point with judgments (the length: none has any). Before it
    the series did not exist yet (an environment added later): no evidence of a steady rate."""
    import numpy as np

    judged = np.flatnonzero(columns(points)[1])
    return int(judged[0]) if len(judged) else len(points)


def judged_at(series: dict[SeriesKey, Points], length: int) -> np.ndarray:
    """The denominator summed over every series at each of `length` positions of the order."""
    import numpy as np

    judged = np.zeros(length, dtype=np.int64)
    for points in series.values():
        judged[points.positions] += points.ns
    return judged


def columns(points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
    """The points' k and n as arrays (without a copy for Points)."""
    import numpy as np

    if isinstance(points, Points):
        return points.ks, points.ns
    return (
        np.array([p.k for p in points], dtype=np.int64),
        np.array([p.n for p in points], dtype=np.int64),
    )


def many(
    rows: Sequence[CountRow] | Table,
    metrics: Sequence[str],
    order: Order | None = None,
    *,
    environment: str | None = None,
    judge: str | None = None,
    lazy: bool = False,
) -> list[Series]:
    """Several metrics' series, sorted by metric and key (what `gov metrics` shows). `lazy`:
    each series' points stay columns (`Points`), made one by one only where they are read
    (a page that charts a few of 300 series of 2,000 checkpoints)."""
    found: list[Series] = []
    for metric in metrics:
        built = build(rows, metric, order, environment=environment, judge=judge)
        found += [
            Series(metric, key, points if lazy else list(points)) for key, points in built.items()
        ]
    return sorted(found, key=lambda s: (s.metric, _sort_key(s.key)))


def _sort_key(key: SeriesKey) -> tuple[str, int, str, str]:
    return (key.environment or "", key.environment_version or 0, key.judge, key.judge_version)


__all__ = [
    "COUNT_COLUMNS",
    "Matrix",
    "Order",
    "Point",
    "Points",
    "Series",
    "SeriesKey",
    "Table",
    "build",
    "columns",
    "first_judged",
    "for_policy",
    "judged_at",
    "many",
    "matrices",
    "peers",
]
