"""The count store: what ingest keeps of the judges' reports, and the one way to read it back.

It owns the ledger of ingested reports (`registry/reports.jsonl`), the counts each report adds
per (run, checkpoint, environment version, judge version) (`registry/counts/<md5>.csv`, plain
CSV to review in a pull request), and their sum as a columnar cache
(`.gov/index/counts.parquet`, rebuilt whenever the ledger changes). Readers get typed rows
(`CountRow`); nobody else opens these files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import GovError
from .metrics import COUNT_COLUMNS, CountKey, CountRow
from .stats.series import Table
from .storage import (
    atomic_write,
    duckdb_connect,
    iter_jsonl_models,
    model_json_line,
    seal,
    unseal,
    validate_jsonl_line,
)
from .workspace import Change, Workspace

LEDGER = "reports.jsonl"
KEY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CountKey))
Format = Literal["jsonl", "jsonl.gz", "parquet"]
Kind = Literal["episodes", "aggregated"]


class ScoreEdit(BaseModel):
    """A score changed after its eval ran (Inspect's edit history): to what, by whom, why."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    episode: str
    value: str  # the new value, as JSON
    author: str
    at: str | None = None
    reason: str | None = None


class InspectSource(BaseModel):
    """The Inspect AI eval log a report was read from: the stored report is its conversion, and
    this names the log exactly (its md5), the scorer that judged and the edits made to scores."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    log: str
    log_md5: str
    eval_id: str
    task: str
    scorer: str
    grader: str
    edited: list[ScoreEdit] = []


class ReportEntry(BaseModel):
    """One ingested report, as the ledger `registry/reports.jsonl` records it."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

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
    unjudged: int = 0  # episodes its judge gave no verdict (from gov judge run's .meta.json)
    inspect: InspectSource | None = None  # the Inspect AI eval log it was read from
    # the sha256 of its counts file (registry/counts/<md5>.csv) as ingest wrote it: a count
    # changed by hand afterwards is refused, not read (ledgers before this have none)
    counts_sha256: str | None = None
    # counts of a Parquet lake (gov aggregate): its manifest of every file counted, in git
    lake: str | None = None


Group = CountKey  # the key of a row of counts, as ingest groups a report's records


@dataclass
class Tally:
    """Verdict counts being added up (one group's, in one report)."""

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


# -- the ledger -------------------------------------------------------------------------------
def ledger_path(ws: Workspace) -> Path:
    return ws.registry / LEDGER


def ledger(ws: Workspace) -> list[ReportEntry]:
    path = ledger_path(ws)
    if not path.is_file():
        return []
    return list(iter_jsonl_models(path, ReportEntry, ws.rel(path)))


def check_against_trail(ws: Workspace) -> None:
    """The ledger names exactly the reports the audit trail recorded as ingested (see
    audit.check_ledger); a workspace without a trail yet has nothing to hold it to."""
    from . import audit

    if not ws.audit.is_dir():
        return
    path = ledger_path(ws)
    if not path.is_file():
        audit.check_ledger(ws, [], ws.rel(path))
        return
    # the md5s alone, as gov writes them (a fifth of the cost of reading every entry whole); a
    # line of another shape is read whole, which names what is wrong with it
    md5s = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        found = _MD5_FIELD.match(line)
        if found is not None:
            md5s.append(found.group(1).decode())
        elif line.strip():
            md5s.append(validate_jsonl_line(line, number, ReportEntry, ws.rel(path)).md5)
    audit.check_ledger(ws, md5s, ws.rel(path))


_MD5_FIELD = re.compile(rb'\{"schema_version":1,"md5":"([0-9a-f]{32})",')


def write_ledger(change: Change, entries: Sequence[ReportEntry]) -> None:
    text = b"".join((model_json_line(e) + "\n").encode() for e in entries)
    change.write(ledger_path(change.ws), text)


# -- one report's counts ----------------------------------------------------------------------
def _counts_file(ws: Workspace, md5: str) -> Path:
    return ws.registry / "counts" / f"{md5}.csv"


def counts_bytes(tallies: dict[Group, Tally]) -> bytes:
    """A report's counts as its CSV in the registry records them: the same counts, the same
    bytes, whatever the report's own encoding."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*KEY_COLUMNS, *COUNT_COLUMNS])
    for group in sorted(tallies):
        tally = tallies[group]
        cells = [getattr(group, c) for c in KEY_COLUMNS]
        writer.writerow([*cells, *(getattr(tally, c) for c in COUNT_COLUMNS)])
    return out.getvalue().encode()


def write_counts(change: Change, entry: ReportEntry, tallies: dict[Group, Tally]) -> ReportEntry:
    """Write a report's counts file; its ledger entry, with the file's sha256."""
    data = counts_bytes(tallies)
    change.write(_counts_file(change.ws, entry.md5), data)
    return entry.model_copy(update={"counts_sha256": hashlib.sha256(data).hexdigest()})


def twin_of(
    ws: Workspace, tallies: dict[Group, Tally], earlier: Sequence[ReportEntry]
) -> ReportEntry | None:
    """An earlier aggregated report of exactly these counts (None: none). Counts carry no
    episode ids to tell a re-count by: the same counts again, in other bytes (line endings,
    compression, another field order), would be added to themselves."""
    mine = counts_bytes(tallies)
    total = sum(t.n for t in tallies.values())
    for entry in earlier:  # the ledger's totals rule out nearly all without reading their counts
        if entry.kind != "aggregated" or entry.counted != total or entry.groups != len(tallies):
            continue
        with contextlib.suppress(OSError):
            if _counts_file(ws, entry.md5).read_bytes() == mine:
                return entry
    return None


def _unjudged_file(ws: Workspace, md5: str) -> Path:
    return ws.registry / "unjudged" / f"{md5}.csv"  # beside counts/, which is read whole


def write_unjudged(change: Change, md5: str, cells: dict[Group, tuple[int, int]]) -> None:
    """Per group: the episodes put to the judge, and those it gave no verdict."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*KEY_COLUMNS, "episodes", "unjudged"])
    for group in sorted(cells):
        writer.writerow([*(getattr(group, c) for c in KEY_COLUMNS), *cells[group]])
    change.write(_unjudged_file(change.ws, md5), out.getvalue().encode())


def unjudged(ws: Workspace) -> dict[tuple[str, int, str, int, str, str], int]:
    """Episodes without a verdict, per (run, step, environment, version, judge, judge version),
    over every report whose judge run said so."""
    found: dict[tuple[str, int, str, int, str, str], int] = {}
    for entry in ledger(ws):
        if not entry.unjudged:
            continue
        with _unjudged_file(ws, entry.md5).open(newline="") as handle:
            for row in csv.DictReader(handle):
                key = (
                    row["run"],
                    int(row["step"]),
                    row["environment"],
                    int(row["environment_version"]),
                    row["judge"],
                    row["judge_version"],
                )
                found[key] = found.get(key, 0) + int(row["unjudged"])
    return found


def row_of(group: Group, tally: Tally) -> CountRow:
    """A row of counts: a group's key and its tally."""
    return CountRow(
        *(getattr(group, c) for c in KEY_COLUMNS), *(getattr(tally, c) for c in COUNT_COLUMNS)
    )


def report_rows(ws: Workspace, md5: str) -> list[CountRow]:
    """The counts one report added, as its CSV in the registry records them (a file that is
    not a counts table is refused, naming its line)."""
    path = _counts_file(ws, md5)
    found: list[CountRow] = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                typed = _typed(row)
            except (KeyError, ValueError, TypeError) as exc:
                raise GovError(
                    f"{ws.rel(path)}:{len(found) + 2}: not a row of "
                    f"counts ({type(exc).__name__}: {exc}); restore the file from git"
                ) from None
            if typed.n != typed.none + typed.rejected + typed.rationalized + typed.overt:
                raise GovError(
                    f"{ws.rel(path)}:{len(found) + 2}: n = {typed.n} is not the sum of its "
                    "verdicts' counts; restore the file from git"
                )
            found.append(typed)
    return found


def checked_rows(ws: Workspace, entry: ReportEntry) -> list[CountRow]:
    """A ledger entry's counts, refused unless they hold what the ledger says it counted."""
    found = report_rows(ws, entry.md5)
    _agrees(ws, entry, len(found), sum(r.n for r in found))
    return found


def _agrees(ws: Workspace, entry: ReportEntry, groups: int, n: int) -> None:
    """A counts file is the one its ledger entry recorded (its sha256, kept since this was
    checked), and holds the groups and judgments the entry records (a replace takes the
    verdicts it replaces off again, so it adds that many fewer)."""
    path = _counts_file(ws, entry.md5)
    recorded = entry.counts_sha256
    if recorded is not None and hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
        raise GovError(
            f"{ws.rel(path)}: not the counts the ledger ({ws.rel(ledger_path(ws))}) recorded "
            f"for {entry.source} (its sha256 differs): the counts were changed after ingest; "
            "restore the file from git"
        )
    if (groups, n) != (entry.groups, entry.counted - entry.replaced):
        raise GovError(
            f"{ws.rel(path)}: holds {n} judgments in {groups} groups, "
            f"where the ledger ({ws.rel(ledger_path(ws))}) records "
            f"{entry.counted - entry.replaced} in {entry.groups} for {entry.source}: the counts "
            "were changed after ingest; restore the file from git"
        )


def _typed(row: dict[str, str]) -> CountRow:
    return CountRow(
        row["run"],
        int(row["step"]),
        row["environment"],
        int(row["environment_version"]),
        row["environment_hash"],
        row["judge"],
        row["judge_version"],
        *(int(row[c]) for c in COUNT_COLUMNS),
    )


def group_of(row: CountRow) -> Group:
    return Group(*(getattr(row, c) for c in KEY_COLUMNS))


# JSON allows space on either side of the colon: a line written by hand may have it.
_MD5 = re.compile(rb'"md5"\s*:\s*"([0-9a-f]{32})"')


def _named(ledger_bytes: bytes) -> list[str]:
    """The md5 of every report in these ledger bytes (the counts files they name)."""
    return [m.decode() for m in _MD5.findall(ledger_bytes)]


def _stamp(ws: Workspace, md5s: Iterable[str]) -> dict[str, list[int]]:
    """Each counts file's size and change times, as git's index records a file's: a committed
    edit (a checkout, a merge, a hand edit) changes them, and a cache built before it is not
    read. A missing file is refused here, whatever a cache holds."""
    stamp = {}
    for md5 in md5s:
        path = _counts_file(ws, md5)
        try:
            st = path.stat()
        except OSError:
            raise GovError(
                f"{ws.rel(path)}: missing: the ledger ({ws.rel(ledger_path(ws))}) lists report "
                f"{md5} but its counts are gone (restore the file from git)"
            ) from None
        stamp[md5] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    return stamp


def _ledger_mark(ws: Workspace, ledger_bytes: bytes) -> dict[str, Any]:
    """What a cache built from the ledger records of it: its size and content hash, and the
    stamp of the counts files it names."""
    return {
        "ledger_size": len(ledger_bytes),
        "ledger_sha256": hashlib.sha256(ledger_bytes).hexdigest(),
        "counts_stamp": _stamp(ws, _named(ledger_bytes)),
    }


def _covered(ws: Workspace, meta: dict[str, Any], ledger_bytes: bytes) -> int | None:
    """How many bytes of the ledger a cache with this record covers, if they still begin the
    ledger (it only grows as reports come in) and their counts files are as they were; None:
    it was built from another ledger, or from other counts."""
    size, digest = int(meta["ledger_size"]), str(meta["ledger_sha256"])
    if size > len(ledger_bytes) or hashlib.sha256(ledger_bytes[:size]).hexdigest() != digest:
        return None
    if meta.get("counts_stamp") != _stamp(ws, _named(ledger_bytes[:size])):
        return None
    return size


def reports_for(ws: Workspace, checkpoints: set[tuple[str, int]]) -> list[str]:
    """The md5s of the reports that hold counts for any of these (run, step) checkpoints."""
    if not checkpoints:
        return []
    return sorted(md5 for md5, held in _sources(ws).items() if held & checkpoints)


def _sources(ws: Workspace) -> dict[str, set[tuple[str, int]]]:
    """Per report (md5), the checkpoints it holds counts for. Kept in the local index with the
    ledger bytes it was built from, and extended by the new reports' counts files as the ledger
    grows (as the counts table is); any other ledger rebuilds it from every counts file."""
    import json

    ledger_file = ledger_path(ws)
    if not ledger_file.is_file():
        return {}
    data = ledger_file.read_bytes()
    path = ws.local("index", "sources.json")
    found: dict[str, set[tuple[str, int]]] | None = None
    covered: int | None = None
    try:
        meta = json.loads(unseal(path.read_bytes()) or b"null")
        covered = _covered(ws, meta, data)
        if covered is not None:
            found = {
                str(md5): {(str(run), int(step)) for run, step in held}
                for md5, held in meta["sources"].items()
            }
            if covered == len(data):
                return found
    except (OSError, ValueError, KeyError, TypeError):
        found = None
    if found is None:
        found = {e.md5: set() for e in ledger(ws)}
        if found:
            with duckdb_connect() as con:
                rows = con.execute(
                    f"SELECT DISTINCT filename, run, step FROM read_csv({_files(ws, found)}, "
                    f"header=true, filename=true, columns={_csv_columns()})"
                ).fetchall()
            for name, run, step in rows:
                found[Path(name).stem].add((str(run), int(step)))
    else:
        for entry in _added_entries(ws, data, covered or 0):
            found[entry.md5] = {(r.run, r.step) for r in report_rows(ws, entry.md5)}
    meta = {**_ledger_mark(ws, data), "sources": {md5: sorted(held) for md5, held in found.items()}}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, seal(json.dumps(meta).encode()))
    return found


