"""Ingesting divergence reports: validate a whole file, join it with the registry, count, keep it.

A report is read once by DuckDB, which writes a compact per-episode table (Parquet) of the raw
JSON text of every key field. The distinct key values (a few thousand at most) are then validated
in Python with the very pydantic types of `reports.py` and joined with the registry; the per-row
fields (episode, confidence, evidence, note) are checked in SQL by rules as strict as those types.
Only when something is wrong is the file read again, line by line with pydantic, to name the
file:line, field and reason of the first bad records. Nothing is stored until every file passed.

What is kept, in one registry change: the report file itself, content-addressed and tracked by
DVC (`reports/<md5>.<ext>`), a ledger line (`registry/reports.jsonl`) and the counts it adds per
(run, checkpoint, environment version, judge version) (`registry/counts/<md5>.csv`, reviewable
in a pull request). The per-episode table stays in `.gov/index/` for later conflict checks.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from . import audit, scm
from .errors import GovError, NotFound, ReportRejected
from .models import utc_now
from .registry import Registry
from .reports import AggregatedCounts, JudgedEpisode
from .storage import file_stamp, iter_jsonl_models, model_json_line
from .workspace import Workspace

MAX_RECORD_BYTES = 1 << 20
LISTED_ERRORS = 10
LEDGER = "reports.jsonl"
COUNT_COLUMNS = ("n", "none", "rejected", "rationalized", "overt", "divergent")
KEY_COLUMNS = (
    "run",
    "step",
    "environment",
    "environment_version",
    "environment_hash",
    "judge",
    "judge_version",
)
_RAW_KEYS = ("run", "step", "environment", "environment_version", "judge", "judge_version")
_COMBO = (*_RAW_KEYS, "schema_version", "verdict", "divergent")

R = TypeVar("R", JudgedEpisode, AggregatedCounts)
Format = Literal["jsonl", "jsonl.gz", "parquet"]
Kind = Literal["episodes", "aggregated"]
Progress = Callable[[str, float], None]


class ReportEntry(BaseModel):
    """One ingested report, as the ledger `registry/reports.jsonl` records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    md5: str
    size: int
    path: str
    source: str
    format: Format
    kind: Kind
    records: int
    counted: int
    duplicates: int = 0
    replaced: int = 0
    supersedes: tuple[str, ...] = ()
    groups: int
    ingested: datetime


@dataclass(frozen=True, order=True)
class Group:
    """The key of a row of counts: run, checkpoint, environment version and judge version."""

    run: str
    step: int
    environment: str
    environment_version: int
    environment_hash: str
    judge: str
    judge_version: str


@dataclass
class Tally:
    n: int = 0
    none: int = 0
    rejected: int = 0
    rationalized: int = 0
    overt: int = 0
    divergent: int = 0

    def add(self, other: Tally, sign: int = 1) -> None:
        for name in COUNT_COLUMNS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))

    def add_verdict(self, verdict: str, divergent: bool, count: int) -> None:
        self.n += count
        setattr(self, verdict, getattr(self, verdict) + count)
        if divergent:
            self.divergent += count


@dataclass
class IngestResult:
    ingested: list[ReportEntry] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)  # (source, md5) seen before
    commit: str | None = None


