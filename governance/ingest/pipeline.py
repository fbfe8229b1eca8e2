"""The whole ingest: every file validated while it is copied and hashed, then all of them kept
in one registry change (the stored report in DVC, its counts, the ledger, the audit entry), or
none of them."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from .. import artifacts, audit, scm
from ..counts import (
    Group,
    ReportEntry,
    Tally,
    ledger,
    twin_of,
    write_counts,
    write_ledger,
    write_unjudged,
)
from ..errors import GovError, ReportRejected
from ..judgments import LakeManifest
from ..models import utc_now
from ..registry import Registry
from ..storage import file_stamp
from ..workspace import Workspace
from .episodes import against_earlier, discard, place
from .formats import (
    Progress,
    detect_kind,
    sniff,
    validation_message,
)
from .inspect_logs import Conversion, convert, is_inspect_log, write_report
from .join import Join
from .scan import EpisodeScan, scan_aggregated, scan_episodes

_WARM_DVC_ABOVE = 32 << 20  # bytes of reports: a scan long enough to hide DVC's import


@dataclass
class IngestResult:
    ingested: list[ReportEntry] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)  # (source, md5) seen before
    commit: str | None = None
    note: str | None = None  # why nothing was read (an empty folder)
    linked: list[str] = field(default_factory=list)  # md5s of reports hard-linked, not copied


class _Copy(threading.Thread):
    """Copies a report into the workspace while another thread computes its md5 (DVC's content
    address) from the source.

    The copy is made by the kernel (`copy_file_range`): on a filesystem with reflinks (XFS,
    btrfs) it shares the source's blocks and costs nothing; elsewhere it still saves the two
    trips through Python's buffers, which cost 5.8 CPU seconds for a 2.2 GB report where
    the kernel's copy takes 3.7 (ext4, `bench/ingest.py`). Both reads are of the same bytes:
    the caller refuses a report whose size or mtime moved meanwhile.

    Where DVC is configured to hard-link (`cache.type` names `hardlink`) and the report is on the
    workspace's filesystem, it is linked instead: no copy at all, a second name for the same
    bytes (a 2.2 GB report is a 5.7 s copy on ext4 and as much disk again per checkpoint).

    The copy is flushed to disk only where git flushes the objects it writes (`scm.syncs_objects`):
    a crash of the process can never leave it half-written (it is renamed into place after the
    commit's journal names it), and a power loss is then as survivable as the commit itself."""

    def __init__(
        self, source: Path, dest: Path, flush: bool, link: Callable[[], bool] | None = None
    ) -> None:
        """`link`: whether to link rather than copy, asked in this thread (reading DVC's
        configuration imports part of DVC: a tenth of a second kept off the scan's path)."""
        super().__init__(daemon=True)
        self.source, self.dest, self.flush, self.link = source, dest, flush, link
        self.linked = False
        self.md5 = ""
        self._hashed = self._written = 0  # bytes so far, for the progress bar
        self.error: BaseException | None = None
        self.cancelled = threading.Event()

    @property
    def copied(self) -> int:
        """Bytes both hashed and copied."""
        return min(self._hashed, self._written)

    def run(self) -> None:
        hasher = threading.Thread(target=self._hash, daemon=True)
        hasher.start()
        try:
            if not (self.link is not None and self.link() and self._link()):
                self._copy()
        except BaseException as exc:  # reported by the caller
            self.error = exc
            self.cancelled.set()
        hasher.join()

    def _hash(self) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        buffer = bytearray(4 << 20)  # one buffer, reused: no fresh pages to fault in per chunk
        view = memoryview(buffer)
        try:
            with self.source.open("rb", buffering=0) as src:
                while read := src.readinto(buffer):
                    if self.cancelled.is_set():
                        return
                    digest.update(view[:read])
                    self._hashed += read
            self.md5 = digest.hexdigest()
        except BaseException as exc:  # reported by the caller
            self.error = exc
            self.cancelled.set()

    def _link(self) -> bool:
        """Link the source in as the copy; False where it cannot be (another filesystem, a
        filesystem without hard links, no permission): then it is copied."""
        try:
            os.link(self.source, self.dest)
        except OSError:
            return False
        if self.flush:  # the bytes must be as durable as a copy would have been
            with self.dest.open("rb", buffering=0) as linked:
                os.fsync(linked.fileno())
        self.linked = True
        self._written = self.dest.stat().st_size
        return True

    def _copy(self) -> None:
        with self.source.open("rb", buffering=0) as src, self.dest.open("wb") as dst:
            kernel = getattr(os, "copy_file_range", None)
            while not self.cancelled.is_set():
                try:
                    if kernel is None:
                        raise OSError("no copy_file_range")
                    done = kernel(src.fileno(), dst.fileno(), _COPY_CHUNK)
                except OSError:  # not across these filesystems, or not here: copy it ourselves
                    chunk = src.read(_COPY_CHUNK)
                    done = len(chunk)
                    dst.write(chunk)
                    kernel = None
                if not done:
                    break
                self._written += done
            dst.flush()
            if self.flush:
                os.fsync(dst.fileno())


_COPY_CHUNK = 16 << 20  # the progress bar moves per chunk


@dataclass
class _Staged:
    source: Path
    incoming: Path  # the copy being made in reports/, renamed to `stored` once all is valid
    stored: Path
    entry: ReportEntry
    tallies: dict[Group, Tally]
    scan: EpisodeScan | None
    unjudged: dict[Group, tuple[int, int]] | None = None  # from gov judge run's .meta.json
    lake: bytes | None = None  # gov aggregate's manifest of the lake files counted


def ingest(
    registry: Registry,
    paths: Sequence[Path],
    *,
    replace: bool = False,
    same_counts: bool = False,
    progress: Progress | None = None,
) -> IngestResult:
    """Validate every file whole, then keep them all in one registry change (or none of them).
    An Inspect AI eval log is read as the episode-level report it holds (`inspect_logs`).
    `same_counts`: add aggregated counts even where they equal an earlier report's exactly."""
    if not paths:
        raise GovError("no report files given")
    converted = Path(tempfile.mkdtemp(prefix="gov-inspect-"))
    logs: dict[Path, tuple[Path, Conversion]] = {}
    # A long scan leaves the interpreter idle: DVC, needed only once it is done, loads meanwhile.
    large = sum(p.stat().st_size for p in paths if p.is_file()) > _WARM_DVC_ABOVE
    warming = artifacts.warm() if large else None
    try:
        reports = []
        for path in paths:
            if is_inspect_log(path):
                conversion = convert(path)
                target = converted / f"{len(logs)}" / f"{path.name}.jsonl"
                target.parent.mkdir()
                write_report(conversion, target)
                logs[target] = (path, conversion)
                reports.append(target)
            else:
                reports.append(path)
        try:
            return _ingest(
                registry,
                reports,
                replace=replace,
                same_counts=same_counts,
                progress=progress,
                logs=logs,
            )
        except GovError as exc:
            raise _as_log(exc, logs) from None
    finally:
        shutil.rmtree(converted, ignore_errors=True)
        if warming is not None:
            warming.join()


def _as_log(exc: GovError, logs: dict[Path, tuple[Path, Conversion]]) -> GovError:
    """An error about a log's conversion, said of the log and its sample (not a temporary file
    and its line)."""

    def said(text: str) -> str:
        for target, (path, conversion) in logs.items():
            name = re.escape(str(target))
            text = re.sub(name + r":(\d+):", _at_sample(path, conversion), text)
            text = re.sub(name + r"(\.meta\.json)?", str(path), text)
        return text

    if not logs:
        return exc
    exc.message = said(exc.message)
    exc.args = (exc.message,)
    exc.details = [said(line) for line in exc.details]
    return exc


def _at_sample(path: Path, conversion: Conversion) -> Callable[[re.Match[str]], str]:
    """`LOG: sample ID:` for a match of a converted report's `FILE:LINE:`."""

    def replace(match: re.Match[str]) -> str:
        line = int(match.group(1))
        ids = conversion.samples
        return f"{path}: sample {ids[line - 1]!r}:" if 0 < line <= len(ids) else f"{path}:"

    return replace


def _ingest(
    registry: Registry,
    paths: Sequence[Path],
    *,
    replace: bool,
    same_counts: bool,
    progress: Progress | None,
    logs: dict[Path, tuple[Path, Conversion]],
) -> IngestResult:
    ws = registry.ws
    result = IngestResult()
    staged: list[_Staged] = []
    with ws.change("ingest reports") as change:
        try:
            _stage(registry, paths, staged, result, progress, logs)
            earlier = ledger(ws)
            entries: list[ReportEntry] = []
            for item in staged:
                # Counts carry no episode ids: the same counts again, in other bytes, would be
                # added to themselves. A lake's manifest proves its files new: no twin there.
                twin = (
                    twin_of(ws, item.tallies, [*earlier, *entries])
                    if item.scan is None and item.lake is None and not same_counts
                    else None
                )
                if twin is not None:
                    where = (
                        f"{twin.source} in this same call"
                        if twin in entries
                        else f"{twin.source} (ingested as {twin.path})"
                    )
                    raise ReportRejected(
                        f"{item.source}: holds exactly the counts of {where}: counts carry no "
                        "episode ids, so the same counts again would be added to themselves; "
                        "nothing stored (another batch that happens to hold the same counts: "
                        "--same-counts)"
                    )
                if item.scan is not None:
                    item.entry, item.tallies = against_earlier(
                        ws,
                        item.source,
                        item.entry,
                        item.tallies,
                        item.scan,
                        [*earlier, *entries],
                        replace,
                    )
                item.entry = write_counts(change, item.entry, item.tallies)
                entries.append(item.entry)
                change.expect([item.stored], data=True)
                item.incoming.replace(item.stored)
                if item.unjudged:
                    write_unjudged(change, item.entry.md5, item.unjudged)
                if item.lake is not None and item.entry.lake is not None:
                    change.write(ws.root / item.entry.lake, item.lake)
            if not entries:
                return result
            if progress is not None:
                progress("keeping in DVC", 0.0)
            tracked = change.track(
                [item.stored for item in staged],
                link="hardlink",
                known_md5={item.stored: item.entry.md5 for item in staged},
            )
            if progress is not None:
                progress("keeping in DVC", 1.0)
            for item in staged:  # DVC's hash of what it keeps must be the ledger's
                if tracked[item.stored].md5 != item.entry.md5:
                    raise GovError(f"{item.source}: changed while it was being ingested")
            write_ledger(change, [*earlier, *entries])
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
                    refs={
                        "path": e.path,
                        "source": e.source,
                        **({"lake": e.lake} if e.lake else {}),
                    },
                )
            result.ingested = entries
        except BaseException:
            for item in staged:
                discard(item.scan)
            raise
        finally:
            for item in staged:
                item.incoming.unlink(missing_ok=True)
    result.commit = change.sha
    # The episode tables are a local index, placed once the change is committed; one lost to a
    # crash here is rebuilt from its report when next needed.
    for item in staged:
        if item.scan is not None:
            place(item.scan, item.entry.md5, ws)
    return result