def _files(ws: Workspace, md5s: Iterable[str]) -> str:
    """The counts files of these reports, as a DuckDB list of paths."""
    return "[" + ", ".join(_sql_text(str(_counts_file(ws, m))) for m in md5s) + "]"


def _check_sums(ws: Workspace, entries: Sequence[ReportEntry], con: Any) -> None:
    """Every counts file (in table c) agrees with its ledger entry, and each row's n with its
    verdicts' counts."""
    verdicts = " + ".join(c for c in COUNT_COLUMNS if c not in ("n", "divergent"))
    blank = " OR ".join(f"{f.name} IS NULL" for f in fields(CountRow))  # an empty cell
    found = {
        Path(name).stem: (int(groups), int(n or 0), int(bad))
        for name, groups, n, bad in con.execute(
            f"SELECT filename, count(*), sum(n), count(*) FILTER (n <> {verdicts} OR {blank}) "
            "FROM c GROUP BY filename"
        ).fetchall()
    }
    for entry in entries:
        groups, n, bad = found.get(entry.md5, (0, 0, 0))
        if bad:
            checked_rows(ws, entry)  # names the line
        _agrees(ws, entry, groups, n)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _csv_columns() -> str:
    """DuckDB's column types for a counts CSV."""
    types = {f.name: ("BIGINT" if f.type in ("int", int) else "VARCHAR") for f in fields(CountRow)}
    types["environment_version"] = "INTEGER"
    return "{" + ", ".join(f"{name}: '{kind}'" for name, kind in types.items()) + "}"