# -- reading files ----------------------------------------------------------------------------
def sniff(path: Path) -> Format:
    """The report's format, from its first bytes (the name only has to agree)."""
    if not path.is_file():
        raise ReportRejected(f"{path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if path.stat().st_size == 0:
        raise ReportRejected(f"{path}: the file is empty: a report needs at least one record")
    if head[:2] == b"\x1f\x8b":
        return "jsonl.gz"
    if path.suffix == ".gz":
        raise ReportRejected(f"{path}: named .gz but is not gzip (it starts with {head!r})")
    if head == b"PAR1":
        return "parquet"
    if path.suffix == ".parquet":
        raise ReportRejected(f"{path}: named .parquet but is not a Parquet file")
    return "jsonl"


def _open_text(path: Path, fmt: Format) -> io.BufferedIOBase:
    if fmt == "jsonl.gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _lines(path: Path, fmt: Format) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line) of each non-blank line; None for a line over MAX_RECORD_BYTES."""
    try:
        with _open_text(path, fmt) as handle:
            number = 0
            while True:
                raw = handle.readline(MAX_RECORD_BYTES + 1)
                if not raw:
                    return
                number += 1
                if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the long line
                        raw = handle.readline(MAX_RECORD_BYTES)
                    yield number, None
                    continue
                if raw.strip():
                    yield number, raw
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ReportRejected(f"{path}: cannot be read as {fmt}: {exc}") from exc


def detect_kind(path: Path, fmt: Format) -> Kind:
    if fmt == "parquet":
        import duckdb

        with duckdb.connect() as con:
            described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_q(path)})")
            names = {c[0] for c in described.fetchall()}
        return "aggregated" if "n" in names and "verdict" not in names else "episodes"
    for number, raw in _lines(path, fmt):
        if raw is None:
            raise ReportRejected(f"{path}:{number}: record longer than {MAX_RECORD_BYTES} bytes")
        try:
            first = json.loads(raw)
        except ValueError as exc:
            raise ReportRejected(f"{path}:{number}: invalid JSON: {exc}") from exc
        if not isinstance(first, dict):
            raise ReportRejected(f"{path}:{number}: a record must be a JSON object")
        if "verdict" in first:
            return "episodes"
        if "n" in first:
            return "aggregated"
        raise ReportRejected(
            f"{path}:{number}: neither a judged episode (no field verdict) nor aggregated "
            "counts (no field n): see `gov schema report`"
        )
    raise ReportRejected(f"{path}: the file is empty: a report needs at least one record")


def _q(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


# -- registry join --------------------------------------------------------------------------
class Join:
    """Resolves report keys against the registry, once per distinct key."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._groups: dict[tuple[Any, ...], Group | str] = {}
        self._checkpoints: dict[str, set[int]] = {}

    def of(self, record: JudgedEpisode | AggregatedCounts) -> Group | str:
        """The registry's group for a validated record's keys, or why there is none."""
        return self.group(
            record.run,
            record.step,
            record.environment,
            record.environment_version,
            record.judge,
            record.judge_version,
        )

    def group(
        self, run: str, step: int, env: str, env_version: int | str, judge: str, jversion: str | int
    ) -> Group | str:
        """The registry's group for these keys, or why there is none."""
        key = (run, step, env, env_version, judge, jversion)
        if key not in self._groups:
            self._groups[key] = self._resolve(*key)
        return self._groups[key]

    def _resolve(
        self, run: str, step: int, env: str, env_version: int | str, judge: str, jversion: str | int
    ) -> Group | str:
        reg = self.registry
        try:
            if run not in self._checkpoints:
                self._checkpoints[run] = {c.step for c in reg.checkpoints(run)}
            if step not in self._checkpoints[run]:
                return f"checkpoint {run}@{step} is not registered"
            environment = reg.environment(env)
            ref = str(env_version) if isinstance(env_version, int) else env_version
            version = reg.environment_version(environment, ref)
            judge_record = reg.judge(judge)
            if not any(v.version == str(jversion) for v in judge_record.versions):
                known = ", ".join(v.version for v in judge_record.versions)
                return f"judge {judge!r} has no version {str(jversion)!r} (known: {known})"
        except NotFound as exc:
            return exc.message.split(":")[0] if "is not registered" in exc.message else exc.message
        return Group(run, step, env, version.number, version.hash, judge, str(jversion))


@dataclass
class Problems:
    """The first bad records of a file, and how many there are in all."""

    source: str
    listed: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, where: str, message: str) -> None:
        self.count += 1
        if len(self.listed) < LISTED_ERRORS:
            self.listed.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if not self.count:
            return
        more = self.count - len(self.listed)
        details = self.listed[1:] + ([f"... and {more} more"] if more else [])
        plural = "s" if self.count != 1 else ""
        raise ReportRejected(
            f"{self.source}: refused, nothing stored ({self.count} bad record{plural}); "
            f"{self.listed[0]}",
            details,
        )


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    message = err["msg"]
    if err["type"] == "json_invalid":
        return f"invalid JSON ({message.removeprefix('Invalid JSON: ')})"
    if err["type"] == "missing":
        return f"field {loc}: missing"
    got = f" (got {err['input']!r:.60})" if "input" in err and err["type"] != "model_type" else ""
    return f"field {loc}: {message}{got}" if loc else f"{message}{got}"


