"""Validating a report whole: one DuckDB pass over an episode report (the per-row rules in SQL,
the distinct keys with the models' own types), pydantic record by record only to name what is
wrong; aggregated reports record by record."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..counts import (
    COUNT_COLUMNS,
    KEY_COLUMNS,
    Format,
    Group,
    Tally,
)
from ..errors import ReportRejected
from ..judgments import AggregatedCounts, JudgedEpisode
from ..storage import duckdb_connect
from ..workspace import Workspace
from .formats import (
    LISTED_ERRORS,
    MAX_RECORD_BYTES,
    Problems,
    Progress,
    quote,
    validated,
    validation_message,
)
from .join import FreeJoin, Join

_RAW_KEYS = ("run", "step", "environment", "environment_version", "judge", "judge_version")
_COMBO = (*_RAW_KEYS, "schema_version", "verdict", "divergent")
_KEYS_HASH = f"hash({', '.join(_RAW_KEYS)})"


def connect(ws: Workspace) -> Any:

    tmp = ws.state / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb_connect({"memory_limit": "1GB", "temp_directory": str(tmp)})
    con.execute("SET preserve_insertion_order = false")
    return con


_EPISODE_FIELDS = tuple(JudgedEpisode.model_fields)  # every field, in the model's order
_JSON_COLUMNS = "{" + ", ".join(f"{f}: 'JSON'" for f in _EPISODE_FIELDS) + "}"  # as JSON text

# A row passes only if each per-row field would pass the pydantic model too (see test_ingest's
# property test): episode a non-empty string or an integer, confidence a number in [0, 1],
# evidence a list of {start, end, quote} with 0 <= start < end, note a string. The values are
# JSON text as DuckDB re-serialises it (no spaces; strings quoted; true, false and null bare), so
# a string is told by its quote and a number by DuckDB's cast (which takes no JSON literal)
# without a regular expression on every row.
_ROW_PROBLEM = r"""
CASE
  WHEN episode IS NULL THEN 'episode'
  WHEN NOT (CASE WHEN starts_with(episode, '"') THEN length(episode) > 2
                 ELSE regexp_full_match(episode, '-?(0|[1-9][0-9]*)') END) THEN 'episode'
  WHEN confidence IS NOT NULL AND NOT coalesce(
      NOT starts_with(confidence, '"') AND TRY_CAST(confidence AS DOUBLE) BETWEEN 0 AND 1,
      false) THEN 'confidence'
  WHEN note IS NOT NULL AND left(note, 1) <> '"' THEN 'note'
  WHEN evidence IS NOT NULL AND NOT coalesce(
      json_type(evidence::JSON) = 'ARRAY'
      AND coalesce(list_bool_and(list_transform(json_extract(evidence::JSON, '$[*]'), lambda x:
          json_type(x) = 'OBJECT'
          AND list_sort(json_keys(x)) = ['end', 'quote', 'start']
          AND json_type(x, '$.start') = 'UBIGINT'
          AND json_type(x, '$.end') = 'UBIGINT'
          AND json_type(x, '$.quote') = 'VARCHAR'
          AND (x->>'$.end')::UBIGINT > (x->>'$.start')::UBIGINT)), true), false) THEN 'evidence'
