"""Where each audit entry sits in the trail, and what a decision needs from all of it: derived
local state, so that `gov audit show` reads one line of a 100,000-entry trail instead of all of
it, and `gov check` does not read the whole trail for the monitor pressure on each environment
and the policies the last decision used.

The trail (audit/trail.jsonl and its sealed segments, audit/trail/*.jsonl, read in order as
one stream) stays the only source of truth. The index lives in the
workspace's local state (.gov/index/, never committed): the byte offset and id of every entry,
in trail order, how many bytes of the trail it covers, and summaries folded over its entries
(the interventions of each pressure kind per environment; the policies of the newest check or
policy change; the digests of the rollback recommendations recorded). A trail only grows, so the
index is extended from where it stopped while its last covered entry still sits where it did;
anything else rebuilds it from the trail. Every lookup reads the entry's own line back and checks
its id and number, and falls back to reading the whole trail on any mismatch: a stale index can
cost time, never give a wrong entry. The summaries hold for a trail that was only appended to;
one rewritten in the middle is refused by the trail guard before any decision read from them is
recorded (audit.guard verifies it whole when its verified bytes changed). Like the guard's own
mark, they are local state: as trustworthy as the machine's .gov folder, rebuilt on a clone.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .storage import read_index, write_index

ID_WIDTH = 65  # an id's 64 hex digits and a newline


def _files(state: Path) -> tuple[Path, Path, Path]:
    folder = state / "index"
    return folder / "trail.ids", folder / "trail.offsets", folder / "trail.json"


PRESSURE_KINDS = ("flag_raised", "redesign", "rollback_applied", "obfuscation_warning")
POLICY_KINDS = ("policy_change", "check")  # the entries that record the policies read
INGEST_KINDS = ("report_ingested", "report_replaced")  # the entries that record a report kept


def subject_environments(subject: dict[str, str]) -> list[str]:
    """An entry's environments: one (`environment`) or several (`environments`, comma-joined)."""
    if "environment" in subject:
        return [subject["environment"]]
    return [e for e in subject.get("environments", "").split(",") if e]