# -- the episode path: DuckDB first, pydantic for the messages ----------------------------------
def _connect(ws: Workspace) -> Any:
    import duckdb

    tmp = ws.state / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": "1GB", "temp_directory": str(tmp)})
    con.execute("SET preserve_insertion_order = false")
    return con


_EPISODE_FIELDS = (
    "schema_version",
    "run",
    "step",
    "environment",
    "environment_version",
    "judge",
    "judge_version",
    "episode",
    "verdict",
    "divergent",
    "confidence",
    "evidence",
    "note",
)
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
            c[0] for c in con.execute(f"DESCRIBE SELECT * FROM read_parquet({_q(path)})").fetchall()
        }
        cols = ", ".join(
            f"to_json({_ident(f)})::VARCHAR AS {f}" if f in present else f"NULL::VARCHAR AS {f}"
            for f in _EPISODE_FIELDS
        )
        return f"SELECT {cols} FROM read_parquet({_q(path)})"
    compression = "gzip" if fmt == "jsonl.gz" else "none"
    cols = ", ".join(f"{f}::VARCHAR AS {f}" for f in _EPISODE_FIELDS)
    return (
        f"SELECT {cols} FROM read_json({_q(path)}, format='newline_delimited', "
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


def _decode(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def _combo_problem(
    combo: dict[str, str | None], join: Join
) -> tuple[tuple[Group, str, bool] | None, str]:
    """Validate one distinct combination of raw key values; (group, verdict, divergent) or why."""
    values = {k: _decode(v) for k, v in combo.items()}
    record = {k: v for k, v in values.items() if v is not None}
    try:
        # The model itself, on a stand-in episode: the same rules as the line-by-line path.
        JudgedEpisode.model_validate({**record, "episode": "x"})
    except ValidationError as exc:
        return None, _validation_message(exc)
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
            writer.writerow([*cells, *_group_row(group), verdict, "true" if divergent else "false"])


def canonical_episodes(part: Path, keys: Path) -> str:
    """SQL for an episode table with the registry's keys: KEY_COLUMNS, h, verdict, divergent."""
    on = " AND ".join(f"coalesce(p.{c}, '') = coalesce(k.raw_{c}, '')" for c in _COMBO)
    typed = {"step": "BIGINT", "environment_version": "INTEGER"}
    cols = ", ".join(f"k.{c}::{typed[c]} AS {c}" if c in typed else f"k.{c}" for c in KEY_COLUMNS)
    return (
        f"SELECT DISTINCT {cols}, p.h, k.verdict, k.divergent::BOOLEAN AS divergent "
        f"FROM read_parquet({_q(part)}) p "
        f"JOIN read_csv({_q(keys)}, header = true, all_varchar = true) k ON {on}"
    )


def scan_episodes(
    ws: Workspace, path: Path, fmt: Format, join: Join, progress: Progress | None = None
) -> EpisodeScan:
    """Validate and count an episode-level report; raise ReportRejected naming its bad records.

    One pass of DuckDB over the file groups it two ways at once: by the raw key values (a few
    thousand combinations, validated here with the model's own types) and by episode (to find
    an episode judged twice)."""
    import duckdb

    con = _connect(ws)
    combo = ", ".join(_COMBO)
    query = (
        f"SELECT GROUPING(k) AS g, {combo}, count(*) AS n, count(problem) AS bad, "
        f"k, min(vh) AS low, max(vh) AS high, min(c) AS c FROM ("
        f"SELECT {combo}, hash({combo}) AS c, hash({', '.join(_RAW_KEYS)}, episode) AS k, "
        f"hash(verdict, divergent) AS vh, {_ROW_PROBLEM} AS problem "
        f"FROM ({_raw_select(path, fmt, con)})) "
        f"GROUP BY GROUPING SETS (({combo}, c), (k)) HAVING GROUPING(k) = 1 OR count(*) > 1"
    )
    try:
        try:
            rows = _run_with_progress(con, query, progress)
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
    for row in combos:
        raw = tuple(row[1 : width + 1])
        resolved, _ = _combo_problem(dict(zip(_COMBO, raw, strict=True)), join)
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


def _episode_ids(ws: Workspace, path: Path, fmt: Format, rows: list[tuple[Any, ...]]) -> set[str]:
    """The episode ids behind some of scan_episodes' per-episode rows (their hash k)."""
    if not rows:
        return set()
    # Rows hold k only as the grouping key; recompute it to find the episodes (error path only).
    con = _connect(ws)
    try:
        found = con.execute(
            f"SELECT DISTINCT episode FROM ({_raw_select(path, fmt, con)}) WHERE "
            f"hash({', '.join(_RAW_KEYS)}, episode) IN (SELECT unnest(?::UBIGINT[]))",
            [[r[-4] for r in rows]],
        ).fetchall()
    finally:
        con.close()
    return {str(json.loads(e[0])) for e in found}


def build_part(ws: Workspace, path: Path, fmt: Format) -> Path:
    """The per-episode table of a (validated) report: raw keys, episode hash, judgment."""
    con = _connect(ws)
    part = ws.state / "tmp" / f"part-{secrets.token_hex(6)}.parquet"
    try:
        con.execute(
            f"COPY (SELECT {', '.join(_COMBO)}, hash(episode) AS h "
            f"FROM ({_raw_select(path, fmt, con)})) TO {_q(part)} (FORMAT parquet)"
        )
    finally:
        con.close()
    return part


def _group_row(group: Group) -> tuple[Any, ...]:
    return tuple(getattr(group, c) for c in KEY_COLUMNS)


def _run_with_progress(con: Any, sql: str, progress: Progress | None) -> list[tuple[Any, ...]]:
    if progress is None:
        return list(con.execute(sql).fetchall())
    done = threading.Event()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(con.execute(sql).fetchall())
        except BaseException as exc:  # handed back to the caller's thread
            outcome.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while not done.wait(0.2):
        fraction = con.query_progress()
        if fraction >= 0:
            progress("reading", fraction / 100)
    worker.join()
    progress("reading", 1.0)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return list(outcome[0])


def _explain_episodes(path: Path, fmt: Format, join: Join, conflicted: set[str]) -> None:
    """Read the file record by record with pydantic and raise naming its first bad records.

    `conflicted`: ids of episodes judged twice differently, whose lines are to be named."""
    problems = Problems(str(path))
    seen: dict[tuple[Any, ...], tuple[int, str, bool]] = {}
    where = "row" if fmt == "parquet" else "line"
    for number, label, episode in _validated(path, fmt, JudgedEpisode, problems):
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
                    f"episode {episode.episode!r} was judged {first[1]}"
                    f"{' (divergent)' if first[2] else ''} at {where} {first[0]} and "
                    f"{episode.verdict.value}{' (divergent)' if episode.divergent else ''} here",
                )
    problems.raise_if_any()


def _validated(
    path: Path, fmt: Format, model: type[R], problems: Problems
) -> Iterator[tuple[int, str, R]]:
    """(number, where, record) of each record that the model accepts; the others are noted."""
    for number, record in _records(path, fmt, problems):
        label = f"{path}:{number}" if fmt != "parquet" else f"{path} row {number}"
        try:
            yield (
                number,
                label,
                (
                    model.model_validate_json(record)
                    if isinstance(record, bytes)
                    else model.model_validate(record)
                ),
            )
        except ValidationError as exc:
            problems.add(label, _validation_message(exc))


def _records(path: Path, fmt: Format, problems: Problems) -> Iterator[tuple[int, Any]]:
    if fmt != "parquet":
        for number, raw in _lines(path, fmt):
            if raw is None:
                problems.add(f"{path}:{number}", f"record longer than {MAX_RECORD_BYTES} bytes")
            else:
                yield number, raw
        return
    import duckdb

    cursor = duckdb.connect().execute(f"SELECT * FROM read_parquet({_q(path)})")
    names = [d[0] for d in cursor.description]
    number = 0
    while batch := cursor.fetchmany(10_000):
        for row in batch:
            number += 1
            yield number, {k: v for k, v in zip(names, row, strict=True) if v is not None}


# -- the aggregated path ------------------------------------------------------------------------
def scan_aggregated(path: Path, fmt: Format, join: Join) -> tuple[int, dict[Group, Tally]]:
    problems = Problems(str(path))
    tallies: dict[Group, Tally] = {}
    records = 0
    for _, label, counts in _validated(path, fmt, AggregatedCounts, problems):
        group = join.of(counts)
        if isinstance(group, str):
            problems.add(label, group)
            continue
        records += 1
        tally = Tally(**{c: getattr(counts, c) for c in COUNT_COLUMNS})
        tallies.setdefault(group, Tally()).add(tally)
    problems.raise_if_any()
    if not records:
        raise ReportRejected(f"{path}: no records: a report needs at least one")
    return records, tallies


# -- earlier reports: conflicts and replacements ------------------------------------------------
def ledger(ws: Workspace) -> list[ReportEntry]:
    path = ws.registry / LEDGER
    if not path.is_file():
        return []
    return list(iter_jsonl_models(path, ReportEntry, ws.rel(path)))


def _overlapping(ws: Workspace, earlier: list[ReportEntry], groups: set[Group]) -> list[str]:
    """Earlier episode reports that judged any of `groups` (from their reviewable counts)."""
    found: list[str] = []
    for entry in earlier:
        if entry.kind != "episodes":
            continue
        counts = ws.registry / "counts" / f"{entry.md5}.csv"
        if any(Group(*_parse_group(row)) in groups for row in _read_counts_rows(counts)):
            found.append(entry.md5)
    return found


def _earlier_judgments(
    ws: Workspace, con: Any, earlier: list[ReportEntry], md5s: list[str]
) -> None:
    """Table `earlier`: the latest earlier judgment of each episode of the given reports."""
    for md5 in md5s:
        _ensure_index(ws, next(e for e in earlier if e.md5 == md5))
    union = " UNION ALL ".join(
        f"SELECT *, {i} AS seq FROM ({canonical_episodes(*_index_paths(ws, m))})"
        for i, m in enumerate(md5s)
    )
    con.execute(
        f"CREATE TEMP TABLE earlier AS SELECT {', '.join(KEY_COLUMNS)}, h, "
        f"arg_max(verdict, seq) AS verdict, arg_max(divergent, seq) AS divergent, "
        f"arg_max(seq, seq) AS seq FROM ({union}) GROUP BY {', '.join(KEY_COLUMNS)}, h"
    )


def _ensure_index(ws: Workspace, entry: ReportEntry) -> None:
    """Build a report's episode table and key map (lost, or a fresh clone) from the report."""
    part, keys = _index_paths(ws, entry.md5)
    if part.is_file() and keys.is_file():
        return
    stored = ws.root / entry.path
    if not stored.is_file():
        raise GovError(
            f"report {entry.path} is not in the workspace, and checking for re-judged episodes "
            f"needs it: fetch it with `dvc pull {entry.path}`"
        )
    from .registry import Registry

    scan = scan_episodes(ws, stored, entry.format, Join(Registry(ws)))
    scan.part = build_part(ws, stored, entry.format)
    _place(scan, entry.md5, ws)


def _index_paths(ws: Workspace, md5: str) -> tuple[Path, Path]:
    """A report's episode table and its key map in the local index."""
    folder = ws.state / "index" / "episodes"
    return folder / f"{md5}.parquet", folder / f"{md5}.keys.csv"


def _place(scan: EpisodeScan, md5: str, ws: Workspace) -> None:
    part, keys = _index_paths(ws, md5)
    part.parent.mkdir(parents=True, exist_ok=True)
    scan.keys.replace(keys)
    if scan.part is not None:
        scan.part.replace(part)


def _discard(scan: EpisodeScan | None) -> None:
    if scan is not None:
        scan.keys.unlink(missing_ok=True)
        if scan.part is not None:
            scan.part.unlink(missing_ok=True)


def _parse_group(row: dict[str, str]) -> tuple[Any, ...]:
    return (
        row["run"],
        int(row["step"]),
        row["environment"],
        int(row["environment_version"]),
        row["environment_hash"],
        row["judge"],
        row["judge_version"],
    )


def _read_counts_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def counts_csv(tallies: dict[Group, Tally]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*KEY_COLUMNS, *COUNT_COLUMNS])
    for group in sorted(tallies):
        tally = tallies[group]
        writer.writerow([*_group_row(group), *(getattr(tally, c) for c in COUNT_COLUMNS)])
    return out.getvalue().encode()