def episode_reports_for(
    ws: Workspace, entries: Iterable[ReportEntry], groups: set[Group]
) -> list[str]:
    """The md5s of the episode-level reports among `entries` that judged any of `groups`."""
    return [
        e.md5
        for e in entries
        if e.kind == "episodes" and any(group_of(r) in groups for r in report_rows(ws, e.md5))
    ]


# -- the summed counts ------------------------------------------------------------------------
def _cache_table(ws: Workspace) -> Path | None:
    """The summed counts as Parquet, rebuilt when the ledger changed; None before any report.

    Two processes may rebuild it at once: each writes its own temporary file and renames it
    into place, so a reader only ever sees a whole table."""
    import json

    ledger_file = ledger_path(ws)
    if not ledger_file.is_file():
        return None
    data = ledger_file.read_bytes()
    stamp = json.dumps(_stamp(ws, _named(data)), sort_keys=True).encode()
    key = hashlib.sha256(data + stamp).hexdigest()
    table = ws.local("index", f"counts.{key[:16]}.parquet")
    vouch = table.with_name(f"{table.name}.sealed")  # the table's digest: see storage.seal
    with contextlib.suppress(OSError):
        if unseal(vouch.read_bytes(), table.read_bytes()) == b"":
            return table
    entries = ledger(ws)
    if not entries:
        return None
    table.parent.mkdir(parents=True, exist_ok=True)
    tmp = table.with_name(f".counts-{secrets.token_hex(6)}.tmp.parquet")
    keys = ", ".join(KEY_COLUMNS)
    sums = ", ".join(f"sum({c})::BIGINT AS {c}" for c in COUNT_COLUMNS)
    import duckdb

    try:
        with duckdb_connect() as con:
            try:
                files = _files(ws, (e.md5 for e in entries))
                con.execute(
                    f"CREATE TEMP TABLE c AS SELECT * FROM read_csv({files}, header=true, "
                    f"filename=true, columns={_csv_columns()})"
                )
            except duckdb.Error:
                for entry in entries:  # name the file and the line
                    report_rows(ws, entry.md5)
                raise
            _check_sums(ws, entries, con)
            con.execute(
                f"COPY (SELECT {keys}, {sums} FROM c GROUP BY ALL ORDER BY {keys}) TO '{tmp}' "
                "(FORMAT parquet)"
            )
        atomic_write(vouch, seal(b"", tmp.read_bytes()))
        tmp.replace(table)
    finally:
        tmp.unlink(missing_ok=True)
    for old in table.parent.glob("counts.*.parquet*"):  # earlier ledgers' tables
        if old not in (table, vouch):
            old.unlink(missing_ok=True)
    return table