END
"""


def _raw_select(path: Path, fmt: Format, con: Any) -> str:
    """SELECT of every field as its JSON text (NULL when absent), for JSONL or Parquet."""
    if fmt == "parquet":
        present = {
            c[0]
            for c in con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote(path)})").fetchall()
        }
        cols = ", ".join(
            f"to_json({_ident(f)})::VARCHAR AS {f}" if f in present else f"NULL::VARCHAR AS {f}"
            for f in _EPISODE_FIELDS
        )
        return f"SELECT {cols} FROM read_parquet({quote(path)})"
    compression = "gzip" if fmt == "jsonl.gz" else "none"
    cols = ", ".join(f"{f}::VARCHAR AS {f}" for f in _EPISODE_FIELDS)
    return (
        f"SELECT {cols} FROM read_json({quote(path)}, format='newline_delimited', "
        f"compression='{compression}', columns={_JSON_COLUMNS}, "
        f"maximum_object_size={MAX_RECORD_BYTES})"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class EpisodeScan:
    """A validated episode report: its counts, and how its raw keys map to the registry's.

    `keys` (a CSV of raw key text -> group, verdict, divergent) is kept in the local index; the
    per-episode table `part` is only built when a later report judges the same groups again."""

    records: int
    tallies: dict[Group, Tally]
    duplicates: int
    keys: Path
    part: Path | None = None


def _combo_problem(
    combo: dict[str, str | None], join: Join, decoded: dict[str, Any]
) -> tuple[tuple[Group, str, bool] | None, str]:
    """Validate one distinct combination of raw key values; (group, verdict, divergent) or why.

    `decoded`: the raw values read so far, shared by the combinations of one report (a few
    thousand combinations hold a few dozen distinct values; decoding each again was half of
    this step, which runs after the scan on one core)."""
    values: dict[str, Any] = {}
    for name, raw in combo.items():
        if raw is None:
            values[name] = None
            continue
        if raw not in decoded:
            decoded[raw] = json.loads(raw)
        values[name] = decoded[raw]
    record = {k: v for k, v in values.items() if v is not None}
    try:
        # The model itself, on a stand-in episode: the same rules as the line-by-line path.
        JudgedEpisode.model_validate({**record, "episode": "x"})
    except ValidationError as exc:
        return None, validation_message(exc)
    group = join.group(
        values["run"],
        values["step"],
        values["environment"],
        values["environment_version"],
        values["judge"],
        values["judge_version"],
    )
    if isinstance(group, str):
        return None, group
    return (group, str(values["verdict"]), bool(values["divergent"])), ""


_NULL = ""  # raw JSON text is never empty, so an empty CSV field can stand for SQL NULL


def _write_keys(path: Path, mapping: dict[tuple[str | None, ...], tuple[Group, str, bool]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*(f"raw_{c}" for c in _COMBO), *KEY_COLUMNS, "verdict", "divergent"])
        for raw, (group, verdict, divergent) in mapping.items():
            cells = [_NULL if v is None else v for v in raw]
            key = [getattr(group, c) for c in KEY_COLUMNS]
            writer.writerow([*cells, *key, verdict, "true" if divergent else "false"])


def canonical_episodes(part: Path, keys: Path) -> str:
    """SQL for an episode table with the registry's keys: KEY_COLUMNS, h, verdict, divergent."""
    on = " AND ".join(f"coalesce(p.{c}, '') = coalesce(k.raw_{c}, '')" for c in _COMBO)
    typed = {"step": "BIGINT", "environment_version": "INTEGER"}
    cols = ", ".join(f"k.{c}::{typed[c]} AS {c}" if c in typed else f"k.{c}" for c in KEY_COLUMNS)
    return (
        f"SELECT DISTINCT {cols}, p.h, k.verdict, k.divergent::BOOLEAN AS divergent "
        f"FROM read_parquet({quote(part)}) p "
        f"JOIN read_csv({quote(keys)}, header = true, all_varchar = true) k ON {on}"
    )


