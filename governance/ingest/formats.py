"""Reading report files: the format from the first bytes, lines and records, and the list of
bad records that names each by file:line, field and reason."""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from ..counts import (
    Format,
    Kind,
)
from ..errors import ReportRejected
from ..judgments import AggregatedCounts, EvidenceSpan, JudgedEpisode, repeated_key
from ..storage import duckdb_connect
from ..yamlio import error_loc

MAX_RECORD_BYTES = 1 << 20
LISTED_ERRORS = 10
R = TypeVar("R", JudgedEpisode, AggregatedCounts)
Progress = Callable[[str, float], None]


REPORT_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


# What `gov judge run` writes beside its report: the episodes it could not judge (transcripts,
# not judgments)
UNJUDGED_SUFFIX = ".unjudged.jsonl"


def report_files(folder: Path) -> list[Path]:
    """The report files in a folder (by name), in name order; the unjudged episodes `gov judge
    run` keeps beside a report are not one."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(REPORT_SUFFIXES) and not p.name.endswith(UNJUDGED_SUFFIX)
    )


def sniff(path: Path) -> Format:
    """The report's format, from its first bytes (the name only has to agree)."""
    if not path.is_file():
        raise ReportRejected(f"{path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if path.stat().st_size == 0:
        raise ReportRejected(f"{path}: the file is empty: a report needs at least one record")
    if head[:2] == b"\x1f\x8b":
        _probe_inflation(path)  # first: a file cut short has no size field to read
        _check_inflation(path)
        return "jsonl.gz"
    if path.suffix == ".gz":
        raise ReportRejected(f"{path}: named .gz but is not gzip (it starts with {head!r})")
    if head == b"PAR1":
        return "parquet"
    if path.suffix == ".parquet":
        raise ReportRejected(f"{path}: named .parquet but is not a Parquet file")
    return "jsonl"


def _check_inflation(path: Path) -> None:
    """A gzip file records its inflated size (modulo 4 GiB) in its last four bytes: a report
    that says it inflates past MAX_INFLATION times its size is refused before any is read (one
    that wraps past 4 GiB is caught while its lines are read)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - 4))
        inflated = int.from_bytes(handle.read(4), "little")
    if inflated > size * MAX_INFLATION + INFLATION_SLACK:
        raise ReportRejected(
            f"{path}: inflates to {inflated:,} bytes, over {MAX_INFLATION} times its compressed "
            f"size ({size:,}), by the size its last four bytes give (or it is cut short, and "
            "they are not gzip's size field): not a report (see the README's limits)"
        )


PROBE = 64 << 20  # inflated bytes the probe reads at most


def _probe_inflation(path: Path) -> None:
    """Inflate the start of a gzip report (at most PROBE bytes): one that inflates past
    MAX_INFLATION times the bytes it took is refused there, before any reader goes through it
    all (a size field past 4 GiB wraps, and DuckDB's reader would inflate every byte first)."""
    import zlib

    inflater = zlib.decompressobj(wbits=31)
    taken = made = 0
    with path.open("rb") as handle:
        while made < PROBE:
            chunk = handle.read(1 << 14)
            if not chunk:  # the whole file read, and its gzip stream never ended
                raise ReportRejected(
                    f"{path}: a gzip file cut short: it ends before gzip's end-of-stream marker "
                    f"({taken:,} bytes; a writer stopped, or a copy was cut)"
                )
            taken += len(chunk)
            try:
                made += len(inflater.decompress(chunk, PROBE))
                while inflater.unconsumed_tail and made < PROBE:
                    made += len(inflater.decompress(inflater.unconsumed_tail, PROBE))
            except zlib.error:
                return  # not this check's to report: the reader names it
            if inflater.eof:
                break  # one member read whole; the size field spoke for it
    if made >= 16 << 20 and made > taken * MAX_INFLATION:
        raise ReportRejected(
            f"{path}: inflates to over {MAX_INFLATION} times its compressed size ({taken:,} "
            f"bytes gave {made:,} and more): not a report (see the README's limits)"
        )


def _open_text(path: Path, fmt: Format) -> io.BufferedIOBase:
    if fmt == "jsonl.gz":
        return gzip.open(path, "rb")
    return path.open("rb")


BLOCK = 1 << 20
# What a report may inflate to: a gzip report at most MAX_INFLATION times its own size (judged
# episodes' JSON compresses about 5 to 15 times; a file of newlines, 1,000 times), and any
# report at most MAX_LINES lines. Past either it is refused at once, never read for minutes.
MAX_INFLATION = 200
INFLATION_SLACK = 64 << 20  # a small gzip may always inflate to this much
MAX_LINES = 2_000_000_000


# What some Windows tools write at the start of a UTF-8 file: not JSON, but not a record either.
_BOM = b"\xef\xbb\xbf"


def lines(path: Path, fmt: Format) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw line) of each non-blank line; None for a line over MAX_RECORD_BYTES.

    Read in blocks: a stretch of blank lines costs what reading it costs (a block of nothing
    but whitespace is counted, not split), and a report past MAX_LINES lines, or a gzip that
    inflates past MAX_INFLATION times its size, is refused as soon as it gets there."""
    limit = path.stat().st_size * MAX_INFLATION + INFLATION_SLACK if fmt == "jsonl.gz" else None
    try:
        with _open_text(path, fmt) as handle:
            number = 0  # lines before the carried one
            read = 0
            carry = b""  # the start of a line the next block continues
            skipping = False  # inside a line over MAX_RECORD_BYTES: drop until its newline
            while True:
                block = handle.read(BLOCK)
                if not read and block.startswith(_BOM):  # read past, as DuckDB's reader does
                    block = block[len(_BOM) :]
                    read += len(_BOM)
                read += len(block)
                if limit is not None and read > limit:
                    raise ReportRejected(
                        f"{path}: inflates to over {MAX_INFLATION} times its compressed size "
                        f"({read:,} bytes and counting): not a report (see the README's limits)"
                    )
                if not block:
                    if skipping:
                        yield number + 1, None
                    elif carry.strip():
                        yield number + 1, carry
                    return
                if not carry and not skipping and not block.strip():
                    number += block.count(b"\n")  # nothing but whitespace: counted, not split
                    _check_count(path, number)
                    continue
                parts = block.split(b"\n")
                last = parts.pop()
                if parts:
                    _check_count(path, number + len(parts))
                    if skipping:  # the first part ends the long line
                        number += 1
                        yield number, None
                        skipping = False
                        parts = parts[1:]
                    else:
                        parts[0] = carry + parts[0]
                    for raw in parts:
                        number += 1
                        if len(raw) > MAX_RECORD_BYTES:
                            yield number, None
                        elif raw.strip():
                            yield number, raw + b"\n"
                    carry = b""
                if skipping:
                    continue
                carry += last
                if len(carry) > MAX_RECORD_BYTES:
                    carry, skipping = b"", True
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ReportRejected(f"{path}: cannot be read as {fmt}: {exc}") from exc


def _check_count(path: Path, number: int) -> None:
    if number > MAX_LINES:
        raise ReportRejected(
            f"{path}: over {MAX_LINES:,} lines: not a report gov reads (see the README's limits)"
        )


def detect_kind(path: Path, fmt: Format) -> Kind:
    if fmt == "parquet":
        with duckdb_connect() as con:
            described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote(path)})")
            names = {c[0] for c in described.fetchall()}
        return "aggregated" if "n" in names and "verdict" not in names else "episodes"
    for number, raw in lines(path, fmt):
        if raw is None:
            raise ReportRejected(f"{path}:{number}: record longer than {MAX_RECORD_BYTES} bytes")
        try:
            first = json.loads(raw)
        except ValueError as exc:
            raise ReportRejected(f"{path}:{number}: invalid JSON: {exc}") from exc
        except RecursionError:
            raise ReportRejected(
                f"{path}:{number}: a value is nested too deeply to read (over "
                f"{sys.getrecursionlimit()} levels)"
            ) from None
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


def quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@dataclass
class Problems:
    """The first bad records of a file, and how many there are in all."""

    source: str
    listed: list[str] = field(default_factory=list)
    count: int = 0
    refusal: str = "refused, nothing stored"  # what refusing the file means to the command

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
            f"{self.source}: {self.refusal} ({self.count} bad record{plural}); {self.listed[0]}",
            details,
        )


def validation_message(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in error_loc(err))
    message = err["msg"]
    if err["type"] == "json_invalid":
        return f"invalid JSON ({message.removeprefix('Invalid JSON: ')})"
    if err["type"] == "missing":
        return f"field {loc}: missing"
    got = f" (got {err['input']!r:.60})" if "input" in err and err["type"] != "model_type" else ""
    return f"field {loc}: {message}{got}" if loc else f"{message}{got}"


# The keys a report's record is read by (extra fields are ignored: one may repeat, as DuckDB's
# reader of an episode report lets it)
_KNOWN = frozenset(
    [*JudgedEpisode.model_fields, *AggregatedCounts.model_fields, *EvidenceSpan.model_fields]
)


def validated(
    path: Path, fmt: Format, model: type[R], problems: Problems
) -> Iterator[tuple[int, str, R]]:
    """(number, where, record) of each record that the model accepts; the others are noted."""
    for number, record in records(path, fmt, problems):
        label = f"{path}:{number}" if fmt != "parquet" else f"{path} row {number}"
        try:
            if not isinstance(record, bytes):
                yield number, label, model.model_validate(record)
                continue
            found = model.model_validate_json(record)
        except ValidationError as exc:
            problems.add(label, validation_message(exc))
            continue
        try:
            twice = repeated_key(record, len(found.model_fields_set), _KNOWN)
        except ValueError as exc:
            problems.add(label, str(exc))
            continue
        if twice is None:
            yield number, label, found
        else:
            problems.add(label, f"field {twice}: given twice in one record (which one is meant?)")


def records(path: Path, fmt: Format, problems: Problems) -> Iterator[tuple[int, Any]]:
    if fmt != "parquet":
        for number, raw in lines(path, fmt):
            if raw is None:
                problems.add(f"{path}:{number}", f"record longer than {MAX_RECORD_BYTES} bytes")
            else:
                yield number, raw
        return

    cursor = duckdb_connect().execute(f"SELECT * FROM read_parquet({quote(path)})")
    names = [d[0] for d in cursor.description]
    number = 0
    while batch := cursor.fetchmany(10_000):
        for row in batch:
            number += 1
            yield number, {k: v for k, v in zip(names, row, strict=True) if v is not None}