def _stage(
    registry: Registry,
    paths: Sequence[Path],
    staged: list[_Staged],
    result: IngestResult,
    progress: Progress | None,
    logs: dict[Path, tuple[Path, Conversion]],
) -> None:
    """Validate each file while a copy of it is made (and hashed) in reports/; a report read
    from an Inspect log is named by the log, which the entry records."""
    ws = registry.ws
    join = Join(registry)
    earlier = ledger(ws)
    known = {e.md5 for e in earlier}
    counted = _counted_lake_files(ws, earlier)
    reports_dir = ws.root / "reports"
    reports_dir.mkdir(exist_ok=True)
    flush = scm.syncs_objects(ws.repo)
    link = functools.cache(lambda: artifacts.links_reports(ws.root))  # once per call
    for path in paths:
        fmt = sniff(path)
        kind = detect_kind(path, fmt)
        incoming = reports_dir / f".incoming-{secrets.token_hex(6)}"
        before = file_stamp(path)
        copier = _Copy(path, incoming, flush, link)
        copier.start()
        scan: EpisodeScan | None = None
        both = _both(progress, copier, path) if progress is not None else None
        try:
            if kind == "episodes":
                scan = scan_episodes(ws, path, fmt, join, both)
                records, tallies, duplicates = scan.records, scan.tallies, scan.duplicates
            else:
                (records, tallies), duplicates = scan_aggregated(path, fmt, join), 0
        except BaseException:
            copier.cancelled.set()
            copier.join()
            incoming.unlink(missing_ok=True)
            raise
        while copier.is_alive():  # the copy may outlast the scan: the bar follows it
            copier.join(0.2)
            if both is not None:
                both("reading", 1.0)
        if both is not None:
            both("reading", 1.0)
        if copier.error is not None or file_stamp(path) != before:
            discard(scan)
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
            discard(scan)
            continue
        stored = reports_dir / f"{copier.md5}.{fmt}"
        if copier.linked:
            result.linked.append(copier.md5)
        without = _unjudged(path, join)
        try:
            lake = _lake_manifest(path, copier.md5, counted) if kind == "aggregated" else None
        except GovError:
            incoming.unlink(missing_ok=True)
            raise
        entry = ReportEntry(
            md5=copier.md5,
            size=path.stat().st_size,
            path=ws.rel(stored),
            source=logs[path][0].name if path in logs else path.name,
            format=fmt,
            kind=kind,
            records=records,
            counted=sum(t.n for t in tallies.values()),
            duplicates=duplicates,
            groups=len(tallies),
            ingested=utc_now(),
            unjudged=sum(u for _, u in without.values()),
            inspect=logs[path][1].source if path in logs else None,
            lake=ws.rel(ws.registry / "lakes" / f"{copier.md5}.json") if lake else None,
        )
        staged.append(_Staged(path, incoming, stored, entry, tallies, scan, without, lake))


