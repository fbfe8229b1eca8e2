"""What a lake holds: its Parquet files by partition (run=RUN/step=STEP/), each file's schema
checked against the report schema, and each file's size and md5 for the manifest.

All of this is read here, in Python and DuckDB, before either engine starts: the refusals it
makes (no such lake, an empty one, a file outside a partition, a run the registry does not
know, a column of the wrong type) are then the same whichever engine counts the rows."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import GovError, NotFound
from ..models import name_problem
from ..registry import Registry
from ..storage import FileStamp, duckdb_connect, file_stamp

_PARTITION = re.compile(r"run=([^/]+)/step=([^/]+)")
_STEP = re.compile(r"0|[1-9][0-9]{0,17}")

# The columns of a judged episode in a lake file, and the DuckDB types each may have. run and
# step are the partition's (the folder names), as Spark's partitionBy and DuckDB's PARTITION_BY
# write them; a file that holds them too is refused rather than one of the two believed.
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")
_STRING = ("VARCHAR",)
_EVIDENCE = "a list of {start, end, quote} (integers and a string, in that order)"
REQUIRED: dict[str, tuple[tuple[str, ...], str]] = {
    "episode": ((*_STRING, *_INTEGER), "a string or an integer"),
    "environment": (_STRING, "a string"),
    "environment_version": ((*_INTEGER, *_STRING), "an integer or a string"),
    "judge": (_STRING, "a string"),
    "judge_version": ((*_STRING, *_INTEGER), "a string or an integer"),
    "verdict": (_STRING, "a string"),
    "divergent": (("BOOLEAN",), "a boolean"),
}
OPTIONAL: dict[str, tuple[tuple[str, ...], str]] = {
    "schema_version": (_INTEGER, "an integer"),
    "confidence": (("FLOAT", "DOUBLE"), "a floating-point number"),
    "evidence": ((), _EVIDENCE),  # checked by _evidence_type
    "note": (_STRING, "a string"),
}
PARTITION_COLUMNS = ("run", "step")


@dataclass(frozen=True)
class LakeFile:
    """One Parquet file of a lake: where it is, its partition and what it was when listed."""

    path: Path
    rel: str  # the path inside the lake, with forward slashes: how errors and manifests name it
    run: str
    step: int
    stamp: FileStamp | None
    size: int
    version: str | None = None  # in object storage: the version read (None: pinned by ETag)
    etag: str | None = None  # in object storage: the ETag read


@dataclass
class Lake:
    root: Path  # the folder the engines read (a local copy of a lake in object storage)
    files: list[LakeFile]
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # rel -> column -> type
    records: int = 0  # rows, by the files' footers: what the engine must have read
    uri: str | None = None  # where the lake is, when it is in object storage

    @property
    def label(self) -> str:
        """How messages and the manifest name the lake: its URI, or its folder."""
        return self.uri if self.uri is not None else str(self.root)

    def present(self, column: str) -> bool:
        """Whether any file holds the (optional) column."""
        return any(column in cols for cols in self.columns.values())

    def schema_groups(self) -> list[list[LakeFile]]:
        """The files grouped by identical schema, in the lake's order (Spark reads each group
        with its own schema: it cannot merge an integer column with a string one)."""
        groups: dict[tuple[tuple[str, str], ...], list[LakeFile]] = {}
        for f in self.files:
            groups.setdefault(tuple(sorted(self.columns[f.rel].items())), []).append(f)
        return list(groups.values())


def list_lake(root: Path, registry: Registry, uri: str | None = None) -> Lake:
    """The lake's Parquet files, by partition, in path order; refused (one line) when the lake
    is missing or empty, when a file is outside a run=RUN/step=STEP/ partition, or when a
    partition's run is not registered. `uri`: the lake in object storage `root` is a copy of
    (messages name it)."""
    if uri is not None:
        return _listed(uri, root, registry)
    if not root.exists():
        raise GovError(f"{root}: no such lake (a folder of run=RUN/step=STEP/*.parquet files)")
    if not root.is_dir():
        raise GovError(f"{root}: a lake is a folder (of run=RUN/step=STEP/*.parquet files)")
    found: list[LakeFile] = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(names):
            if name.startswith((".", "_")):  # _SUCCESS, .crc: a writer's bookkeeping
                continue
            rel = (Path(folder) / name).relative_to(root).as_posix()
            # Absolute and without `..` (Spark names a file by its absolute path, as a URI, and
            # the engines' names are matched back to the listing's), but not resolved: the SQL
            # reads run= and step= from the path, which a symlink's target need not have.
            path = Path(os.path.abspath(Path(folder) / name))  # noqa: PTH100
            run, step = _partition(str(root), rel)
            found.append(_stat(str(root), path, rel, run, step))
    if not found:
        raise GovError(_EMPTY.format(root))
    found.sort(key=lambda f: f.rel)
    _check_runs(str(root), found, registry)
    return Lake(root, found)


_EMPTY = "{}: an empty lake: no Parquet files under it (a lake holds run=RUN/step=STEP/*.parquet)"


def _listed(uri: str, into: Path, registry: Registry) -> Lake:
    """A lake in object storage, listed once (each object's current version, or its ETag where
    the bucket keeps no versions), checked as a folder's listing is, then copied to the new
    folder `into` at exactly those versions: the engines count the copy, and the manifest names
    the versions, so what was counted is what the manifest names even while the lake is
    written to. The copy is this machine's: the one-machine limit is its disk."""
    from .. import objectstore

    try:
        listed = objectstore.snapshot(uri)
    except FileNotFoundError:
        raise GovError(_EMPTY.format(uri)) from None
    kept: list[objectstore.StoredObject] = []
    found: list[LakeFile] = []
    for stored in listed.objects:
        if any(part.startswith((".", "_")) for part in stored.path.split("/")):
            continue  # _SUCCESS, _temporary/, .crc: a writer's bookkeeping
        run, step = _partition(uri, stored.path)
        kept.append(stored)
        found.append(
            LakeFile(
                into / stored.path,
                stored.path,
                run,
                step,
                None,
                stored.size,
                stored.version,
                stored.etag,
            )
        )
    if not found:
        raise GovError(_EMPTY.format(uri))
    found.sort(key=lambda f: f.rel)
    _check_runs(uri, found, registry)
    objectstore.download(
        objectstore.Manifest(listed.uri, listed.bucket, tuple(kept)), into, purpose="count"
    )
    return Lake(into, [replace(f, stamp=file_stamp(f.path)) for f in found], uri=uri)