def scan_episodes(
    ws: Workspace, path: Path, fmt: Format, join: Join, progress: Progress | None = None
) -> EpisodeScan:
    """Validate and count an episode-level report; raise ReportRejected naming its bad records.

    One pass of DuckDB over the file groups it by the raw key values (a few thousand
    combinations, validated here with the model's own types), each with the keys of its
    episodes; the keys sorted find an episode judged twice."""
    import duckdb

    con = connect(ws)
    try:
        try:
            rows = None
            if path.stat().st_size >= SORTED_FROM:
                with contextlib.suppress(duckdb.OutOfMemoryException):
                    # None where every episode's key held at once does not fit (a report of
                    # about a hundred million episodes): DuckDB groups them, spilling to disk
                    query = _scan_query(path, fmt, con)
                    rows = _rows(_run_with_progress(con, query, progress, numpy=True))
                    if rows is None:  # an episode appears twice: DuckDB finds which, and how
                        rows = con.execute(_spilled_query(path, fmt, con, lean=False)).fetchall()
            if rows is None:
                rows = _run_with_progress(con, _spilled_query(path, fmt, con, lean=True), progress)
                if any(r[0] == 0 for r in rows):  # an episode appears twice: which, and how
                    rows = con.execute(_spilled_query(path, fmt, con, lean=False)).fetchall()
        except duckdb.Error as exc:
            _explain_episodes(path, fmt, join, set())  # names the bad lines
            detail = " ".join(str(exc).split())[:200]
            raise ReportRejected(
                f"{path}: cannot be read as {fmt} episode records: {detail}"
            ) from None
    finally:
        con.close()
    width = len(_COMBO)
    combos = [r for r in rows if r[0] == 1]
    repeated = [r for r in rows if r[0] == 0]
    records = sum(r[width + 1] for r in combos)
    if records == 0:
        raise ReportRejected(f"{path}: no records: a report needs at least one")
    mapping: dict[tuple[str | None, ...], tuple[Group, str, bool]] = {}
    by_hash: dict[int, tuple[Group, str, bool]] = {}
    bad = sum(r[width + 2] for r in combos)
    decoded: dict[str, Any] = {}
    for row in combos:
        raw = tuple(row[1 : width + 1])
        resolved, _ = _combo_problem(dict(zip(_COMBO, raw, strict=True)), join, decoded)
        if resolved is None:
            bad += 1
        else:
            mapping[raw] = resolved
            by_hash[row[-1]] = resolved
    conflicts = [r for r in repeated if r[-3] != r[-2]]
    if bad or conflicts:
        _explain_episodes(path, fmt, join, _episode_ids(ws, path, fmt, conflicts[:LISTED_ERRORS]))
        # The record-by-record read found nothing: the two readers disagree, which is a bug.
        raise RuntimeError(f"{path}: the fast check refused records the model accepts")
    tallies: dict[Group, Tally] = {}
    for row in combos:
        group, verdict, divergent = by_hash[row[-1]]
        tallies.setdefault(group, Tally()).add_verdict(verdict, divergent, row[width + 1])
    duplicates = 0
    for row in repeated:  # the same judgment repeated in the file: count the episode once
        group, verdict, divergent = by_hash[row[-1]]
        tallies[group].add_verdict(verdict, divergent, -(row[width + 1] - 1))
        duplicates += row[width + 1] - 1
    keys = ws.state / "tmp" / f"keys-{secrets.token_hex(6)}.csv"
    _write_keys(keys, mapping)
    return EpisodeScan(records, tallies, duplicates, keys)


# From this size on, a report's episode keys are sorted in numpy (_scan_query); below it, DuckDB
# groups them (_spilled_query), which costs less there than importing numpy (a tenth of a second
# of a 30,000-episode report's ingest).
SORTED_FROM = 64 << 20


def _scan_query(path: Path, fmt: Format, con: Any) -> str:
    """The one-pass scan: per combination of raw values, its n records, `bad` of them with a
    per-row problem, and ks, the list of its episodes' id hashes; then, per combination only,
    g0 the hash of its raw keys, vh of its judgment and c of the whole (as in _spilled_query).

    Sorting the ten million keys of a 2.2 GB report in numpy, each raw key set's apart and over
    the cores, takes a fifth of a second; DuckDB grouping them as `GROUP BY k` took five seconds
    of CPU (bench/ingest.py). The hashes of a combination are taken once per combination, not
    once per record: that was a tenth of the query's CPU."""
    combo = ", ".join(_COMBO)
    return (
        f"SELECT *, hash(g0, schema_version, vh) AS c FROM ("
        f"SELECT *, {_KEYS_HASH} AS g0, hash(verdict, divergent) AS vh FROM ("
        f"SELECT {combo}, count(*) AS n, count(problem) AS bad, list(hash(episode)) AS ks "
        f"FROM (SELECT {combo}, episode, {_ROW_PROBLEM} AS problem "
        f"FROM ({_raw_select(path, fmt, con)})) GROUP BY {combo}))"
    )


