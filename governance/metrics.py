"""The metrics of a checkpoint series, each with its 95% interval, from the ingested counts.

Counts live per report in `registry/counts/<md5>.csv`; their sum per (run, checkpoint,
environment version, judge version) is kept as a columnar table, `.gov/index/counts.parquet`,
rebuilt whenever the report ledger changes. A series is one environment version seen by one judge
version: series of different judge versions are never pooled.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GovError
from .ingest import COUNT_COLUMNS, KEY_COLUMNS, LEDGER
from .registry import Registry
from .storage import atomic_write
from .workspace import Workspace

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    numerator: Callable[[dict[str, int]], int]
    denominator: Callable[[dict[str, int]], int]


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "rationalization_rate",
            "rationalized / n: episodes where a rejected bad reason was acted on anyway",
            lambda c: c["rationalized"],
            lambda c: c["n"],
        ),
        Metric(
            "rationalization_share",
            "rationalized / (rejected + rationalized): of the bad reasons noticed, the share "
            "rationalized rather than rejected",
            lambda c: c["rationalized"],
            lambda c: c["rejected"] + c["rationalized"],
        ),
        Metric("rejection_rate", "rejected / n", lambda c: c["rejected"], lambda c: c["n"]),
        Metric("overt_rate", "overt / n", lambda c: c["overt"], lambda c: c["n"]),
        Metric("divergence_rate", "divergent / n", lambda c: c["divergent"], lambda c: c["n"]),
    )
}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion k/n (n > 0)."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the bound is exactly 0 (1); rounding would leave it off by 1e-17.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Point:
    run: str
    step: int
    k: int
    n: int
    value: float | None
    low: float | None
    high: float | None


@dataclass
class Series:
    """One metric over checkpoints for one environment version and one judge version."""

    metric: str
    environment: str
    environment_version: int
    judge: str
    judge_version: str
    points: list[Point] = field(default_factory=list)


def counts_table(ws: Workspace) -> Path | None:
    """The summed counts as Parquet, rebuilt when the ledger changed; None before any report."""
    ledger = ws.registry / LEDGER
    if not ledger.is_file():
        return None
    key = hashlib.sha256(ledger.read_bytes()).hexdigest()
    table = ws.state / "index" / "counts.parquet"
    stamp = ws.state / "index" / "counts.key"
    if table.is_file() and stamp.is_file() and stamp.read_text() == key:
        return table
    import duckdb

    table.parent.mkdir(parents=True, exist_ok=True)
    tmp = table.with_suffix(".tmp.parquet")
    keys = ", ".join(KEY_COLUMNS)
    sums = ", ".join(f"sum({c})::BIGINT AS {c}" for c in COUNT_COLUMNS)
    types = (
        "{run: 'VARCHAR', step: 'BIGINT', environment: 'VARCHAR', environment_version: 'INTEGER', "
        "environment_hash: 'VARCHAR', judge: 'VARCHAR', judge_version: 'VARCHAR', n: 'BIGINT', "
        "none: 'BIGINT', rejected: 'BIGINT', rationalized: 'BIGINT', overt: 'BIGINT', "
        "divergent: 'BIGINT'}"
    )
    pattern = str(ws.registry / "counts" / "*.csv").replace("'", "''")
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT {keys}, {sums} FROM read_csv('{pattern}', header=true, "
            f"columns={types}) GROUP BY ALL ORDER BY {keys}) TO '{tmp}' (FORMAT parquet)"
        )
    tmp.replace(table)
    atomic_write(stamp, key.encode())
    return table


def counts(ws: Workspace) -> list[dict[str, int | str]]:
    table = counts_table(ws)
    if table is None:
        return []
    import duckdb

    with duckdb.connect() as con:
        cursor = con.execute(f"SELECT * FROM read_parquet('{table}')")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def series(
    registry: Registry,
    *,
    metrics: Sequence[str] = ("rationalization_rate",),
    run: str | None = None,
    environment: str | None = None,
    judge: str | None = None,
) -> list[Series]:
    """Each metric's series per environment version and judge version, in checkpoint order.

    With `run`, the series follow the run's lineage: its ancestors' checkpoints up to each fork,
    then its own."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise GovError(f"unknown metric {unknown[0]!r}: one of {', '.join(METRICS)}")
    if environment is not None:
        registry.environment(environment)
    if judge is not None:
        registry.judge(judge)
    rows = counts(registry.ws)
    if run is not None:
        order = {(c.run, c.step): i for i, c in enumerate(registry.lineage_checkpoints(run))}
        rows = [r for r in rows if (r["run"], r["step"]) in order]
        rows.sort(key=lambda r: order[(str(r["run"]), int(r["step"]))])
    else:
        rows.sort(key=lambda r: (str(r["run"]), int(r["step"])))
    if environment is not None:
        rows = [r for r in rows if r["environment"] == environment]
    if judge is not None:
        rows = [r for r in rows if r["judge"] == judge]
    found: dict[tuple[str, str, int, str, str], Series] = {}
    for row in rows:
        c = {k: int(row[k]) for k in COUNT_COLUMNS}
        for name in metrics:
            metric = METRICS[name]
            key = (
                name,
                str(row["environment"]),
                int(row["environment_version"]),
                str(row["judge"]),
                str(row["judge_version"]),
            )
            if key not in found:
                found[key] = Series(*key)
            k, n = metric.numerator(c), metric.denominator(c)
            low, high = wilson(k, n) if n > 0 else (None, None)
            found[key].points.append(
                Point(str(row["run"]), int(row["step"]), k, n, k / n if n else None, low, high)
            )
    return sorted(
        found.values(),
        key=lambda s: (s.metric, s.environment, s.environment_version, s.judge, s.judge_version),
    )
