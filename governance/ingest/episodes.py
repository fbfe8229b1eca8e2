"""The local per-episode index (`.gov/index/episodes/`): an episode judged again by the same
judge version is counted once, and a changed verdict is refused or, when asked, replaces the
earlier one. Rebuilt from the stored report when lost (a fresh clone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..counts import (
    KEY_COLUMNS,
    Group,
    ReportEntry,
    Tally,
    episode_reports_for,
)
from ..errors import GovError, ReportRejected
from ..registry import Registry
from ..workspace import Workspace
from .join import Join
from .scan import EpisodeScan, build_part, canonical_episodes, connect, scan_episodes


def earlier_judgments(ws: Workspace, con: Any, earlier: list[ReportEntry], md5s: list[str]) -> None:
    """Table `earlier`: the latest earlier judgment of each episode of the given reports."""
    for md5 in md5s:
        ensure_index(ws, next(e for e in earlier if e.md5 == md5))
    union = " UNION ALL ".join(
        f"SELECT *, {i} AS seq FROM ({canonical_episodes(*index_paths(ws, m))})"
        for i, m in enumerate(md5s)
    )
    con.execute(
        f"CREATE TEMP TABLE earlier AS SELECT {', '.join(KEY_COLUMNS)}, h, "
        f"arg_max(verdict, seq) AS verdict, arg_max(divergent, seq) AS divergent, "
        f"arg_max(seq, seq) AS seq FROM ({union}) GROUP BY {', '.join(KEY_COLUMNS)}, h"
    )


def ensure_index(ws: Workspace, entry: ReportEntry) -> None:
    """Build a report's episode table and key map (lost, or a fresh clone) from the report."""
    part, keys = index_paths(ws, entry.md5)
    if part.is_file() and keys.is_file():
        return
    stored = ws.root / entry.path
    if not stored.is_file():
        raise GovError(
            f"report {entry.path} is not in the workspace, and checking for re-judged episodes "
            f"needs it: fetch it with `dvc pull {entry.path}`"
        )
    scan = scan_episodes(ws, stored, entry.format, Join(Registry(ws)))
    scan.part = build_part(ws, stored, entry.format)
    place(scan, entry.md5, ws)


def index_paths(ws: Workspace, md5: str) -> tuple[Path, Path]:
    """A report's episode table and its key map in the local index."""
    folder = ws.local("index", "episodes")
    return folder / f"{md5}.parquet", folder / f"{md5}.keys.csv"


def place(scan: EpisodeScan, md5: str, ws: Workspace) -> None:
    part, keys = index_paths(ws, md5)
    part.parent.mkdir(parents=True, exist_ok=True)
    scan.keys.replace(keys)
    if scan.part is not None:
        scan.part.replace(part)


def discard(scan: EpisodeScan | None) -> None:
    if scan is not None:
        scan.keys.unlink(missing_ok=True)
        if scan.part is not None:
            scan.part.unlink(missing_ok=True)


def against_earlier(
    ws: Workspace,
    source: Path,
    entry: ReportEntry,
    tallies: dict[Group, Tally],
    scan: EpisodeScan,
    earlier: list[ReportEntry],
    replace: bool,
) -> tuple[ReportEntry, dict[Group, Tally]]:
    """Leave out episodes judged the same before; refuse (or, with replace, swap) changed ones."""
    md5s = episode_reports_for(ws, earlier, set(tallies))
    if not md5s:
        return entry, tallies
    scan.part = build_part(ws, source, entry.format)
    con = connect(ws)
    try:
        earlier_judgments(ws, con, earlier, md5s)
        keys = " AND ".join(f"n.{c} = e.{c}" for c in (*KEY_COLUMNS, "h"))
        rows = con.execute(
            f"SELECT {', '.join('n.' + c for c in KEY_COLUMNS)}, n.verdict, n.divergent, "
            f"e.verdict, e.divergent, e.seq FROM ({canonical_episodes(scan.part, scan.keys)}) n "
            f"JOIN earlier e ON {keys}"
        ).fetchall()
    finally:
        con.close()
    sources = md5s
    if not rows:
        return entry, tallies
    same = [r for r in rows if (r[7], r[8]) == (r[9], r[10])]
    changed = [r for r in rows if (r[7], r[8]) != (r[9], r[10])]
    if changed and not replace:
        first = changed[0]
        raise ReportRejected(
            f"{entry.source}: refused, nothing stored: {len(changed)} episodes were judged "
            f"before by the same judge version with another verdict (first: {first[0]}@{first[1]} "
            f"{first[2]}: {first[9]} before, {first[7]} now)",
            remedy="replace",
        )
    adjusted = {g: Tally(**vars(t)) for g, t in tallies.items()}
    for row in same:  # counted before: not again
        adjusted[Group(*row[:7])].add_verdict(row[7], row[8], -1)
    for row in changed:  # the new verdict stays counted; the one it replaces comes off
        adjusted[Group(*row[:7])].add_verdict(row[9], row[10], -1)
    superseded = sorted({sources[r[11]] for r in changed})
    return (
        entry.model_copy(
            update={
                "counted": entry.counted - len(same),
                "duplicates": entry.duplicates + len(same),
                "replaced": len(changed),
                "supersedes": tuple(superseded),
            }
        ),
        adjusted,
    )