def _partition(root: str, rel: str) -> tuple[str, int]:
    """The run and step of a file's partition, from its path inside the lake."""
    if not rel.endswith(".parquet"):
        raise GovError(f"{root}: {rel} is not a Parquet file (a lake holds *.parquet)")
    parent, _, name = rel.rpartition("/")
    match = _PARTITION.fullmatch(parent)
    if match is None:
        raise GovError(
            f"{root}: {rel} is not in a run=RUN/step=STEP/ partition (the lake is partitioned "
            "by run and step, in that order, as partitionBy('run', 'step') writes it)"
        )
    run, step = match.groups()
    if (problem := name_problem(run)) is not None:
        raise GovError(f"{root}: {rel}: partition run={run}: a run name {problem}")
    if not _STEP.fullmatch(step):
        raise GovError(
            f"{root}: {rel}: partition step={step}: a step is a non-negative integer "
            "without leading zeros"
        )
    if _PATTERN.search(name):
        raise GovError(
            f"{root}: {rel}: its name holds one of * ? [ ] {{ }} : \\, which the engines read "
            "as a pattern (or, Spark, a scheme): rename the file"
        )
    return run, int(step)


def _stat(root: str, path: Path, rel: str, run: str, step: int) -> LakeFile:
    try:
        stat = path.stat()
    except OSError as exc:  # a link to nothing, or a file gone since the listing
        raise GovError(f"{root}: {rel}: cannot be read: {exc.strerror}") from None
    return LakeFile(path, rel, run, step, file_stamp(path), stat.st_size)


# Characters in a file name that DuckDB's reader and Spark's (Hadoop's paths) take for a glob
# pattern or a URI scheme: such a name would be read as another file, or not at all
_PATTERN = re.compile(r"[*?\[\]{}:\\]")


def _check_runs(root: str, files: Sequence[LakeFile], registry: Registry) -> None:
    """Every partition's run must be registered: a lake mixing in another run's partitions is
    refused by the first unknown run, with how many files it has."""
    runs: dict[str, int] = {}
    for f in files:
        runs[f.run] = runs.get(f.run, 0) + 1
    for run, count in sorted(runs.items()):
        try:
            registry.run(run)
        except NotFound as exc:
            plural = "s" if count != 1 else ""
            raise GovError(f"{root}: run={run}/ ({count} file{plural}): {exc.message}") from None


