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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import GovError, NotFound, ReportRejected
from .models import utc_now
from .registry import Registry
from .reports import AggregatedCounts, JudgedEpisode
from .storage import iter_jsonl_models, model_json_line
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


_JSON_COLUMNS = (
    "{schema_version: 'JSON', run: 'JSON', step: 'JSON', environment: 'JSON', "
    "environment_version: 'JSON', judge: 'JSON', judge_version: 'JSON', episode: 'JSON', "
    "verdict: 'JSON', divergent: 'JSON', confidence: 'JSON', evidence: 'JSON', note: 'JSON'}"
)
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

# A row passes only if each per-row field would pass the pydantic model too (see test_ingest's
# property test): episode a non-empty string or an integer, confidence a number in [0, 1],
# evidence a list of {start, end, quote} with 0 <= start < end, note a string.
_ROW_PROBLEM = r"""
CASE
  WHEN episode IS NULL THEN 'episode'
  WHEN NOT (regexp_full_match(episode, '"(.|\n)+"')
            OR regexp_full_match(episode, '-?(0|[1-9][0-9]*)')) THEN 'episode'
  WHEN confidence IS NOT NULL AND NOT (
      regexp_full_match(confidence, '-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?')
      AND TRY_CAST(confidence AS DOUBLE) BETWEEN 0 AND 1) THEN 'confidence'
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
    records: int
    part: Path
    tallies: dict[Group, Tally]
    duplicates: int


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


def scan_episodes(
    ws: Workspace, path: Path, fmt: Format, join: Join, progress: Progress | None = None
) -> EpisodeScan:
    """Validate and count an episode-level report; raise ReportRejected naming its bad records."""
    import duckdb

    con = _connect(ws)
    index = ws.state / "index" / "episodes"
    index.mkdir(parents=True, exist_ok=True)
    raw_part = ws.state / "tmp" / f"raw-{secrets.token_hex(6)}.parquet"
    part = ws.state / "tmp" / f"part-{secrets.token_hex(6)}.parquet"
    try:
        try:
            _run_with_progress(
                con,
                f"COPY (SELECT *, hash(episode) AS h, {_ROW_PROBLEM} AS problem "
                f"FROM ({_raw_select(path, fmt, con)})) TO {_q(raw_part)} "
                "(FORMAT parquet, COMPRESSION zstd)",
                progress,
            )
        except duckdb.Error as exc:
            _explain_episodes(path, fmt, join, set())  # names the bad lines
            detail = " ".join(str(exc).split())[:200]
            raise ReportRejected(
                f"{path}: cannot be read as {fmt} episode records: {detail}"
            ) from None
        src = f"read_parquet({_q(raw_part)})"
        records, bad_rows = con.execute(f"SELECT count(*), count(problem) FROM {src}").fetchone()
        if records == 0:
            raise ReportRejected(f"{path}: no records: a report needs at least one")
        combos = con.execute(
            f"SELECT {', '.join(_COMBO)}, count(*) FROM {src} GROUP BY ALL"
        ).fetchall()
        mapping: list[tuple[Any, ...]] = []
        bad_combos = False
        for row in combos:
            resolved, _ = _combo_problem(dict(zip(_COMBO, row[:-1], strict=True)), join)
            if resolved is None:
                bad_combos = True
                continue
            group, verdict, divergent = resolved
            mapping.append((*row[:-1], *_group_row(group), verdict, divergent))
        conflicts = con.execute(
            f"SELECT count(*) FILTER (d > 1), coalesce(sum(c - 1) FILTER (d = 1), 0) FROM ("
            f"SELECT count(*) c, count(DISTINCT (verdict, divergent)) d FROM {src} "
            f"GROUP BY {', '.join(_RAW_KEYS)}, h HAVING count(*) > 1)"
        ).fetchone()
        if bad_rows or bad_combos or conflicts[0]:
            dup_hashes = {
                r[0]
                for r in con.execute(
                    f"SELECT h FROM {src} GROUP BY {', '.join(_RAW_KEYS)}, h "
                    "HAVING count(DISTINCT (verdict, divergent)) > 1 LIMIT 1000"
                ).fetchall()
            }
            _explain_episodes(path, fmt, join, dup_hashes)
            # The record-by-record read found nothing: the two readers disagree, which is a bug.
            raise RuntimeError(f"{path}: the fast check refused records the model accepts")
        con.execute(
            "CREATE TEMP TABLE keymap ("
            + ", ".join(f"raw_{c} VARCHAR" for c in _COMBO)
            + ", run VARCHAR, step BIGINT, environment VARCHAR, environment_version INTEGER, "
            "environment_hash VARCHAR, judge VARCHAR, judge_version VARCHAR, verdict VARCHAR, "
            "divergent BOOLEAN)"
        )
        con.executemany(
            f"INSERT INTO keymap VALUES ({', '.join('?' * (len(_COMBO) + 9))})", mapping
        )
        join_on = " AND ".join(f"p.{c} IS NOT DISTINCT FROM k.raw_{c}" for c in _COMBO)
        con.execute(
            f"COPY (SELECT DISTINCT k.run, k.step, k.environment, k.environment_version, "
            f"k.environment_hash, k.judge, k.judge_version, p.h, k.verdict, k.divergent "
            f"FROM {src} p JOIN keymap k ON {join_on}) TO {_q(part)} "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        duplicates = int(conflicts[1])
        tallies: dict[Group, Tally] = {}
        source = src if not duplicates else f"read_parquet({_q(part)})"
        if duplicates:
            rows = con.execute(
                f"SELECT {', '.join(KEY_COLUMNS)}, verdict, divergent, count(*) FROM {source} "
                "GROUP BY ALL"
            ).fetchall()
            for row in rows:
                tallies.setdefault(Group(*row[:7]), Tally()).add_verdict(row[7], row[8], row[9])
        else:
            for row in mapping:
                count = next(c[-1] for c in combos if c[:-1] == row[: len(_COMBO)])
                group = Group(*row[len(_COMBO) : len(_COMBO) + 7])
                tallies.setdefault(group, Tally()).add_verdict(row[-2], row[-1], count)
        return EpisodeScan(records=records, part=part, tallies=tallies, duplicates=duplicates)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        con.close()
        raw_part.unlink(missing_ok=True)


def _group_row(group: Group) -> tuple[Any, ...]:
    return tuple(getattr(group, c) for c in KEY_COLUMNS)


def _run_with_progress(con: Any, sql: str, progress: Progress | None) -> None:
    if progress is None:
        con.execute(sql)
        return
    done = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            con.execute(sql)
        except BaseException as exc:  # handed back to the caller's thread
            failure.append(exc)
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
    if failure:
        raise failure[0]


def _explain_episodes(path: Path, fmt: Format, join: Join, dup_hashes: set[int]) -> None:
    """Read the file record by record with pydantic and raise naming its first bad records."""
    problems = Problems(str(path))
    seen: dict[tuple[Any, ...], tuple[int, str, bool]] = {}
    where = "row" if fmt == "parquet" else "line"
    for number, record in _records(path, fmt, problems):
        try:
            episode = (
                JudgedEpisode.model_validate_json(record)
                if isinstance(record, bytes)
                else JudgedEpisode.model_validate(record)
            )
        except ValidationError as exc:
            problems.add(
                f"{path}:{number}" if where == "line" else f"{path} row {number}",
                _validation_message(exc),
            )
            continue
        group = join.group(
            episode.run,
            episode.step,
            episode.environment,
            episode.environment_version,
            episode.judge,
            episode.judge_version,
        )
        label = f"{path}:{number}" if where == "line" else f"{path} row {number}"
        if isinstance(group, str):
            problems.add(label, group)
            continue
        key = (group, str(episode.episode))
        judged = (number, episode.verdict.value, episode.divergent)
        if dup_hashes or key in seen:
            first = seen.setdefault(key, judged)
            if first[1:] != judged[1:]:
                problems.add(
                    label,
                    f"episode {episode.episode!r} was judged {first[1]}"
                    f"{' (divergent)' if first[2] else ''} at {where} {first[0]} and "
                    f"{episode.verdict.value}{' (divergent)' if episode.divergent else ''} here",
                )
    problems.raise_if_any()


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
    for number, record in _records(path, fmt, problems):
        label = f"{path}:{number}" if fmt != "parquet" else f"{path} row {number}"
        try:
            counts = (
                AggregatedCounts.model_validate_json(record)
                if isinstance(record, bytes)
                else AggregatedCounts.model_validate(record)
            )
        except ValidationError as exc:
            problems.add(label, _validation_message(exc))
            continue
        group = join.group(
            counts.run,
            counts.step,
            counts.environment,
            counts.environment_version,
            counts.judge,
            counts.judge_version,
        )
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


def _earlier_judgments(
    ws: Workspace, con: Any, earlier: list[ReportEntry], groups: set[Group]
) -> tuple[str, list[str]]:
    """A SQL table of the latest earlier judgment of each episode in `groups`, and its sources."""
    overlapping: list[str] = []
    for entry in earlier:
        if entry.kind != "episodes":
            continue
        counts = ws.registry / "counts" / f"{entry.md5}.csv"
        if any(Group(*_parse_group(row)) in groups for row in _read_counts_rows(counts)):
            overlapping.append(entry.md5)
    missing = [m for m in overlapping if not _part_path(ws, m).is_file()]
    if missing:
        raise GovError(
            f"the episode index of report {missing[0]} is missing from .gov/index: "
            "re-ingesting needs it to detect re-judged episodes; run `gov index rebuild`"
        )
    if not overlapping:
        return "", []
    union = " UNION ALL ".join(
        f"SELECT *, {i} AS seq FROM read_parquet({_q(_part_path(ws, m))})"
        for i, m in enumerate(overlapping)
    )
    con.execute(
        f"CREATE TEMP TABLE earlier AS SELECT {', '.join(KEY_COLUMNS)}, h, "
        f"arg_max(verdict, seq) AS verdict, arg_max(divergent, seq) AS divergent, "
        f"arg_max(seq, seq) AS seq FROM ({union}) GROUP BY {', '.join(KEY_COLUMNS)}, h"
    )
    return "earlier", overlapping


def _part_path(ws: Workspace, md5: str) -> Path:
    return ws.state / "index" / "episodes" / f"{md5}.parquet"


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
    """Copies a report into the workspace while computing its md5 (DVC's content address)."""

    def __init__(self, source: Path, dest: Path) -> None:
        super().__init__(daemon=True)
        self.source, self.dest = source, dest
        self.md5 = ""
        self.error: BaseException | None = None
        self.cancelled = threading.Event()

    def run(self) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with self.source.open("rb") as src, self.dest.open("wb") as dst:
                while chunk := src.read(16 << 20):
                    if self.cancelled.is_set():
                        return
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            self.md5 = digest.hexdigest()
        except BaseException as exc:  # reported by the caller
            self.error = exc


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
    with ws.change("ingest reports") as change:
        join = Join(registry)
        earlier = ledger(ws)
        known = {e.md5: e for e in earlier}
        reports_dir = ws.root / "reports"
        reports_dir.mkdir(exist_ok=True)
        staged: list[tuple[Path, Path, ReportEntry, dict[Group, Tally], Path | None]] = []
        try:
            for path in paths:
                fmt = sniff(path)
                kind = detect_kind(path, fmt)
                incoming = reports_dir / f".incoming-{secrets.token_hex(6)}"
                copier = _Copy(path, incoming)
                copier.start()
                try:
                    part: Path | None = None
                    duplicates = 0
                    if kind == "episodes":
                        scan = scan_episodes(ws, path, fmt, join, progress)
                        records, tallies, part = scan.records, scan.tallies, scan.part
                        duplicates = scan.duplicates
                    else:
                        records, tallies = scan_aggregated(path, fmt, join)
                except BaseException:
                    copier.cancelled.set()
                    copier.join()
                    incoming.unlink(missing_ok=True)
                    raise
                copier.join()
                if copier.error is not None:
                    raise GovError(f"{path}: cannot be copied into the workspace: {copier.error}")
                md5 = copier.md5
                if md5 in known or any(s[2].md5 == md5 for s in staged):
                    result.unchanged.append((str(path), md5))
                    incoming.unlink()
                    if part is not None:
                        part.unlink(missing_ok=True)
                    continue
                suffix = {"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "parquet": ".parquet"}[fmt]
                stored = reports_dir / f"{md5}{suffix}"
                entry = ReportEntry(
                    md5=md5,
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
                staged.append((incoming, stored, entry, tallies, part))

            entries: list[ReportEntry] = []
            for incoming, stored, entry, tallies, part in staged:
                if part is not None:
                    entry, tallies = _against_earlier(
                        ws, entry, tallies, part, [*earlier, *entries], replace
                    )
                entries.append(entry)
                staged_tallies = tallies
                change.expect([stored], data=True)
                incoming.replace(stored)
                change.write(
                    ws.registry / "counts" / f"{entry.md5}.csv", counts_csv(staged_tallies)
                )
            if not entries:
                return result
            change.track([ws.root / e.path for e in entries], link="hardlink")
            ledger_text = b"".join(
                (model_json_line(e) + "\n").encode() for e in [*earlier, *entries]
            )
            change.write(ws.registry / LEDGER, ledger_text)
            for (_, _, _, _, part), entry in zip(staged, entries, strict=True):
                if part is not None:
                    part.replace(_part_path(ws, entry.md5))
            replaced = sum(e.replaced for e in entries)
            change.summary = (
                f"ingest {len(entries)} report{'s' if len(entries) != 1 else ''} "
                f"({sum(e.counted for e in entries)} judgments"
                + (f", {replaced} replacing earlier verdicts" if replaced else "")
                + ")"
            )
            change.body = "\n".join(
                f"{e.path} from {e.source}: {e.records} records, {e.groups} groups"
                + (
                    f", replaces {e.replaced} verdicts of {', '.join(e.supersedes)}"
                    if e.replaced
                    else ""
                )
                for e in entries
            )
            result.ingested = entries
        finally:
            for incoming, _, _, _, part in staged:
                incoming.unlink(missing_ok=True)
                if part is not None and part.parent.name == "tmp":
                    part.unlink(missing_ok=True)
    result.commit = change.sha
    return result


def _against_earlier(
    ws: Workspace,
    entry: ReportEntry,
    tallies: dict[Group, Tally],
    part: Path,
    earlier: list[ReportEntry],
    replace: bool,
) -> tuple[ReportEntry, dict[Group, Tally]]:
    """Leave out episodes judged the same before; refuse (or, with replace, swap) changed ones."""
    import duckdb

    con = duckdb.connect()
    try:
        table, sources = _earlier_judgments(ws, con, earlier, set(tallies))
        if not table:
            return entry, tallies
        keys = " AND ".join(f"n.{c} = e.{c}" for c in (*KEY_COLUMNS, "h"))
        rows = con.execute(
            f"SELECT {', '.join('n.' + c for c in KEY_COLUMNS)}, n.verdict, n.divergent, "
            f"e.verdict, e.divergent, e.seq FROM read_parquet({_q(part)}) n JOIN {table} e "
            f"ON {keys}"
        ).fetchall()
    finally:
        con.close()
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