def rows(ws: Workspace) -> list[CountRow]:
    """Every ingested count, summed per run, checkpoint, environment version, judge version."""
    table = _cache_table(ws)
    if table is None:
        return []
    import duckdb

    with duckdb_connect() as con:
        try:
            found = con.execute(f"SELECT * FROM read_parquet('{table}')").fetchall()
        except duckdb.IOException:  # replaced by a newer ledger's table as we read: rebuild
            table = _cache_table(ws)
            assert table is not None
            found = con.execute(f"SELECT * FROM read_parquet('{table}')").fetchall()
    return [CountRow(*row) for row in found]


def table(ws: Workspace) -> Table:
    """Every ingested count as columns: what `rows` holds, without an object per row (a long,
    wide run has hundreds of thousands).

    Kept in the local index (.gov/index/table.*) with the ledger bytes it was built from: the
    ledger only grows as reports come in, so a table built from a prefix of it is extended by
    the new reports' counts files (a few hundred rows, appended to the column files), not
    rebuilt from all of them; any other ledger (a replace, a checkout of an older commit)
    rebuilds it. A (checkpoint, series) may then have several rows: every reader sums them."""
    ledger_file = ledger_path(ws)
    if not ledger_file.is_file():
        return Table.of([])
    data = ledger_file.read_bytes()
    cached = _load_table(ws, data)
    if cached is not None:
        found, covered = cached
        if covered == len(data):
            return found
        fresh = _extend(ws, found, _added_entries(ws, data, covered))
        _save_table(ws, fresh, data, appended_after=len(found.checkpoint))
    else:
        fresh = _full_table(ws)
        _save_table(ws, fresh, data)
    return fresh


