"""Two versions of a judge side by side: how they agree on the episodes both judged (Cohen's
kappa, the confusion of verdicts) and how their rationalization rates compare, per environment.

A new judge version is a new series: gov never pools versions. This says how far the two can be
compared, so that a user can decide whether (and with what ratio) to carry an analysis across
the change (a policy's `judge_bridge`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import counts
from .errors import GovError
from .ingest.scan import connect
from .judgments import VERDICTS
from .pairs import EPISODE_KEYS, episode_union
from .registry import Registry
from .stats.agreement import Estimate, kappa, rate_ratio


@dataclass(frozen=True)
class EnvironmentRatio:
    environment: str
    episodes: int  # judged by both versions (or, on checkpoints, by each: see `basis`)
    first_rate: float
    second_rate: float
    ratio: Estimate  # the second version's rate over the first's


@dataclass
class Comparison:
    judge: str
    first: str
    second: str
    basis: str  # "episodes": the same episodes; "checkpoints": the same checkpoints only
    episodes: int
    agreement: float | None  # the share of episodes given the same verdict
    kappa: Estimate | None
    confusion: dict[str, dict[str, int]]  # the first version's verdict -> the second's -> count
    ratio: Estimate  # the rationalization rate, second over first, over all environments
    environments: list[EnvironmentRatio] = field(default_factory=list)
    note: str = ""


def compare(registry: Registry, judge: str, first: str, second: str) -> Comparison:
    """Compare versions `first` and `second` of `judge` on what both judged."""
    known = registry.judge(judge)  # an unknown judge is an error naming it
    versions = [v.version for v in known.versions]
    for version in (first, second):
        if version not in versions:
            raise GovError(
                f"judge {judge!r} has no version {version!r} (known: {', '.join(versions)})"
            )
    if first == second:
        raise GovError(f"compare two different versions of {judge!r}, not {first!r} with itself")
    pairs = _pairs(registry, judge, first, second)
    if pairs:
        return _on_episodes(judge, first, second, pairs)
    return _on_checkpoints(registry, judge, first, second)


def _pairs(
    registry: Registry, judge: str, first: str, second: str
) -> list[tuple[str, str, str, int]]:
    """(environment, first verdict, second verdict, count) over the episodes both judged: the
    latest verdict of each version on each episode."""
    ws = registry.ws
    md5s = [
        e.md5
        for e in counts.ledger(ws)
        if e.kind == "episodes"
        and any(
            r.judge == judge and r.judge_version in (first, second)
            for r in counts.report_rows(ws, e.md5)
        )
    ]
    union = episode_union(ws, md5s) if md5s else None
    if union is None:
        return []
    keys = EPISODE_KEYS
    latest = (
        f"SELECT {', '.join(keys)}, h, judge_version, arg_max(verdict, seq) AS verdict "
        f"FROM ({union}) WHERE judge = ? GROUP BY {', '.join(keys)}, h, judge_version"
    )
    on = " AND ".join(f"a.{c} = b.{c}" for c in (*keys, "h"))
    con = connect(ws)
    try:
        found = con.execute(
            f"WITH latest AS ({latest}) SELECT a.environment, a.verdict, b.verdict, count(*) "
            f"FROM latest a JOIN latest b ON {on} "
            "WHERE a.judge_version = ? AND b.judge_version = ? GROUP BY ALL ORDER BY ALL",
            [judge, first, second],
        ).fetchall()
    finally:
        con.close()
    return [(str(e), str(a), str(b), int(n)) for e, a, b, n in found]


def _on_episodes(
    judge: str, first: str, second: str, pairs: list[tuple[str, str, str, int]]
) -> Comparison:
    index = {v: i for i, v in enumerate(VERDICTS)}
    matrix = [[0] * len(VERDICTS) for _ in VERDICTS]
    per_env: dict[str, list[int]] = {}  # environment -> [n, k first, k second]
    for env, a, b, n in pairs:
        matrix[index[a]][index[b]] += n
        tally = per_env.setdefault(env, [0, 0, 0])
        tally[0] += n
        tally[1] += n if a == "rationalized" else 0
        tally[2] += n if b == "rationalized" else 0
    total = sum(sum(row) for row in matrix)
    same = sum(matrix[i][i] for i in range(len(VERDICTS)))
    k1 = sum(t[1] for t in per_env.values())
    k2 = sum(t[2] for t in per_env.values())
    return Comparison(
        judge,
        first,
        second,
        "episodes",
        total,
        same / total,
        kappa(matrix),
        {a: {b: matrix[i][j] for j, b in enumerate(VERDICTS)} for i, a in enumerate(VERDICTS)},
        rate_ratio(k1, total, k2, total),
        [
            EnvironmentRatio(env, n, ka / n, kb / n, rate_ratio(ka, n, kb, n))
            for env, (n, ka, kb) in sorted(per_env.items())
        ],
    )


def _on_checkpoints(registry: Registry, judge: str, first: str, second: str) -> Comparison:
    """No episode judged by both: the rates on the checkpoints (and environment versions) both
    versions judged, if any; agreement cannot be measured."""
    rows = [r for r in counts.rows(registry.ws) if r.judge == judge]
    cells: dict[tuple[str, int, str, int], dict[str, tuple[int, int]]] = {}
    for r in rows:
        if r.judge_version in (first, second):
            key = (r.run, r.step, r.environment, r.environment_version)
            k, n = cells.setdefault(key, {}).get(r.judge_version, (0, 0))
            cells[key][r.judge_version] = (k + r.rationalized, n + r.n)
    per_env: dict[str, list[int]] = {}  # environment -> [n first, k first, n second, k second]
    for (_, _, env, _), both in cells.items():
        if first in both and second in both:
            tally = per_env.setdefault(env, [0, 0, 0, 0])
            tally[0] += both[first][1]
            tally[1] += both[first][0]
            tally[2] += both[second][1]
            tally[3] += both[second][0]
    confusion = {a: dict.fromkeys(VERDICTS, 0) for a in VERDICTS}
    if not per_env:
        return Comparison(
            judge,
            first,
            second,
            "checkpoints",
            0,
            None,
            None,
            confusion,
            Estimate(float("nan"), float("nan"), float("nan")),
            note=(
                f"no episode and no checkpoint was judged by both {first} and {second}: the two "
                "cannot be compared, and a series cannot be carried across the change; judge some "
                "checkpoints with both versions (the same episodes, best) to measure the ratio"
            ),
        )
    n1 = sum(t[0] for t in per_env.values())
    k1 = sum(t[1] for t in per_env.values())
    n2 = sum(t[2] for t in per_env.values())
    k2 = sum(t[3] for t in per_env.values())
    return Comparison(
        judge,
        first,
        second,
        "checkpoints",
        n1 + n2,
        None,
        None,
        confusion,
        rate_ratio(k1, n1, k2, n2),
        [
            EnvironmentRatio(
                env,
                a + c,
                b / a if a else float("nan"),
                d / c if c else float("nan"),
                rate_ratio(b, a, d, c),
            )
            for env, (a, b, c, d) in sorted(per_env.items())
        ],
        note=(
            "no episode was judged by both versions: the rates are compared on the checkpoints "
            "both judged (different episodes), and agreement cannot be measured"
        ),
    )