def _rows(found: dict[str, Any]) -> list[tuple[Any, ...]] | None:
    """_scan_query's answer as _spilled_query's rows, one (1, *combo, n, bad, None, None, None,
    c) per combination; None when an episode appears twice (which, and how, is then DuckDB's to
    find: a report with a repeated episode is rare, and its second pass is not the common
    case's cost)."""
    if _any_repeated(list(found["ks"]), found["g0"].tolist()):
        return None
    columns = [found[c].tolist() for c in (*_COMBO, "n", "bad", "c")]  # masked: None
    return [(1, *r[:-1], None, None, None, r[-1]) for r in zip(*columns, strict=True)]


def _any_repeated(lists: list[Any], owners: list[int]) -> bool:
    """Whether any episode appears twice under the same raw keys (an episode is its raw keys
    and its id, so each raw key set's id hashes are sorted on their own: a few thousand
    cache-sized sorts spread over the cores, numpy sorting without the GIL, not one of
    millions)."""
    import numpy as np

    shared: dict[int, list[Any]] = {}
    for owner, keys in zip(owners, lists, strict=True):
        shared.setdefault(owner, []).append(keys)

    def repeated(parts: list[Any]) -> bool:
        ordered = np.sort(np.concatenate(parts) if len(parts) > 1 else parts[0])
        return bool(np.any(ordered[1:] == ordered[:-1]))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return any(pool.map(repeated, shared.values()))


def _spilled_query(path: Path, fmt: Format, con: Any, *, lean: bool) -> str:
    """The one-pass scan with the episodes grouped by DuckDB (which spills to disk): rows
    (g, *combo, n, bad, k, low, high, c), g = 1 for a combination of
    raw values (n records, `bad` of them with a per-row problem, c its hash) and g = 0 for an
    episode key k seen more than once. Lean, a repeated episode is only counted (the common
    case, a file without one, then skips three aggregates over every episode: a fifth of the
    query's CPU); otherwise low and high are the least and greatest hash of its judgments (they
    differ when it was judged two ways) and c the hash of its combination.

    The raw keys are hashed once per row (g0) and both hashes built on it: hashing the six key
    strings twice was another fifth."""
    combo = ", ".join(_COMBO)
    per_episode = (
        "NULL AS low, NULL AS high, c" if lean else "min(vh) AS low, max(vh) AS high, min(c) AS c"
    )
    return (
        f"SELECT GROUPING(k) AS g, {combo}, count(*) AS n, count(problem) AS bad, k, "
        f"{per_episode} FROM ("
        f"SELECT *, hash(g0, schema_version, vh) AS c, hash(g0, episode) AS k FROM ("
        f"SELECT {combo}, episode, {_KEYS_HASH} AS g0, hash(verdict, divergent) AS vh, "
        f"{_ROW_PROBLEM} AS problem FROM ({_raw_select(path, fmt, con)}))) "
        f"GROUP BY GROUPING SETS (({combo}, c), (k)) HAVING GROUPING(k) = 1 OR count(*) > 1"
    )


def _episode_ids(ws: Workspace, path: Path, fmt: Format, rows: list[tuple[Any, ...]]) -> set[str]:
    """The episode ids behind some of scan_episodes' per-episode rows (their hash k)."""
    if not rows:
        return set()
    # Rows hold k only as the grouping key; recompute it to find the episodes (error path only).
    con = connect(ws)
    try:
        found = con.execute(
            f"SELECT DISTINCT episode FROM ({_raw_select(path, fmt, con)}) WHERE "
            f"hash({_KEYS_HASH}, episode) IN (SELECT unnest(?::UBIGINT[]))",
            [[r[-4] for r in rows]],
        ).fetchall()
    finally:
        con.close()
    return {str(json.loads(e[0])) for e in found}


def build_part(ws: Workspace, path: Path, fmt: Format) -> Path:
    """The per-episode table of a (validated) report: raw keys, episode hash, judgment."""
    con = connect(ws)
    part = ws.state / "tmp" / f"part-{secrets.token_hex(6)}.parquet"
    try:
        con.execute(
            f"COPY (SELECT {', '.join(_COMBO)}, hash(episode) AS h "
            f"FROM ({_raw_select(path, fmt, con)})) TO {quote(part)} (FORMAT parquet)"
        )
    finally:
        con.close()
    return part