def check_schemas(lake: Lake) -> None:
    """Read each file's schema (its footer) and refuse the lake at the first file whose column
    differs from the report schema, naming the file and the column.

    The footers are read in one query; the files are grouped by their Parquet schema, and the
    columns as DuckDB types them are asked of one file per group (a lake's files, written by one
    writer, mostly share one). A footer that cannot be read is found file by file, to name it."""
    con = duckdb_connect()
    try:
        paths = [str(f.path) for f in lake.files]
        try:
            physical = con.execute(
                "SELECT file_name, name, type, type_length, repetition_type, num_children, "
                "converted_type, scale, precision, logical_type, duckdb_type "
                "FROM parquet_schema(?)",
                [paths],
            ).fetchall()
            rows = dict(
                con.execute(
                    "SELECT file_name, num_rows FROM parquet_file_metadata(?)", [paths]
                ).fetchall()
            )
        except Exception:  # duckdb.Error: a file that is no Parquet, or damaged: which one
            for f in lake.files:
                _describe(con, lake, f)
            raise
        schemas: dict[str, list[tuple[Any, ...]]] = {}
        for row in physical:
            schemas.setdefault(str(row[0]), []).append(tuple(row[1:]))
        described: dict[tuple[tuple[Any, ...], ...], dict[str, str]] = {}
        for f in lake.files:
            shape = tuple(schemas[str(f.path)])
            if shape not in described:
                described[shape] = _describe(con, lake, f)
            columns = described[shape]
            problem = schema_problem(columns)
            if problem is not None:
                raise GovError(f"{lake.label}: {f.rel}: {problem} (see `gov schema report`)")
            lake.columns[f.rel] = {
                c: t for c, t in columns.items() if c in REQUIRED or c in OPTIONAL
            }
            lake.records += int(rows[str(f.path)])
    finally:
        con.close()


def _describe(con: Any, lake: Lake, f: LakeFile) -> dict[str, str]:
    """One file's columns, as DuckDB types them; refused where it cannot be read as Parquet."""
    try:
        described = con.execute(
            "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)", [str(f.path)]
        ).fetchall()
    except Exception as exc:  # duckdb.Error: not a Parquet file, or a damaged one
        detail = " ".join(str(exc).split())[:200]
        raise GovError(f"{lake.label}: {f.rel}: cannot be read as Parquet: {detail}") from None
    return {str(row[0]): str(row[1]) for row in described}


# Columns DuckDB's reader adds (filename, file_row_number) and Spark's hidden metadata column
_RESERVED = ("filename", "file_row_number", "_metadata")


def schema_problem(columns: dict[str, str]) -> str | None:
    """Why a file's columns (name -> DuckDB type) are not the report schema's, or None."""
    for name in _RESERVED:
        if name in columns:
            return (
                f"column {name}: a name the engines' readers keep for what they add to each "
                "row; rename or drop the column"
            )
    for name in PARTITION_COLUMNS:
        if name in columns:
            return (
                f"column {name}: the partition's folder names the {name}; a lake file must not "
                "hold it too"
            )
    for name, (types, wanted) in REQUIRED.items():
        if name not in columns:
            return f"column {name}: missing (every judged episode has one)"
        if columns[name] not in types:
            return f"column {name} is {columns[name]}, the report schema wants {wanted}"
    for name, (types, wanted) in OPTIONAL.items():
        if name not in columns:
            continue
        ok = _evidence_type(columns[name]) if name == "evidence" else columns[name] in types
        if not ok:
            return f"column {name} is {columns[name]}, the report schema wants {wanted}"
    return None


_EVIDENCE_TYPE = re.compile(r"STRUCT\((.*)\)\[\]")


def _evidence_type(type_: str) -> bool:
    """A list of structs of exactly start and end (integers) and quote (a string)."""
    match = _EVIDENCE_TYPE.fullmatch(type_)
    if match is None:
        return False
    fields: dict[str, str] = {}
    for part in match.group(1).split(", "):
        name, _, kind = part.partition(" ")
        fields[name.strip('"')] = kind
    return (
        list(fields) == ["start", "end", "quote"]  # Spark casts a struct by position
        and fields["start"] in _INTEGER
        and fields["end"] in _INTEGER
        and fields["quote"] == "VARCHAR"
    )


@dataclass
class Hashing:
    """Each file's md5, computed in a thread while an engine reads the lake (hashlib gives the
    GIL up while it digests): the manifest costs little more than the larger of the two."""

    files: Sequence[LakeFile]
    md5: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Hashing:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        buffer = bytearray(4 << 20)
        view = memoryview(buffer)
        try:
            for f in self.files:
                digest = hashlib.md5(usedforsecurity=False)
                with f.path.open("rb", buffering=0) as handle:
                    while read := handle.readinto(buffer):
                        digest.update(view[:read])
                self.md5[f.rel] = digest.hexdigest()
        except BaseException as exc:  # handed to the caller by wait()
            self.error = exc

    def wait(self, root: str) -> dict[str, str]:
        """The md5 of every file, once each is checked unchanged since it was listed (the counts
        and the hashes come from two reads: they must be of the same bytes)."""
        assert self._thread is not None
        self._thread.join()
        if self.error is not None:
            raise GovError(f"{root}: cannot be read for its manifest: {self.error}")
        for f in self.files:
            if file_stamp(f.path) != f.stamp:
                raise GovError(
                    f"{root}: {f.rel} changed while it was aggregated; nothing written "
                    "(aggregate once whatever writes the lake has finished)"
                )
        return self.md5


def as_record(values: dict[str, Any]) -> dict[str, Any]:
    """An engine's row as the record pydantic validates: absent (NULL) fields left out."""
    return {k: v for k, v in values.items() if v is not None}