# The cached table: one file of little-endian int64s per column (rows are only ever appended),
# and a record of the ledger bytes, the row count, the keys and the checkpoints they hold.
_TABLE_META = "table.json"
_TABLE_COLUMNS = ("checkpoint", "key", *COUNT_COLUMNS)
_INT = "<i8"


def _column_file(ws: Workspace, column: str) -> Path:
    return ws.local("index", f"table.{column}.i64")


def _load_table(ws: Workspace, ledger_bytes: bytes) -> tuple[Table, int] | None:
    """The cached table and how many ledger bytes it covers, if those bytes begin the ledger
    now; else None."""
    import json

    import numpy as np

    try:
        meta = json.loads(ws.local("index", _TABLE_META).read_bytes())
        size = _covered(ws, meta, ledger_bytes)
        if size is None or meta.get("format") != 2:
            return None
        rows = int(meta["rows"])
        arrays = {
            c: np.fromfile(_column_file(ws, c), dtype=_INT, count=rows) for c in _TABLE_COLUMNS
        }
        keys = [(str(e), int(v), str(j), str(jv)) for e, v, j, jv in meta["keys"]]
        checkpoints = [(str(r), int(st)) for r, st in meta["checkpoints"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(len(a) != rows for a in arrays.values()):  # a column file cut short
        return None
    if meta.get("digest") != _columns_digest(arrays):  # damaged or edited in place
        return None
    checkpoint, key = arrays.pop("checkpoint"), arrays.pop("key")
    if rows and (checkpoint.max() >= len(checkpoints) or key.max() >= len(keys)):
        return None
    return Table(keys, checkpoint, key, checkpoints, arrays), size


def _save_table(
    ws: Workspace, found: Table, ledger_bytes: bytes, appended_after: int | None = None
) -> None:
    """Write the cache: the column files, then the record of what they cover (local state: a
    folder that cannot be written costs only speed). With `appended_after`, the files already
    hold the table's first rows up to there, and only the rows after it are written after them;
    the record, written last, says how many rows to read, so a write cut short is never read."""
    import json

    import numpy as np

    meta_path = ws.local("index", _TABLE_META)
    columns = {"checkpoint": found.checkpoint, "key": found.key, **found.columns}
    with contextlib.suppress(OSError):
        if appended_after is None:
            meta_path.unlink(missing_ok=True)  # the old record must not describe new files
            for column, values in columns.items():
                atomic_write(_column_file(ws, column), np.asarray(values, dtype=_INT).tobytes())
            (meta_path.parent / "table.npz").unlink(missing_ok=True)  # the format before
        else:
            for column, values in columns.items():
                with _column_file(ws, column).open("r+b") as handle:
                    handle.truncate(appended_after * 8)
                    handle.seek(appended_after * 8)
                    handle.write(np.asarray(values[appended_after:], dtype=_INT).tobytes())
                    handle.flush()
                    os.fsync(handle.fileno())
        meta = {
            **_ledger_mark(ws, ledger_bytes),
            "format": 2,
            "rows": len(found.checkpoint),
            "digest": _columns_digest({c: np.asarray(v, dtype=_INT) for c, v in columns.items()}),
            "keys": found.keys,
            "checkpoints": found.checkpoints,
        }
        atomic_write(meta_path, json.dumps(meta).encode())


def _columns_digest(arrays: dict[str, Any]) -> str:
    """A digest of the cached columns' bytes, in _TABLE_COLUMNS' order: a cache is a copy of
    what the committed counts say, and one that no longer is (a damaged disk, a file edited in
    place) is rebuilt from them rather than read (0.03 s for 2,000 x 300 series)."""
    digest = hashlib.sha256()
    for column in _TABLE_COLUMNS:
        digest.update(memoryview(arrays[column]).cast("B"))
    return digest.hexdigest()


def _added_entries(ws: Workspace, data: bytes, covered: int) -> list[ReportEntry]:
    """The ledger entries after its first `covered` bytes (the lines added since a cache was
    built), a bad line named by its number in the whole ledger."""
    first = data[:covered].count(b"\n") + 1
    display = ws.rel(ledger_path(ws))
    return [
        validate_jsonl_line(line, first + i, ReportEntry, display)
        for i, line in enumerate(data[covered:].split(b"\n"))
        if line.strip()
    ]


def _extend(ws: Workspace, base: Table, added: list[ReportEntry]) -> Table:
    """`base` with the counts of the ledger entries `added` (the ledger's new lines)."""
    import numpy as np

    keys = {k: i for i, k in enumerate(base.keys)}
    checkpoints = {c: i for i, c in enumerate(base.checkpoints)}
    rows: list[CountRow] = []
    for entry in added:
        rows.extend(checked_rows(ws, entry))
    where = [checkpoints.setdefault((r.run, r.step), len(checkpoints)) for r in rows]
    which = [
        keys.setdefault((r.environment, r.environment_version, r.judge, r.judge_version), len(keys))
        for r in rows
    ]
    return Table(
        list(keys),
        np.concatenate([base.checkpoint, np.asarray(where, dtype=np.int64)]),
        np.concatenate([base.key, np.asarray(which, dtype=np.int64)]),
        list(checkpoints),
        {
            c: np.concatenate(
                [base.columns[c], np.fromiter((getattr(r, c) for r in rows), np.int64, len(rows))]
            )
            for c in COUNT_COLUMNS
        },
    )


def _full_table(ws: Workspace) -> Table:
    """The table from every report's counts, summed by DuckDB."""
    import numpy as np

    path = _cache_table(ws)
    if path is None:
        return Table.of([])
    import duckdb

    query = (
        "SELECT *, dense_rank() OVER (ORDER BY run, step) - 1 AS _checkpoint, dense_rank() OVER "
        "(ORDER BY environment, environment_version, judge, judge_version) - 1 AS _key "
        "FROM read_parquet({})"
    )
    with duckdb_connect() as con:
        try:
            data = con.execute(query.format(_sql_text(str(path)))).fetchnumpy()
        except duckdb.IOException:  # replaced by a newer ledger's table as we read: rebuild
            path = _cache_table(ws)
            assert path is not None
            data = con.execute(query.format(_sql_text(str(path)))).fetchnumpy()
    checkpoint = np.asarray(data["_checkpoint"], dtype=np.int64)
    key = np.asarray(data["_key"], dtype=np.int64)
    _, at = np.unique(checkpoint, return_index=True)
    _, of = np.unique(key, return_index=True)
    return Table(
        [
            (
                str(data["environment"][i]),
                int(data["environment_version"][i]),
                str(data["judge"][i]),
                str(data["judge_version"][i]),
            )
            for i in of.tolist()
        ],
        checkpoint,
        key,
        [(str(data["run"][i]), int(data["step"][i])) for i in at.tolist()],
        {c: np.asarray(data[c], dtype=np.int64) for c in COUNT_COLUMNS},
    )


def summary(ws: Workspace) -> tuple[int, int]:
    """(reports ingested, judgments counted)."""
    entries = ledger(ws)
    return len(entries), sum(e.counted for e in entries)


__all__ = [
    "COUNT_COLUMNS",
    "KEY_COLUMNS",
    "Format",
    "Group",
    "Kind",
    "ReportEntry",
    "Tally",
]