class TrailIndex:
    """The ids (a blob of ID_WIDTH bytes each) and byte offsets of a trail's entries, and the
    summaries folded over them."""

    def __init__(
        self,
        ids: bytes,
        offsets: array[int],
        size: int,
        pressure: dict[str, dict[str, int]] | None = None,
        policies: dict[str, str] | None = None,
        recommended: list[str] | None = None,
        reports: list[str] | None = None,
    ) -> None:
        self.ids = ids
        self.offsets = offsets
        self.size = size  # bytes of the trail covered
        self.pressure = pressure if pressure is not None else {}
        self.policies = policies  # None: no check or policy change yet
        self.recommended = recommended if recommended is not None else []  # their digests
        self.reports = reports if reports is not None else []  # md5s of the reports ingested

    @classmethod
    def empty(cls) -> TrailIndex:
        """The index of a trail with no entries."""
        return cls(b"", array("Q"), 0)

    def fold(self, entry: dict[str, Any]) -> None:
        """Take one more entry into the summaries."""
        kind = entry.get("kind")
        if kind in PRESSURE_KINDS:
            for env in subject_environments(entry.get("subject") or {}):
                counts = self.pressure.setdefault(env, dict.fromkeys(PRESSURE_KINDS, 0))
                counts[str(kind)] += 1
        elif kind == "rollback_recommended":
            digest = (entry.get("refs") or {}).get("digest")
            if isinstance(digest, str):
                self.recommended.append(digest)
        elif kind in INGEST_KINDS:
            named = (entry.get("inputs") or {}).get("reports")
            if isinstance(named, list):
                self.reports.extend(str(md5) for md5 in named)
        elif kind in POLICY_KINDS:
            policies = (entry.get("inputs") or {}).get("policies", self.policies)
            if isinstance(policies, dict):
                self.policies = policies

    @classmethod
    def load(cls, state: Path) -> TrailIndex | None:
        found = read_index(_files(state), "Q")
        if found is None:
            return None
        ids, offsets, meta = found
        try:
            count, size = int(meta["count"]), int(meta["size"])
            pressure, policies, recommended, reports = (
                meta["pressure"],
                meta["policies"],
                meta["recommended"],
                meta["reports"],
            )
            if list(meta["kinds"]) != list(PRESSURE_KINDS):
                return None
        except (ValueError, KeyError, TypeError):
            return None
        if len(ids) != count * ID_WIDTH or len(offsets) != count:
            return None
        return cls(ids, offsets, size, pressure, policies, recommended, reports)

    def save(self, state: Path) -> None:
        """Write the index (local state: a folder that cannot be written costs only speed)."""
        meta = {
            "count": len(self.offsets),
            "size": self.size,
            "kinds": list(PRESSURE_KINDS),
            "pressure": self.pressure,
            "policies": self.policies,
            "recommended": self.recommended,
            "reports": self.reports,
        }
        write_index(_files(state), self.ids, self.offsets, meta)

    def find(self, prefix: str) -> list[int]:
        """Positions (0-based) of the entries whose id starts with `prefix` (hex, lower case)."""
        needle = prefix.encode()
        found, start = [], 0
        while (at := self.ids.find(needle, start)) >= 0:
            if at % ID_WIDTH == 0:
                found.append(at // ID_WIDTH)
            start = at + 1
        return found


def build(data: bytes, base: TrailIndex | None = None) -> TrailIndex:
    """The index of a trail whose bytes after those `base` covers are `data` (with no base,
    `data` is the whole trail); `base` stays as it was."""
    base = base or TrailIndex.empty()
    ids = bytearray(base.ids)
    at = base.size
    index = TrailIndex(
        b"",
        array("Q", base.offsets),
        at,
        {env: dict(counts) for env, counts in base.pressure.items()},
        base.policies,
        list(base.recommended),
        list(base.reports),
    )
    for line in data.splitlines(keepends=True):
        if line.strip():
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an audit entry")
            ids += str(entry["id"]).encode().ljust(ID_WIDTH - 1, b"?")[: ID_WIDTH - 1] + b"\n"
            index.offsets.append(at)
            index.fold(entry)
        at += len(line)
    index.ids, index.size = bytes(ids), at
    return index


class _Stream:
    """The trail's files read as one stream of bytes (the sealed segments, then the active
    file): sealing moves bytes between files, never changes the stream."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)
        self.sizes = [p.stat().st_size for p in self.files]
        self.size = sum(self.sizes)

    def read(self, offset: int, length: int | None = None) -> bytes:
        """`length` bytes from `offset` (to the end: None)."""
        out, start = [], 0
        stop = self.size if length is None else min(self.size, offset + length)
        for path, size in zip(self.files, self.sizes, strict=True):
            end = start + size
            if end > offset and start < stop:
                with path.open("rb") as handle:
                    handle.seek(max(0, offset - start))
                    out.append(handle.read(min(end, stop) - max(start, offset)))
            start = end
        return b"".join(out)

    def line(self, offset: int) -> bytes:
        """The line that begins at `offset`."""
        found = b""
        while offset < self.size:
            chunk = self.read(offset, 1 << 16)
            cut = chunk.find(b"\n")
            if cut >= 0:
                return found + chunk[: cut + 1]
            found += chunk
            offset += len(chunk)
        return found


def current(state: Path, files: Sequence[Path]) -> TrailIndex:
    """The index of the trail as it is now (its files in order): loaded, extended by the
    entries appended since, or rebuilt. An unreadable entry raises ValueError (the caller reads
    the trail the slow way, which names the bad line)."""
    index = TrailIndex.load(state)
    stream = _Stream(files)
    if index is not None and index.size <= stream.size and _still_there(index, stream):
        if index.size == stream.size:
            return index
        index = build(stream.read(index.size), index)
    else:
        index = build(stream.read(0))
    index.save(state)
    return index


def _still_there(index: TrailIndex, stream: _Stream) -> bool:
    """The index's last entry still begins where it did, with its id, and ends where the
    index's coverage ends (the trail was only appended to since)."""
    if not index.offsets:
        return index.size == 0
    last = index.offsets[-1]
    line = stream.read(last, index.size - last)
    want = index.ids[-ID_WIDTH:-1].decode()
    return line.endswith(b"\n") and _id_of(line) == want


def _id_of(line: bytes) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return str(entry.get("id")) if isinstance(entry, dict) else None


def read_at(files: Sequence[Path], offset: int) -> dict[str, Any] | None:
    """The entry whose line begins at byte `offset` of the trail's files read in order."""
    try:
        entry = json.loads(_Stream(files).line(offset))
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None