# -- the whole ingest ---------------------------------------------------------------------------
class _Copy(threading.Thread):
    """Copies a report into the workspace while computing its md5 (DVC's content address).

    The copy is flushed to disk only where git flushes the objects it writes (`scm.syncs_objects`):
    a crash of the process can never leave it half-written (it is renamed into place after the
    commit's journal names it), and a power loss is then as survivable as the commit itself."""

    def __init__(self, source: Path, dest: Path, flush: bool) -> None:
        super().__init__(daemon=True)
        self.source, self.dest, self.flush = source, dest, flush
        self.md5 = ""
        self.error: BaseException | None = None
        self.cancelled = threading.Event()

    def run(self) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        buffer = bytearray(4 << 20)  # one buffer, reused: no fresh pages to fault in per chunk
        view = memoryview(buffer)
        try:
            with self.source.open("rb", buffering=0) as src, self.dest.open("wb") as dst:
                while read := src.readinto(buffer):
                    if self.cancelled.is_set():
                        return
                    digest.update(view[:read])
                    dst.write(view[:read])
                dst.flush()
                if self.flush:
                    os.fsync(dst.fileno())
            self.md5 = digest.hexdigest()
        except BaseException as exc:  # reported by the caller
            self.error = exc


@dataclass
class _Staged:
    source: Path
    incoming: Path  # the copy being made in reports/, renamed to `stored` once all is valid
    stored: Path
    entry: ReportEntry
    tallies: dict[Group, Tally]
    scan: EpisodeScan | None