def _both(progress: Progress, copier: _Copy, path: Path) -> Progress:
    """Progress of a report's scan held back to that of its copy: the bar is full only once
    both are done, and never goes back (DuckDB's estimate can, between a query's stages)."""
    size = max(path.stat().st_size, 1)
    shown = [0.0]

    def report(phase: str, fraction: float) -> None:
        shown[0] = max(shown[0], min(fraction, copier.copied / size, 1.0))
        progress(phase, shown[0])

    return report


class _Cell(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run: str
    step: Annotated[StrictInt, Field(ge=0)]
    environment: str
    environment_version: StrictInt | str
    episodes: Annotated[StrictInt, Field(ge=0)]
    unjudged: Annotated[StrictInt, Field(ge=0)]


class _JudgeRun(BaseModel):
    """What ingest reads of `gov judge run`'s REPORT.meta.json: which judge, and the episodes
    it gave no verdict per checkpoint and environment."""

    model_config = ConfigDict(extra="ignore")

    judge: str
    judge_version: str
    unjudged_by_checkpoint: list[_Cell] = []


def _unjudged(path: Path, join: Join) -> dict[Group, tuple[int, int]]:
    """The episodes a judge run left without a verdict, from the report's .meta.json beside it
    (none without one), per registry group; one line naming the file where it is bad."""
    meta = path.with_name(path.name + ".meta.json")
    if not meta.is_file():
        return {}
    try:
        run = _JudgeRun.model_validate_json(meta.read_bytes())
    except ValidationError as exc:
        raise GovError(f"{meta}: {validation_message(exc)}") from None
    found: dict[Group, tuple[int, int]] = {}
    for cell in run.unjudged_by_checkpoint:
        version: int | str = cell.environment_version
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        group = join.group(
            cell.run, cell.step, cell.environment, version, run.judge, run.judge_version
        )
        if isinstance(group, str):
            raise GovError(f"{meta}: {group}")
        episodes, missing = found.get(group, (0, 0))
        found[group] = (episodes + cell.episodes, missing + cell.unjudged)
    return found


def _counted_lake_files(
    ws: Workspace, earlier: Sequence[ReportEntry]
) -> dict[tuple[str, str], str]:
    """Every lake file whose episodes earlier counts hold, by (path in the lake, md5), with
    the stored report that counted it."""
    counted: dict[tuple[str, str], str] = {}
    for entry in earlier:
        if entry.lake is not None:
            manifest = LakeManifest.model_validate_json((ws.root / entry.lake).read_bytes())
            for f in manifest.files:
                counted.setdefault((f.path, f.md5), entry.path)
    return counted


def _lake_manifest(path: Path, md5: str, counted: dict[tuple[str, str], str]) -> bytes | None:
    """gov aggregate's manifest beside a counts file (COUNTS.jsonl.manifest.json), checked to
    be this file's (it names the counts' md5), to be kept with the counts; None without one.

    A lake file counted before (the same path in its lake and the same bytes) refuses the
    counts: its episodes would be counted twice, which per-episode reports catch by episode
    and counts cannot. `counted` gains this manifest's files."""
    beside = path.with_name(path.name + ".manifest.json")
    if not beside.is_file():
        return None
    data = beside.read_bytes()
    try:
        manifest = LakeManifest.model_validate_json(data)
    except ValidationError as exc:
        raise GovError(f"{beside}: not a lake manifest: {validation_message(exc)}") from None
    if manifest.counts_md5 != md5:
        raise GovError(
            f"{beside}: the manifest of other counts (md5 {manifest.counts_md5}, this file's "
            f"is {md5}): aggregate the lake again, or move the stale manifest away"
        )
    for f in manifest.files:
        if (f.path, f.md5) in counted:
            raise GovError(
                f"{path}: counts lake file {f.path} (md5 {f.md5}), whose episodes "
                f"{counted[(f.path, f.md5)]} already counts: aggregate a lake of only the new "
                "partitions"
            )
    for f in manifest.files:
        counted[(f.path, f.md5)] = str(path)
    return data


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
        + (f", counted from the lake files listed in {e.lake}" if e.lake else "")
        for e in entries
    )
    return summary, body