def _group_row(group: Group) -> tuple[Any, ...]:
    return tuple(getattr(group, c) for c in KEY_COLUMNS)


def _run_with_progress(
    con: Any, sql: str, progress: Progress | None, *, numpy: bool = False
) -> Any:
    """The query's rows (`numpy`: its columns, as DuckDB's fetchnumpy gives them), the bar
    following DuckDB's progress meanwhile."""

    def fetch() -> Any:
        result = con.execute(sql)
        return result.fetchnumpy() if numpy else list(result.fetchall())

    if progress is None:
        return fetch()
    done = threading.Event()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(fetch())
        except BaseException as exc:  # handed back to the caller's thread
            outcome.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while not done.wait(0.1):
        fraction = con.query_progress()
        if fraction >= 0:
            progress("reading", fraction / 100)
    worker.join()
    progress("reading", 1.0)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _explain_episodes(path: Path, fmt: Format, join: Join, conflicted: set[str]) -> None:
    """Read the file record by record with pydantic and raise naming its first bad records.

    `conflicted`: ids of episodes judged twice differently, whose lines are to be named."""
    problems = Problems(str(path))
    seen: dict[tuple[Any, ...], tuple[int, str, bool]] = {}
    where = "row" if fmt == "parquet" else "line"
    for number, label, episode in validated(path, fmt, JudgedEpisode, problems):
        group = join.of(episode)
        if isinstance(group, str):
            problems.add(label, group)
            continue
        key = (group, str(episode.episode))
        judged = (number, episode.verdict.value, episode.divergent)
        if key[1] in conflicted:
            first = seen.setdefault(key, judged)
            if first[1:] != judged[1:]:
                problems.add(
                    label,
                    conflict_message(
                        episode.episode,
                        (f"{where} {first[0]}", first[1], first[2]),
                        episode.verdict.value,
                        episode.divergent,
                    ),
                )
    problems.raise_if_any()


def conflict_message(
    episode: str | int, first: tuple[str, str, bool], verdict: str, divergent: bool
) -> str:
    """How an episode judged two ways is named, by gov ingest and gov aggregate alike: `first`
    is where it was judged first (`line 3`, or a lake file's row) and how (verdict, divergent)."""
    where, was, was_divergent = first
    return (
        f"episode {episode!r} was judged {was}{' (divergent)' if was_divergent else ''} at "
        f"{where} and {verdict}{' (divergent)' if divergent else ''} here"
    )


def scan_aggregated(
    path: Path, fmt: Format, join: Join | FreeJoin, refusal: str | None = None
) -> tuple[int, dict[Group, Tally]]:
    """Validate and sum an aggregated report record by record; raise ReportRejected naming its
    bad records (`refusal`: what refusing the file means, for a command that stores nothing)."""
    problems = Problems(str(path)) if refusal is None else Problems(str(path), refusal=refusal)
    tallies: dict[Group, Tally] = {}
    first: dict[Group, str] = {}  # the record that counted each group
    records = 0
    for _, label, counts in validated(path, fmt, AggregatedCounts, problems):
        group = join.of(counts)
        if isinstance(group, str):
            problems.add(label, group)
            continue
        if group in first:
            # Counts carry no episode ids: a second record of one group is a line written twice
            # or two tallies that disagree, and summing either counts episodes twice.
            problems.add(
                label,
                f"{group.run}@{group.step} {group.environment} v{group.environment_version} "
                f"({group.judge} {group.judge_version}) is counted already by {first[group]}: a "
                "report counts each group once (another batch of it goes in a report of its own)",
            )
            continue
        first[group] = label
        records += 1
        tallies[group] = Tally(**{c: getattr(counts, c) for c in COUNT_COLUMNS})
    problems.raise_if_any()
    if not records:
        raise ReportRejected(f"{path}: no records: a report needs at least one")
    return records, tallies