def ingest(
    registry: Registry,
    paths: Sequence[Path],
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> IngestResult:
    """Validate every file whole, then keep them all in one registry change (or none of them)."""
    ws = registry.ws
    if not paths:
        raise GovError("no report files given")
    result = IngestResult()
    staged: list[_Staged] = []
    with ws.change("ingest reports") as change:
        try:
            _stage(registry, paths, staged, result, progress)
            earlier = ledger(ws)
            entries: list[ReportEntry] = []
            for item in staged:
                if item.scan is not None:
                    item.entry, item.tallies = _against_earlier(
                        ws, item, [*earlier, *entries], replace
                    )
                entries.append(item.entry)
                change.expect([item.stored], data=True)
                item.incoming.replace(item.stored)
                counts_file = ws.registry / "counts" / f"{item.entry.md5}.csv"
                change.write(counts_file, counts_csv(item.tallies))
            if not entries:
                return result
            tracked = change.track(
                [item.stored for item in staged],
                link="hardlink",
                known_md5={item.stored: item.entry.md5 for item in staged},
            )
            for item in staged:  # DVC's hash of what it keeps must be the ledger's
                if tracked[item.stored].md5 != item.entry.md5:
                    raise GovError(f"{item.source}: changed while it was being ingested")
            change.write(
                ws.registry / LEDGER,
                b"".join((model_json_line(e) + "\n").encode() for e in [*earlier, *entries]),
            )
            change.summary, change.body = _describe(entries)
            for item in staged:
                e = item.entry
                audit.append(
                    change,
                    "report_replaced" if e.replaced else "report_ingested",
                    subject={"runs": ",".join(sorted({g.run for g in item.tallies}))},
                    outcome=f"{e.counted} judgments in {e.groups} groups",
                    inputs={
                        "reports": [e.md5],
                        "judges": sorted({f"{g.judge}@{g.judge_version}" for g in item.tallies}),
                    },
                    reason=f"replaces {e.replaced} verdicts of {', '.join(e.supersedes)}"
                    if e.replaced
                    else None,
                    refs={"path": e.path, "source": e.source},
                )
            result.ingested = entries
        except BaseException:
            for item in staged:
                _discard(item.scan)
            raise
        finally:
            for item in staged:
                item.incoming.unlink(missing_ok=True)
    result.commit = change.sha
    # The episode tables are a local index, placed once the change is committed; one lost to a
    # crash here is rebuilt from its report when next needed.
    for item in staged:
        if item.scan is not None:
            _place(item.scan, item.entry.md5, ws)
    return result


def _stage(
    registry: Registry,
    paths: Sequence[Path],
    staged: list[_Staged],
    result: IngestResult,
    progress: Progress | None,
) -> None:
    """Validate each file while a copy of it is made (and hashed) in reports/."""
    ws = registry.ws
    join = Join(registry)
    known = {e.md5 for e in ledger(ws)}
    reports_dir = ws.root / "reports"
    reports_dir.mkdir(exist_ok=True)
    flush = scm.syncs_objects(ws.repo)
    for path in paths:
        fmt = sniff(path)
        kind = detect_kind(path, fmt)
        incoming = reports_dir / f".incoming-{secrets.token_hex(6)}"
        before = file_stamp(path)
        copier = _Copy(path, incoming, flush)
        copier.start()
        scan: EpisodeScan | None = None
        try:
            if kind == "episodes":
                scan = scan_episodes(ws, path, fmt, join, progress)
                records, tallies, duplicates = scan.records, scan.tallies, scan.duplicates
            else:
                (records, tallies), duplicates = scan_aggregated(path, fmt, join), 0
        except BaseException:
            copier.cancelled.set()
            copier.join()
            incoming.unlink(missing_ok=True)
            raise
        copier.join()
        if copier.error is not None or file_stamp(path) != before:
            _discard(scan)
            incoming.unlink(missing_ok=True)
            if copier.error is not None:
                raise GovError(f"{path}: cannot be copied into the workspace: {copier.error}")
            # The counts come from one read and the stored copy from another: they must be the
            # same bytes, or a decision would name a report that does not hold its evidence.
            raise GovError(
                f"{path}: changed while it was being ingested; nothing stored "
                "(ingest it once whatever writes it has finished)"
            )
        if copier.md5 in known or any(s.entry.md5 == copier.md5 for s in staged):
            result.unchanged.append((str(path), copier.md5))
            incoming.unlink()
            _discard(scan)
            continue
        stored = reports_dir / f"{copier.md5}.{fmt}"
        entry = ReportEntry(
            md5=copier.md5,
            size=path.stat().st_size,
            path=ws.rel(stored),
            source=path.name,
            format=fmt,
            kind=kind,
            records=records,
            counted=sum(t.n for t in tallies.values()),
            duplicates=duplicates,
            groups=len(tallies),
            ingested=utc_now(),
        )
        staged.append(_Staged(path, incoming, stored, entry, tallies, scan))


def _describe(entries: list[ReportEntry]) -> tuple[str, str]:
    """The commit's summary and body for an ingest."""
    replaced = sum(e.replaced for e in entries)
    summary = (
        f"ingest {len(entries)} report{'s' if len(entries) != 1 else ''} "
        f"({sum(e.counted for e in entries)} judgments"
        + (f", {replaced} replacing earlier verdicts" if replaced else "")
        + ")"
    )
    body = "\n".join(
        f"{e.path} from {e.source}: {e.records} records, {e.groups} groups"
        + (f", replaces {e.replaced} verdicts of {', '.join(e.supersedes)}" if e.replaced else "")
        for e in entries
    )
    return summary, body


def _against_earlier(
    ws: Workspace, item: _Staged, earlier: list[ReportEntry], replace: bool
) -> tuple[ReportEntry, dict[Group, Tally]]:
    """Leave out episodes judged the same before; refuse (or, with replace, swap) changed ones."""
    entry, tallies, scan = item.entry, item.tallies, item.scan
    assert scan is not None
    md5s = _overlapping(ws, earlier, set(tallies))
    if not md5s:
        return entry, tallies
    scan.part = build_part(ws, item.source, entry.format)
    con = _connect(ws)
    try:
        _earlier_judgments(ws, con, earlier, md5s)
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
            f"{first[2]}: {first[9]} before, {first[7]} now); pass --replace to record the new "
            "verdicts in their place"
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
