"""`gov aggregate`: a lake of judged episodes, checked as strictly as `gov ingest` checks a
report, counted by the one SQL on DuckDB or Spark, written as the aggregated counts `gov
ingest` takes, with a manifest of every file counted.

What the engines return is judged here, once, for both: the distinct keys with the report
model's own types and the registry's join (as ingest does), and, only when something is wrong,
the first bad rows in the lake's order (by file path, then row), each named by its file and row
and the message `gov ingest` gives for the same record."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..counts import Group, Tally
from ..errors import GovError
from ..ingest.formats import LISTED_ERRORS, Problems, validation_message
from ..ingest.join import Join
from ..ingest.scan import conflict_message
from ..judgments import REPORT_SCHEMA_VERSION, JudgedEpisode, LakeFile, LakeManifest
from ..registry import Registry
from ..storage import atomic_write
from .engines import Engine, start
from .listing import Hashing, Lake, as_record, check_schemas, list_lake
from .sql import BAD_BY_FILE, COUNTS, REPEATED, REPEATS, ROWS_OF_FILE, judgment

Key = tuple[Any, ...]  # run, step, environment, environment_version, judge, judge_version
_KEY_FIELDS = ("run", "step", "environment", "environment_version", "judge", "judge_version")


@dataclass(frozen=True)
class Aggregated:
    """What `gov aggregate` wrote."""

    lake: str
    engine: str
    out: Path
    manifest: Path
    files: int
    bytes: int
    records: int  # rows read
    counted: int  # judgments counted (each episode once)
    duplicates: int  # rows repeating a judgment already counted
    groups: int


def manifest_path(out: Path) -> Path:
    """Where the manifest of a counts file is, beside it."""
    return out.with_name(out.name + ".manifest.json")


def aggregate(
    registry: Registry,
    lake_path: Path | str,
    out: Path,
    engine: str = "duckdb",
    master: str | None = None,
) -> Aggregated:
    """Check and count a lake (a folder, or an s3:// URI); write the counts and their
    manifest, or refuse and write nothing."""
    if not isinstance(lake_path, str):
        return _aggregate(list_lake(lake_path, registry), registry, out, engine, master)
    if engine == "spark" and master is not None and not master.startswith("local"):
        raise GovError(_ON_A_CLUSTER.format(lake_path))
    with tempfile.TemporaryDirectory(prefix="gov-lake-") as copy:
        lake = list_lake(Path(copy) / "lake", registry, uri=lake_path)
        return _aggregate(lake, registry, out, engine, master)


# A lake in object storage is copied here, version by version, before it is counted; a
# cluster's executors cannot read this machine's copy
_ON_A_CLUSTER = (
    "{}: a lake in object storage is counted from a copy on this machine, which a Spark "
    "cluster's executors cannot read: use --engine duckdb, or a local master (local[N])"
)


def _aggregate(
    lake: Lake, registry: Registry, out: Path, engine: str, master: str | None
) -> Aggregated:
    check_schemas(lake)
    if lake.records == 0:
        raise GovError(f"{lake.label}: no records: the lake's files hold no judged episodes")
    runner = start(engine, master)
    if lake.uri is not None and not runner.local:  # spark-submit's session on a cluster
        runner.close()
        raise GovError(_ON_A_CLUSTER.format(lake.uri))
    hashing = Hashing(lake.files).start()
    try:
        runner.load(lake)
        tallies, records, duplicates = _count(runner, lake, Join(registry))
    finally:
        runner.close()
        md5 = hashing.wait(lake.label)
    return _write(lake, runner.name, out, tallies, records, duplicates, md5)


def _key_problem(key: Key, join: Join) -> str | None:
    """Why one distinct key is refused (the model's message, or the registry's), or None."""
    record = as_record(dict(zip(_KEY_FIELDS, key, strict=True)))
    try:
        JudgedEpisode.model_validate(
            {**record, "episode": "x", "verdict": "none", "divergent": False}
        )
    except ValidationError as exc:
        return validation_message(exc)
    group = join.group(*key)
    return group if isinstance(group, str) else None


# Above this many repeated hashes REPEATS checks every episode rather than list them all.
_LISTED_HASHES = 10_000


def _count(runner: Engine, lake: Lake, join: Join) -> tuple[dict[Group, Tally], int, int]:
    """The tallies per registry group, the rows read and the repeats counted once; refused
    (by `_explain`) when any row is bad. The bad records are counted the same on any engine:
    every row of a refused key, else each row with a per-row problem, plus one per episode
    judged two ways."""
    combos = list(runner.rows(COUNTS))  # *key, judgment, records, bad
    hashes = [r[0] for r in runner.rows(REPEATED)]
    bad_keys: dict[Key, str] = {}
    for key in {tuple(row[:6]) for row in combos}:  # each distinct key once
        if (why := _key_problem(key, join)) is not None:
            bad_keys[key] = why
    _one_spelling(lake, {tuple(row[:6]) for row in combos} - set(bad_keys), join)
    records = sum(r[7] for r in combos)
    if records != lake.records:  # every row of every file is counted, or none is trusted
        raise RuntimeError(f"{runner.name} read {records} rows of {lake.records}")
    repeats: dict[tuple[Key, int], int] = {}  # (key, judgment) -> rows that repeat a judgment
    conflicted = 0
    if hashes:
        listed = ", ".join(str(int(h)) for h in hashes)
        where = f"WHERE k IN ({listed})" if len(hashes) <= _LISTED_HASHES else ""
        for row in runner.rows(REPEATS.format(where=where)):
            key, code, copies, two_ways = tuple(row[:6]), row[7], row[8], row[9]
            if two_ways:
                conflicted += 1
            elif code is not None:
                repeats[(key, code)] = repeats.get((key, code), 0) + copies - 1
    problems = conflicted + sum(r[7] if tuple(r[:6]) in bad_keys else r[8] for r in combos)
    if problems:
        _explain(runner, lake, bad_keys, problems)
    tallies: dict[Group, Tally] = {}
    counted = 0
    for row in combos:
        key = tuple(row[:6])
        group = join.group(*key)
        assert not isinstance(group, str)
        judged = row[7] - repeats.get((key, row[6]), 0)
        verdict, divergent = judgment(row[6])
        tallies.setdefault(group, Tally()).add_verdict(verdict, divergent, judged)
        counted += judged
    return tallies, records, records - counted


def _one_spelling(lake: Lake, keys: set[Key], join: Join) -> None:
    """Refuse a lake that writes one registered version two ways (version 1 as 1 in one file
    and "v1" in another): the SQL finds an episode's copies by its key as written, so an
    episode under both would be counted twice, and a verdict that differs between them would
    go unseen."""
    written: dict[Group, Key] = {}
    for key in sorted(keys, key=repr):
        group = join.group(*key)
        assert not isinstance(group, str)
        first = written.setdefault(group, key)
        if first != key:
            differ = " and ".join(
                f"{name} {a!r} and {b!r}"
                for name, a, b in zip(_KEY_FIELDS, first, key, strict=True)
                if a != b
            )
            raise GovError(
                f"{lake.label}: {differ} name the same registered version ({group.run}@"
                f"{group.step} {group.environment} v{group.environment_version}, judge "
                f"{group.judge} {group.judge_version}): an episode written both ways would be "
                "counted twice; write each version one way"
            )


def _explain(runner: Engine, lake: Lake, bad_keys: dict[Key, str], total: int) -> None:
    """Name the first bad rows, in the lake's order, and refuse: `total` bad records in all."""
    by_path = {str(f.path): f for f in lake.files}
    flagged: dict[str, tuple[str, int]] = {}  # rel -> (engine's name, flagged rows)
    for row in runner.rows(BAD_BY_FILE):
        name, key, records, bad, conflicting = row[0], tuple(row[1:7]), row[7], row[8], row[9]
        count = records if key in bad_keys else bad + conflicting
        rel = by_path[runner.file_of(name)].rel
        flagged[rel] = (name, flagged.get(rel, (name, 0))[1] + count)
    problems = Problems(lake.label)
    seen: dict[tuple[Any, ...], tuple[str, str, bool]] = {}
    for rel in sorted(r for r, (_, count) in flagged.items() if count):
        name = flagged[rel][0]
        for row in runner.rows(ROWS_OF_FILE, [name]):
            _judge_row(rel, row, bad_keys, problems, seen)
            if len(problems.listed) >= LISTED_ERRORS:
                break
        if len(problems.listed) >= LISTED_ERRORS:
            break
    if not problems.listed:
        raise RuntimeError(f"{lake.label}: the counts found {total} bad records, the rows none")
    problems.count = total
    problems.raise_if_any()


def _judge_row(
    rel: str,
    row: tuple[Any, ...],
    bad_keys: dict[Key, str],
    problems: Problems,
    seen: dict[tuple[Any, ...], tuple[str, str, bool]],
) -> None:
    """Add one row's problem, as gov ingest words it for the same record: the model's first,
    then the registry's, then a verdict that differs from the episode's first."""
    number, key, episode, verdict, divergent = row[0], tuple(row[1:7]), row[7], row[8], row[9]
    confidence, evidence, schema_version, problem, conflicting = row[10:15]
    where = f"{rel} row {number + 1}"
    if problem is None and key not in bad_keys and not conflicting:
        return
    fields = {
        **dict(zip(_KEY_FIELDS, key, strict=True)),
        "episode": episode,
        "verdict": verdict,
        "divergent": divergent,
        "confidence": confidence,
        "evidence": evidence,
        "schema_version": schema_version,
    }
    try:
        JudgedEpisode.model_validate(as_record(fields))
    except ValidationError as exc:
        problems.add(where, validation_message(exc))
        return
    if problem is not None:  # the SQL refused what the model takes: the two rules disagree
        raise RuntimeError(f"{where}: the lake's SQL refused ({problem}) a record the model takes")
    if key in bad_keys:
        problems.add(where, bad_keys[key])
        return
    first = seen.setdefault((*key, episode), (where, verdict, bool(divergent)))
    if first[1:] != (verdict, bool(divergent)):
        problems.add(where, conflict_message(episode, first, verdict, bool(divergent)))


def _write(
    lake: Lake,
    engine: str,
    out: Path,
    tallies: dict[Group, Tally],
    records: int,
    duplicates: int,
    md5: dict[str, str],
) -> Aggregated:
    """The counts in the aggregated report form, then the manifest naming them by md5."""
    lines = []
    for group in sorted(tallies):
        tally = tallies[group]
        lines.append(
            json.dumps(
                {
                    "schema_version": REPORT_SCHEMA_VERSION,
                    "run": group.run,
                    "step": group.step,
                    "environment": group.environment,
                    "environment_version": group.environment_version,
                    "judge": group.judge,
                    "judge_version": group.judge_version,
                    **vars(tally),
                }
            )
            + "\n"
        )
    counts = "".join(lines).encode()
    counted = sum(t.n for t in tallies.values())
    manifest = LakeManifest(
        lake=lake.uri if lake.uri is not None else str(lake.root.resolve()),
        engine=engine,
        counts_md5=hashlib.md5(counts, usedforsecurity=False).hexdigest(),
        records=records,
        counted=counted,
        duplicates=duplicates,
        files=[
            LakeFile(path=f.rel, size=f.size, md5=md5[f.rel], version=f.version, etag=f.etag)
            for f in lake.files
        ],
    )
    beside = manifest_path(out)
    atomic_write(out, counts)
    try:
        atomic_write(beside, (manifest.model_dump_json(indent=1) + "\n").encode())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return Aggregated(
        lake=lake.label,
        engine=engine,
        out=out,
        manifest=beside,
        files=len(lake.files),
        bytes=sum(f.size for f in lake.files),
        records=records,
        counted=counted,
        duplicates=duplicates,
        groups=len(tallies),
    )
