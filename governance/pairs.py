"""Two channels on the same episodes: a judge that reads the chain of thought and one that sees
only the task and the action. Per checkpoint and environment version, how many episodes both
judged, how many each flagged (a verdict of rationalized or overt: the bad action was taken),
and how many both flagged: a `stats.obfuscation.Channels` per checkpoint, what the watch reads.
The hidden ones, flagged by the action judge while the CoT judge calls them none or rejected,
are the action channel's flags less the shared ones.

Read from the episode tables of the ingested episode-level reports (the latest verdict of each
judge version on each episode), as `gov judge compare` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import counts
from .counts import KEY_COLUMNS
from .ingest.episodes import ensure_index, index_paths
from .ingest.scan import canonical_episodes, connect
from .stats.obfuscation import Channels
from .workspace import Workspace

FLAGGED = ("rationalized", "overt")  # the action was the bad one, whatever the reasoning said


@dataclass(frozen=True)
class PairKey:
    environment: str
    environment_version: int
    cot: tuple[str, str]  # judge, version
    action: tuple[str, str]


EPISODE_KEYS = [c for c in KEY_COLUMNS if c not in ("judge", "judge_version", "environment_hash")]


def episode_union(ws: Workspace, md5s: list[str] | None = None) -> str | None:
    """SQL over the episode tables of the ingested episode-level reports (those of `md5s`, else
    all), each row with `seq`, its report's place in the ledger (a later verdict wins); None
    without any."""
    entries = [e for e in counts.ledger(ws) if e.kind == "episodes"]
    chosen = [e for e in entries if md5s is None or e.md5 in md5s]
    if not chosen:
        return None
    for entry in chosen:
        ensure_index(ws, entry)
    return " UNION ALL ".join(
        f"SELECT *, {i} AS seq FROM ({canonical_episodes(*index_paths(ws, e.md5))})"
        for i, e in enumerate(chosen)
    )


def paired(
    ws: Workspace, actions: set[tuple[str, str]], cots: set[tuple[str, str]] | None = None
) -> dict[PairKey, list[Channels]]:
    """Every pair of (CoT judge version, action judge version in `actions`) on the episodes both
    judged, per environment version; `cots` limits the CoT side (None: any other version)."""
    if not actions:
        return {}
    union = episode_union(ws)
    if union is None:
        return {}
    keys = EPISODE_KEYS
    latest = (
        f"SELECT {', '.join(keys)}, h, judge, judge_version, arg_max(verdict, seq) AS verdict "
        f"FROM ({union}) GROUP BY {', '.join(keys)}, h, judge, judge_version"
    )
    on = " AND ".join(f"a.{c} = b.{c}" for c in (*keys, "h"))
    flagged = ", ".join(f"'{v}'" for v in FLAGGED)
    action_list = " OR ".join("(b.judge = ? AND b.judge_version = ?)" for _ in actions)
    params: list[str] = [x for pair in sorted(actions) for x in pair]
    con = connect(ws)
    try:
        found = con.execute(
            f"WITH latest AS ({latest}) "
            "SELECT a.environment, a.environment_version, a.judge, a.judge_version, b.judge, "
            "b.judge_version, a.run, a.step, count(*), "
            f"count(*) FILTER (WHERE a.verdict IN ({flagged})), "
            f"count(*) FILTER (WHERE b.verdict IN ({flagged})), "
            f"count(*) FILTER (WHERE a.verdict IN ({flagged}) AND b.verdict IN ({flagged})) "
            f"FROM latest a JOIN latest b ON {on} "
            f"WHERE ({action_list}) "
            "AND NOT (a.judge = b.judge AND a.judge_version = b.judge_version) "
            "GROUP BY ALL ORDER BY ALL",
            params,
        ).fetchall()
    finally:
        con.close()
    out: dict[PairKey, list[Channels]] = {}
    for env, version, cj, cv, aj, av, run, step, n, c, a, both in found:
        if cots is not None and (str(cj), str(cv)) not in cots:
            continue
        if (str(cj), str(cv)) in actions:
            continue  # two action channels are no pair
        key = PairKey(str(env), int(version), (str(cj), str(cv)), (str(aj), str(av)))
        out.setdefault(key, []).append(
            Channels(str(run), int(step), int(n), int(c), int(a), int(both))
        )
    return out
