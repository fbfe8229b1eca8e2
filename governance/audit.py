"""The audit trail: an append-only, hash-chained record of every gate, flag, redesign and rollback.

Each entry is one JSON line of `audit/trail.jsonl` whose id is the sha256 of its content,
including the id of the entry before it, so an edited, deleted, inserted or reordered entry
breaks the chain. Every append is part of the registry change it records (one git commit, under
the workspace lock, journaled), and the commit carries the new chain head as a trailer: a chain
rewritten and recommitted no longer contains the heads that git history recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from . import scm, trailcommits, trailindex
from .errors import AuditError, GitError, GovError, TrailBroken, TrailRefused
from .models import utc_now
from .records import KINDS, QUARANTINE_HOLD, AuditBody, AuditEntry, AuditKind, canonical_json
from .storage import (
    FileStamp,
    atomic_write,
    file_stamp,
    iter_jsonl_lines,
    iter_jsonl_lines_reversed,
)
from .workspace import Change, Workspace

TRAIL = "trail.jsonl"
HEAD_TRAILER = "Gov-Audit-Head"
ENTRY_TRAILER = "Gov-Audit-Entry"
GENESIS = "0" * 64
# Interventions made on the monitor's evidence: each is optimization pressure on the CoT.
# interventions on monitor evidence, and warnings that the CoT is learning to hide from it
PRESSURE_KINDS = trailindex.PRESSURE_KINDS


# A long trail is kept in segments: every SEGMENT entries, the file's entries move, unchanged, to
# a sealed file of their own (audit/trail/<first seq>.jsonl) and trail.jsonl starts again. The
# chain runs on across them; read in order, they are the trail. Each commit then stores the
# short active file, not the whole trail again (a 100,000-entry trail is 47 MB: git hashed and
# compressed it twice a commit, and kept every version whole until it packs them).
SEALED = "trail"
SEGMENT = 10_000


def trail_path(ws: Workspace) -> Path:
    """The active file: the newest entries, where appends go."""
    return ws.audit / TRAIL


def sealed_paths(ws: Workspace) -> list[Path]:
    folder = ws.audit / SEALED
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def trail_files(ws: Workspace) -> list[Path]:
    """Every file of the trail in order: the sealed segments, then the active file."""
    return [*sealed_paths(ws), trail_path(ws)]


def _present(ws: Workspace) -> list[Path]:
    """The trail's files that exist, in order."""
    return [p for p in trail_files(ws) if p.is_file()]


def _contents(ws: Workspace) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in _present(ws)]


def entry_id(entry: dict[str, Any]) -> str:
    """The id an entry read from the trail should have: the hash of its content as written."""
    body = {k: v for k, v in entry.items() if k != "id"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def actor_of(ws: Workspace) -> str:
    """Who acts: the workspace's actor (the API's `actor` argument), else git's identity."""
    if ws.actor:
        return ws.actor
    reader = ws.repo.config_reader()
    name = reader.get_value("user", "name", default="unknown")
    email = reader.get_value("user", "email", default="")
    return f"{name} <{email}>" if email else str(name)


def _last_line(ws: Workspace) -> bytes:
    """The trail's last line, read from the end of its last file that has one."""
    for path in reversed(_present(ws)):
        line = next(iter_jsonl_lines_reversed(path), b"")
        if line:
            return line
    return b""


def append(
    change: Change,
    kind: AuditKind,
    *,
    subject: dict[str, str | None],
    outcome: str,
    inputs: dict[str, Any] | None = None,
    reason: str | None = None,
    refs: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the trail as part of `change` (its commit anchors the new head)."""
    ws = change.ws
    path = trail_path(ws)
    if not change.audit:
        guard(ws)  # nothing is written on top of a trail that fails verification
    if change.audit:
        prev, seq = change.audit[-1].id, change.audit[-1].seq + 1
    elif last_line := _last_line(ws):
        last = json.loads(last_line)
        prev, seq = last["id"], last["seq"] + 1
    else:
        prev, seq = GENESIS, 1
    first = _first_seq(path)  # of the active file
    if first is not None and seq - first >= SEGMENT:
        _seal(change, first)
    entry = AuditEntry.seal(
        AuditBody(
            seq=seq,
            prev=prev,
            kind=kind,
            time=utc_now().isoformat(),
            actor=actor_of(ws),
            subject={k: v for k, v in subject.items() if v is not None},
            inputs=inputs or {},
            outcome=outcome,
            reason=reason or None,
            refs=refs or None,
        )
    )
    change.append(path, entry.line())
    change.audit.append(entry)
    change.trailers = [t for t in change.trailers if not t.startswith(HEAD_TRAILER)]
    change.trailers += [f"{ENTRY_TRAILER}: {entry.id}", f"{HEAD_TRAILER}: {seq} {entry.id}"]
    return entry


def _first_seq(path: Path) -> int | None:
    """The number of the active file's first entry (None: it has none)."""
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                seq = json.loads(raw).get("seq")
                return seq if isinstance(seq, int) else None
    return None


def _seal(change: Change, first: int) -> None:
    """Move the active file's entries, unchanged, to a sealed segment named by its first entry,
    and start the active file again (both in `change`, so the trail reads the same after)."""
    ws = change.ws
    path = trail_path(ws)
    data = path.read_bytes()
    change.write(ws.audit / SEALED / f"{first:010d}.jsonl", data)
    change.write(path, b"")


# -- reading ----------------------------------------------------------------------------------
def read(
    ws: Workspace, contents: Sequence[tuple[Path, bytes]] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """("file:line", entry) of every entry, in order across the trail's files; a line that is
    not a JSON object is an error. `contents`: the files' bytes, already read."""
    if not ws.audit.is_dir():
        raise AuditError(
            f"{ws.rel(ws.audit)}: the audit folder is missing: run `gov init` to restore it"
        )
    files = (
        [(p, iter_jsonl_lines(p)) for p in _present(ws)]
        if contents is None
        else [
            (p, ((n, raw) for n, raw in enumerate(data.splitlines(), start=1) if raw.strip()))
            for p, data in contents
        ]
    )
    for path, lines in files:
        rel = ws.rel(path)
        for number, raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError as exc:
                raise AuditError(f"{rel}:{number}: not a JSON entry ({exc})") from exc
            if not isinstance(entry, dict) or "id" not in entry or "seq" not in entry:
                raise AuditError(f"{rel}:{number}: not an audit entry (no id or seq)")
            yield f"{rel}:{number}", entry


_RELATIVE = re.compile(r"(\d+)\s*([dhw])")


def parse_since(text: str) -> datetime:
    """An ISO date or time, or a span back from now: 7d, 24h, 2w."""
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        try:
            span = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
            return utc_now() - amount * span[unit]
        except OverflowError:  # further back than any date: everything is since then
            return datetime.min.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise GovError(
            f"{text!r}: not a date: use 2026-11-01, 2026-11-01T12:00 or a span like 7d, 24h",
            remedy="since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def log(
    ws: Workspace,
    *,
    since: datetime | None = None,
    run: str | None = None,
    checkpoint: str | None = None,
    environment: str | None = None,
    kind: str | None = None,
) -> list[AuditEntry]:
    """The entries that match every filter given, oldest first."""
    if kind is not None and kind not in KINDS:
        raise GovError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    found = []
    for _, entry in read(ws):
        subject = entry.get("subject", {})
        if since is not None and datetime.fromisoformat(entry["time"]) < since:
            continue
        if kind is not None and entry["kind"] != kind:
            continue
        if run is not None and subject.get("run") != run:
            continue
        if checkpoint is not None and subject.get("checkpoint") != checkpoint:
            continue
        if environment is not None and environment not in _environments(subject):
            continue
        found.append(AuditEntry.model_validate(entry))
    return found


@dataclass(frozen=True)
class Shown:
    """An entry and what it references, resolved from git: the commit that recorded it, the
    policy texts and the decision as committed then, reports no longer in the workspace."""

    entry: AuditEntry
    resolved: dict[str, Any]


def show(ws: Workspace, prefix: str) -> Shown:
    """One entry (by id prefix or seq) with what it references resolved from git."""
    matches = _lookup(ws, prefix)
    if not matches:
        raise GovError(f"no audit entry {prefix!r} (see `gov audit log`)")
    if len(matches) > 1:
        raise GovError(f"audit entry prefix {prefix!r} is ambiguous: give more of the id")
    entry = matches[0]
    resolved: dict[str, Any] = {}
    policies = list(entry.get("inputs", {}).get("policies", {}))
    decision = entry.get("refs", {}).get("decision")
    found = _committed(ws, entry, [*policies, *([decision] if decision else [])])
    if found is not None:
        commit, texts = found
        resolved["commit"] = commit
        if policies:  # None: the file did not exist in that commit
            resolved["policies"] = dict(zip(policies, texts, strict=False))
        if decision:
            try:
                resolved["decision"] = None if texts[-1] is None else json.loads(texts[-1])
            except ValueError:  # not JSON
                resolved["decision"] = None
    missing = [
        md5 for md5 in entry.get("inputs", {}).get("reports", []) if not _report_present(ws, md5)
    ]
    if missing:
        resolved["reports_missing"] = missing
    return Shown(AuditEntry.model_validate(entry), resolved)


def _lookup(ws: Workspace, prefix: str) -> list[dict[str, Any]]:
    """The entries `prefix` names: a number is an entry's seq, anything else a prefix of its id.
    Found through the trail's index (governance.trailindex), each read back from its own line and
    checked; the whole trail is read only where the index cannot answer."""
    by_seq = prefix.isdigit() and len(prefix) < 12

    def names(entry: dict[str, Any] | None) -> bool:
        if entry is None or "id" not in entry or "seq" not in entry:
            return False
        return str(entry["seq"]) == prefix if by_seq else entry["id"].startswith(prefix.lower())

    index = _index(ws) if prefix else None
    if index is not None:
        places = (
            [int(prefix) - 1] if by_seq and 0 < int(prefix) <= len(index.offsets) else []
        ) or ([] if by_seq else index.find(prefix.lower()))
        found = [trailindex.read_at(_present(ws), index.offsets[p]) for p in places]
        if found and all(names(e) for e in found):
            return [e for e in found if e is not None]
    return [e for _, e in read(ws) if names(e)]


def _report_present(ws: Workspace, md5: str) -> bool:
    """The report's data (not just its .dvc file) is in the workspace."""
    return any(not p.name.endswith(".dvc") for p in (ws.root / "reports").glob(f"{md5}.*"))


def _repo_path(ws: Workspace, rel: str) -> str:
    return (ws.root / rel).resolve().relative_to(scm.work_tree(ws.repo)).as_posix()


def _committed(
    ws: Workspace, entry: dict[str, Any], paths: Sequence[str]
) -> tuple[str, list[str | None]] | None:
    """The newest commit whose message names the entry, and `paths` as that commit recorded
    them (None: not in it); None where no commit names the entry. The commit is found through
    the derived map of the commits (governance.trailcommits) and checked against its own
    message, else by walking the history back to it."""
    head = scm.objects(ws.root, ["HEAD"])[0]
    if head is None:  # no commit yet: none names the entry
        return None
    inside = [p for p in paths if _in_workspace(p)]
    mapped = _mapped_commit(ws, entry, head[0])
    if mapped is not None:
        found = scm.objects(ws.root, [mapped, *[f"{mapped}:./{p}" for p in inside]])
        message = found[0][1].decode(errors="replace") if found[0] else ""
        if f"{ENTRY_TRAILER}: {entry['id']}" in message.partition("\n\n")[2].splitlines():
            return mapped, _texts(paths, inside, found[1:])
    logged = _git(ws, "log", "--format=%H", "-F", f"--grep={ENTRY_TRAILER}: {entry['id']}", "-1")
    commit = (logged or "").strip()
    if not commit:
        return None
    found = scm.objects(ws.root, [f"{commit}:./{p}" for p in inside])
    return commit, _texts(paths, inside, found)


def _in_workspace(path: str) -> bool:
    """A path an entry names that lies in the workspace (one line, relative, no `..`): others
    (a hand-edited trail's) are not asked of git, and read as not in the commit. One line as
    `scm.objects` takes it: no line feed or carriage return."""
    parts = PurePosixPath(path).parts
    one_line = "\n" not in path and "\r" not in path
    return bool(parts) and not path.startswith("/") and ".." not in parts and one_line


def _texts(
    paths: Sequence[str], inside: Sequence[str], found: Sequence[tuple[str, bytes] | None]
) -> list[str | None]:
    """Each of `paths` as text (None: not in the commit), from what was found of `inside`."""
    by_path = dict(zip(inside, found, strict=True))
    return [_text(by_path.get(p)) for p in paths]


def _text(found: tuple[str, bytes] | None) -> str | None:
    """A file's text as `git show` prints it: its final newline dropped."""
    if found is None:
        return None
    text = found[1].decode(errors="replace")
    return text[:-1] if text.endswith("\n") else text


def _git(ws: Workspace, *args: str, refused: Collection[int] = ()) -> str | None:
    """git's answer in the workspace (`scm.output`), without opening the repository through
    GitPython: `gov audit show` asks only this, and starts in a fraction of the time."""
    return scm.output(ws.root, *args, refused=refused)


def _mapped_commit(ws: Workspace, entry: dict[str, Any], head: str) -> str | None:
    """The commit the map says names the entry (unchecked: the caller reads its message)."""
    index = _index(ws)
    if index is None:
        return None
    places = index.find(str(entry["id"]))
    if len(places) != 1:
        return None

    def position(entry_id: str) -> int | None:  # of an entry named by a commit made since
        found = index.find(entry_id)
        return found[0] if len(found) == 1 else None

    def log(base: str) -> list[tuple[str, list[str]]]:
        return [(commit, ids) for commit, ids, _ in _naming_commits(ws, f"{base}..HEAD")]

    def is_ancestor(commit: str) -> bool:  # 1: it is not; 128: no such commit (any more)
        return _git(ws, "merge-base", "--is-ancestor", commit, "HEAD", refused=(1, 128)) is not None

    try:
        entries = len(index.offsets)
        kept = trailcommits.current(ws.local(), head, position, entries, log, is_ancestor)
    except (OSError, ValueError, GitError):  # the search then falls to git, which says why
        return None
    return None if kept is None else kept.commit(places[0])


def _naming_commits(
    ws: Workspace, *revisions: str, names: bool = False
) -> list[tuple[str, list[str], str]]:
    """Every commit, newest first, whose message names audit entries (its Gov-Audit-Entry
    trailers), in the history of `revisions` (HEAD's by default): its sha, the entry ids it
    names, and with `names` the files it changed (whitespace-separated; else empty). A history
    git cannot read (no commit yet, an unknown revision) is a GitError in git's words."""
    log = _git(
        ws,
        "log",
        *revisions,
        f"--grep=^{ENTRY_TRAILER}: ",
        f"--format=%x00%H%x00%(trailers:key={ENTRY_TRAILER},valueonly,separator=;)%x00",
        *(["--name-only"] if names else []),
    )
    parts = (log or "").split("\x00")
    return [
        (parts[i], [v.strip() for v in parts[i + 1].split(";") if v.strip()], parts[i + 2])
        for i in range(1, len(parts) - 2, 3)
    ]


# -- verifying --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verification:
    entries: int
    head: str | None
    anchored: int  # chain heads recorded by git commits, all found in the chain
    missing_reports: list[str]


def verify(ws: Workspace, *, decisions: bool = True) -> Verification:
    """Check the chain link by link and against the heads git history recorded, and (with
    `decisions`) each check's decision file against the hash its entry recorded; raise
    TrailBroken naming the first bad entry. The check before a write leaves the decision files
    out: a long run's are gigabytes, and a write needs the chain whole, not every decision read."""
    path = ws.rel(trail_path(ws))
    contents = _contents(ws)
    data = b"".join(d for _, d in contents)
    by_seq: dict[int, str] = {}
    prev = GENESIS
    expected = 1
    count = 0
    missing: set[str] = set()
    for where, entry in read(ws, contents):
        count += 1
        _check_link(where, entry, expected, prev)
        if decisions:
            _check_decision(ws, where, entry)
        for md5 in entry.get("inputs", {}).get("reports", []):
            if not _report_present(ws, md5):
                missing.add(md5)
        by_seq[entry["seq"]] = entry["id"]
        prev = entry["id"]
        expected += 1
    anchored = 0
    rel = _repo_path(ws, path)
    heads = ws.repo.git.log(
        f"--format=%H %(trailers:key={HEAD_TRAILER},valueonly,separator=;)", "--", rel
    )
    mismatched: list[tuple[int, str]] = []
    for line in heads.splitlines():
        commit, _, value = line.partition(" ")
        for head in filter(None, (v.strip() for v in value.split(";"))):
            seq_text, _, head_id = head.partition(" ")
            if by_seq.get(int(seq_text)) != head_id:
                mismatched.append((int(seq_text), commit))
            else:
                anchored += 1
    if mismatched:
        seq, commit = min(mismatched)
        first = _first_difference(ws, commit, seq)
        raise TrailBroken(
            f"{path}: entry {first} is not what commit {commit[:12]} recorded: the trail was "
            "rewritten after it was committed"
        )
    for file, content in contents:
        committed = _committed_text(ws, ws.rel(file))
        if committed is not None and not content.startswith(committed):
            raise TrailBroken(
                f"{ws.rel(file)}: the working copy differs from the committed trail before its end"
            )
    if data:
        _mark_verified(ws, contents, count, prev)
        _index(ws)  # where each entry is, for `show`, kept current
    return Verification(count, prev if count else None, anchored, sorted(missing))


def _check_decision(ws: Workspace, where: str, entry: dict[str, Any]) -> None:
    """A check's decision file is the one its entry recorded (entries since the hash was kept):
    a decision edited afterwards (a block turned into a pass) breaks the trail."""
    refs = entry.get("refs") or {}
    digest, name = refs.get("decision_sha256"), refs.get("decision")
    if entry.get("kind") != "check" or not isinstance(digest, str) or not isinstance(name, str):
        return
    try:
        found = hashlib.sha256((ws.root / name).read_bytes()).hexdigest()
    except OSError:
        raise TrailBroken(f"{where}: its decision {name} is gone") from None
    if found != digest:
        raise TrailBroken(
            f"{where}: its decision {name} is not the one it recorded (the file was changed "
            "after the check)"
        )


VERIFIED = "verified-trail.json"  # in the workspace's local state: how far the trail was verified


def guard(ws: Workspace) -> None:
    """Verify the trail before anything is appended to it, cheaply: a trail whose first bytes are
    still those verified last time is checked from there on, link by link; any other is
    verified in full (the chain and the heads git recorded). Raises TrailRefused naming the
    first bad entry.

    Sealed segments never change once written: while each has the size, inode and change times
    it had when verified (what any write, copy or checkout changes, as git's index assumes), only
    the active file is read, so an append costs the same at any length of trail. `gov audit
    verify` always reads every byte."""
    known = _read_mark(ws)
    active = trail_path(ws)
    sealed = [p for p in _present(ws) if p != active]
    stats = _stats(sealed)
    try:
        cut = False  # the trail holds fewer entries than git recorded: verify it all
        if known is not None and known["sealed"] == stats:
            data = active.read_bytes() if active.is_file() else b""
            size, digest = known["pieces"][-1]
            if size <= len(data) and hashlib.sha256(data[:size]).hexdigest() == digest:
                seq, head = _verify_from(ws, [(active, data)], size, known["seq"], known["id"])
                if _newest_recorded_seq(ws) <= seq:
                    pieces = [*known["pieces"][:-1], _piece(data)]
                    _write_mark(ws, pieces, stats, seq, head)
                    return
                # git recorded a later head than the trail holds: entries were cut off the
                # end, back to what was verified before; the full verification names them
                cut = True
        contents = _contents(ws)
        if not contents:
            return
        verified = None if cut else _verified_prefix(known, b"".join(d for _, d in contents))
        if known is not None and verified is not None:
            seq, head = _verify_from(ws, contents, verified, known["seq"], known["id"])
        else:
            done = verify(ws, decisions=False)
            seq, head = done.entries, done.head or GENESIS
    except TrailBroken as exc:
        raise TrailRefused(
            f"refusing to write: {exc} (see `gov audit verify`; restore the trail from git)"
        ) from exc
    _mark_verified(ws, contents, seq, head)


def _newest_recorded_seq(ws: Workspace) -> int:
    """The number of the newest head a gov commit recorded for the trail (0: none): a trail
    holding fewer entries than that was cut back, even to bytes verified before."""
    rel = _repo_path(ws, ws.rel(trail_path(ws)))
    found = ws.repo.git.log(
        "-1",
        f"--grep=^{HEAD_TRAILER}: ",
        f"--format=%(trailers:key={HEAD_TRAILER},valueonly,separator=;)",
        "--",
        rel,
    )
    heads = [v.strip() for v in found.split(";") if v.strip()]
    return max((int(h.partition(" ")[0]) for h in heads if h[:1].isdigit()), default=0)


def _piece(data: bytes) -> list[Any]:
    return [len(data), hashlib.sha256(data).hexdigest()]


def _verified_prefix(known: dict[str, Any] | None, whole: bytes) -> int | None:
    """How many bytes of the trail (its files read in order) were verified last time, if they
    are unchanged (a seal moves bytes from the active file to a segment, unchanged)."""
    if known is None:
        return None
    offset = 0
    for size, digest in known["pieces"]:
        piece = whole[offset : offset + size]
        if len(piece) != size or hashlib.sha256(piece).hexdigest() != digest:
            return None
        offset += size
    return offset


def _read_mark(ws: Workspace) -> dict[str, Any] | None:
    """What the last verification recorded (None: nothing usable)."""
    try:
        known = json.loads((ws.state / VERIFIED).read_bytes())
        if not (
            isinstance(known["seq"], int)
            and isinstance(known["id"], str)
            and isinstance(known["sealed"], list)
            and known["pieces"]
            and all(isinstance(s, int) and isinstance(d, str) for s, d in known["pieces"])
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(known)


def _stats(paths: Sequence[Path]) -> list[list[Any]]:
    """Per file, what a write or a replacement changes: name, size, inode, mtime, ctime."""
    found = []
    for path in paths:
        st = path.stat()
        found.append([path.name, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns])
    return found


def _mark_verified(
    ws: Workspace, contents: Sequence[tuple[Path, bytes]], seq: int, head: str
) -> None:
    """Remember that the trail as `contents` holds it (every file, read in order) was verified."""
    active = trail_path(ws)
    sealed = [p for p, _ in contents if p != active]
    pieces = [_piece(d) for p, d in contents if p != active]
    pieces.append(_piece(next((d for p, d in contents if p == active), b"")))
    _write_mark(ws, pieces, _stats(sealed), seq, head)


def _write_mark(
    ws: Workspace, pieces: list[list[Any]], sealed: list[list[Any]], seq: int, head: str
) -> None:
    """Local state: the next append checks only what follows these pieces (each file's size and
    hash, the active file last), and only while they are unchanged. A read-only state folder
    only costs the next append a full verification."""
    record = {"seq": seq, "id": head, "pieces": pieces, "sealed": sealed}
    with contextlib.suppress(OSError):
        atomic_write(ws.local(VERIFIED), json.dumps(record).encode())


def _check_link(where: str, entry: dict[str, Any], expected: int, prev: str) -> None:
    """Entry `expected` of the chain, following the entry whose id is `prev`, unedited; else
    TrailBroken naming its line (`where`: file:line)."""
    if entry["seq"] != expected:
        raise TrailBroken(
            f"{where}: entry {entry['seq']} is out of place (expected entry "
            f"{expected}): an entry was deleted, inserted or moved"
        )
    if entry["prev"] != prev:
        raise TrailBroken(
            f"{where}: entry {entry['seq']} does not follow entry {expected - 1} "
            "(its prev hash differs): the chain was cut or reordered here"
        )
    if entry_id(entry) != entry["id"]:
        raise TrailBroken(f"{where}: entry {entry['seq']} was edited (its hash does not match)")


def _verify_from(
    ws: Workspace, contents: Sequence[tuple[Path, bytes]], offset: int, seq: int, prev: str
) -> tuple[int, str]:
    """Check the entries after byte `offset` of the trail's files read in order follow entry
    `seq` (id `prev`) link by link."""
    start = 0
    for path, data in contents:
        end = start + len(data)
        if end > offset:
            skip = max(0, offset - start)
            rel = ws.rel(path)
            number = data[:skip].count(b"\n")
            for raw in data[skip:].splitlines():
                number += 1
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                    _check_link(f"{rel}:{number}", entry, seq + 1, prev)
                except (ValueError, KeyError, TypeError) as exc:
                    raise TrailBroken(f"{rel}:{number}: not an audit entry ({exc})") from exc
                seq, prev = entry["seq"], entry["id"]
        start = end
    return seq, prev


# What the commit carrying an entry of each kind must also have changed (a path prefix, relative
# to the workspace): an entry appended to the trail by hand, even with a valid hash and a copied
# trailer, changes nothing else. A recommendation writes only the trail.
KIND_FILES: dict[str, tuple[str, ...]] = {
    "check": ("audit/decisions/",),
    "policy_change": ("audit/decisions/",),
    "promotion": ("registry/checkpoints/",),
    "override": ("registry/checkpoints/",),
    "flag_raised": ("registry/flags/",),
    "flag_acknowledged": ("registry/flags/",),
    "flag_resolved": ("registry/flags/", "registry/environments/"),
    "redesign": ("registry/environments/",),
    "rollback_applied": ("registry/runs/", "audit/rollbacks/"),
    "report_ingested": ("registry/reports.jsonl",),
    "report_replaced": ("registry/reports.jsonl",),
    "status_change": ("registry/checkpoints/",),
    "environment_retired": ("registry/environments/",),
    "judge_calibrated": ("registry/calibrations/",),
    "obfuscation_warning": ("audit/decisions/",),
}


ANCHOR_TAGS = "gov-anchor"  # refs/tags/gov-anchor/<seq>: the heads `gov audit anchor` recorded


@dataclass(frozen=True)
class Anchor:
    tag: str
    seq: int
    head: str
    commit: str
    pushed_to: str | None


def anchor(ws: Workspace, remote: str | None = None) -> Anchor:
    """Record the trail's current head (verified first) as an annotated tag on the commit that
    holds it, and push the tag to `remote`: a host that protects tags keeps it out of reach of a
    local rewrite, and `verify` compares the trail against every anchor it finds."""
    done = verify(ws)
    if not done.entries or done.head is None:
        raise GovError("the audit trail is empty: nothing to anchor yet")
    seq, head = done.entries, done.head
    tag = f"{ANCHOR_TAGS}/{seq}"
    existing = {t.name: t for t in ws.repo.tags}
    if tag in existing:
        recorded = _anchored_heads(ws).get(tag)
        if recorded != (seq, head):
            raise TrailBroken(f"tag {tag} records another head than the trail's entry {seq}")
    else:
        ws.repo.create_tag(
            tag, ref="HEAD", message=f"gov audit anchor\n\n{HEAD_TRAILER}: {seq} {head}\n"
        )
    if remote is not None:
        import git

        try:
            ws.repo.git.push(remote, f"refs/tags/{tag}")
        except git.GitCommandError as exc:
            detail = " ".join(str(exc.stderr or exc).split())[:200]
            raise GovError(f"could not push {tag} to {remote}: {detail}") from None
    commit = ws.repo.tags[tag].commit.hexsha
    return Anchor(tag, seq, head, commit, remote)


def _anchored_heads(ws: Workspace) -> dict[str, tuple[int, str]]:
    """tag -> (seq, head) of every anchor tag in the repository (fetched ones too)."""
    listed = ws.repo.git.for_each_ref(
        f"refs/tags/{ANCHOR_TAGS}/", "--format=%(refname:short)%00%(contents)%00"
    )
    found: dict[str, tuple[int, str]] = {}
    parts = listed.split("\x00")
    for tag, contents in zip(parts[0::2], parts[1::2], strict=False):
        for line in contents.splitlines():
            if line.startswith(f"{HEAD_TRAILER}: "):
                seq_text, _, head = line.removeprefix(f"{HEAD_TRAILER}: ").partition(" ")
                if seq_text.isdigit():
                    found[tag.strip()] = (int(seq_text), head.strip())
    return found


def verify_anchors(ws: Workspace) -> int:
    """Compare the trail with every anchored head: each must still be in it, unchanged.
    Returns how many anchors were checked."""
    rel = ws.rel(trail_path(ws))
    by_seq = {entry["seq"]: entry["id"] for _, entry in read(ws)}
    anchors = _anchored_heads(ws)
    for tag, (seq, head) in sorted(anchors.items(), key=lambda kv: kv[1][0]):
        if seq not in by_seq:
            raise TrailBroken(
                f"{rel}: entry {seq}, anchored by tag {tag}, is missing: the trail was cut back"
            )
        if by_seq[seq] != head:
            raise TrailBroken(
                f"{rel}: entry {seq} is not what tag {tag} anchored: the trail was rewritten"
            )
    return len(anchors)


def verify_commits(ws: Workspace, allowed_signers: Path | None = None) -> int:
    """Check every entry against the commit that carries it: each entry is in a gov commit (its
    Gov-Audit-Entry trailer), the working copy holds no entry beyond the last commit, and the
    commit changed what an entry of its kind changes; with `allowed_signers` (git's SSH
    allowed-signers file), each such commit is signed by one of its keys. Returns how many
    entries were checked; raises TrailBroken naming the first bad one."""
    rel = ws.rel(trail_path(ws))
    entries = [entry for _, entry in read(ws)]
    if not entries:
        return 0
    root = _repo_path(ws, ".")
    prefix = "" if root == "." else root.rstrip("/") + "/"
    carried: dict[str, tuple[str, set[str]]] = {}
    for commit, ids, names in _naming_commits(ws, names=True):
        files = {
            n[len(prefix) :] if n.startswith(prefix) else n for n in names.split() if n.strip()
        }
        for entry_id in ids:
            carried.setdefault(entry_id, (commit, files))
    head = scm.head(ws.repo)
    if head is not None:  # for `gov audit show`: which commit carries each entry
        trailcommits.build(
            head, [carried[e["id"]][0] if e["id"] in carried else None for e in entries]
        ).save(ws.local())
    in_head = 0
    for file in trail_files(ws):
        committed = _committed_text(ws, ws.rel(file))
        if committed:
            in_head += sum(1 for line in committed.splitlines() if line.strip())
    signed: set[str] = set()
    for entry in entries:
        seq, kind = entry["seq"], entry.get("kind", "")
        if seq > in_head:
            raise TrailBroken(
                f"{rel}: entry {seq} ({kind}) is in no commit: gov commits every entry it "
                "writes, so it was appended by hand"
            )
        found = carried.get(entry["id"])
        if found is None:
            raise TrailBroken(
                f"{rel}: entry {seq} ({kind}) is in no gov commit (no {ENTRY_TRAILER} names it): "
                "it was committed by hand"
            )
        commit, files = found
        if allowed_signers is not None and commit not in signed:
            _check_signature(ws, commit, allowed_signers, rel, seq, kind)
            signed.add(commit)
        expected = KIND_FILES.get(kind)
        if expected and not any(f.startswith(p) for f in files for p in expected):
            raise TrailBroken(
                f"{rel}: entry {seq} ({kind}) is carried by commit {commit[:12]}, which changed "
                f"none of {', '.join(expected)}: a {kind} entry without its {kind}"
            )
    return len(entries)


def _check_signature(
    ws: Workspace, commit: str, allowed_signers: Path, rel: str, seq: int, kind: str
) -> None:
    """git's own check of an SSH signature against the allowed-signers file."""
    import git

    try:
        ws.repo.git.execute(
            [
                "git",
                "-c",
                f"gpg.ssh.allowedSignersFile={allowed_signers.resolve()}",
                "verify-commit",
                commit,
            ]
        )
    except git.GitCommandError as exc:
        why = " ".join(str(exc.stderr or "").split())[:160] or "no signature"
        raise TrailBroken(
            f"{rel}: entry {seq} ({kind}) is carried by commit {commit[:12]}, which is not signed "
            f"by an allowed key ({why})"
        ) from None


class StatusReplay:
    """Checkpoint statuses as the trail's entries set them, one entry at a time, in order: a
    promotion or override promotes; a check that blocks blocks, but leaves a quarantine as it
    is; a status change sets its outcome. `checks_only` reads checks and promotions alone (what
    a checkpoint comes back to when its quarantine is released)."""

    def __init__(self, *, checks_only: bool = False) -> None:
        self.checks_only = checks_only
        self.status: dict[str, str] = {}  # checkpoint -> status
        self.by: dict[str, str] = {}  # checkpoint -> the kind of entry that set it
        # checkpoint -> a status an earlier gov also left: its check blocked a quarantined one
        self.legacy: dict[str, str] = {}

    def add(self, entry: dict[str, Any]) -> None:
        kind = entry.get("kind")
        ref = (entry.get("subject") or {}).get("checkpoint", "")
        if kind in ("promotion", "override"):
            self._set(ref, "promoted", str(kind))
        elif kind == "check" and entry.get("outcome") == "block":
            held = (entry.get("refs") or {}).get("fired") == [QUARANTINE_HOLD]
            if held:  # only the quarantine blocked it: its evidence did not
                if self.checks_only:
                    self._set(ref, "registered", "check")
            elif self.status.get(ref) != "quarantined":
                self._set(ref, "blocked", "check")
            else:
                self.legacy[ref] = "blocked"
        elif kind == "status_change" and not self.checks_only:
            self._set(ref, str(entry.get("outcome")), "status_change")

    def allows(self, ref: str, status: str) -> bool:
        """Whether the trail accounts for `ref` being `status` now."""
        return status == self.status.get(ref, "registered") or status == self.legacy.get(ref)

    def _set(self, ref: str, status: str, kind: str) -> None:
        self.status[ref], self.by[ref] = status, kind
        self.legacy.pop(ref, None)


def replayed_statuses(ws: Workspace, *, checks_only: bool = False) -> dict[str, str]:
    """Every checkpoint's status as the trail sets it (a checkpoint it never names is
    registered)."""
    replay = StatusReplay(checks_only=checks_only)
    for _, entry in read(ws):
        replay.add(entry)
    return replay.status


def verify_statuses(
    ws: Workspace,
    promoted: list[str],
    flags: list[tuple[str, str]],
    blocked: Sequence[str] = (),
    in_redesign: Sequence[str] = (),
    quarantined: Sequence[str] = (),
    calibrated: Sequence[tuple[str, str, str]] = (),
    retired: Sequence[str] = (),
    statuses: Mapping[str, str] | None = None,
    environments: Mapping[str, str] | None = None,
) -> None:
    """The registry's statuses replayed from the trail (`statuses`, `environments`: every
    checkpoint's and environment's status now, each compared with what the trail left it at,
    after the checks below name the common cases): every promoted checkpoint has the
    promotion (or override) entry that promoted it, with no status change after it, every
    blocked one a check that blocked it, every quarantined one the status change that set it
    aside as its last, every flag the entry that raised it, every environment in redesign the
    rollback that put it there, every retired one the entry that retired it, every calibration
    the entry that recorded it (judge, version, label file hash)."""
    rel = ws.rel(trail_path(ws))
    promotions: dict[str, int] = {}  # checkpoint -> the place of its last promotion
    blocks: set[str] = set()
    raised: set[tuple[str, str]] = set()
    redesigned: set[str] = set()
    marked: set[tuple[str, str]] = set()  # (checkpoint, status) set by a status change
    last_marked: dict[str, tuple[int, str]] = {}  # checkpoint -> (place, status) of the last
    retirements: set[str] = set()
    # environment -> its status as the trail sets it: a flag raised flags it, a rollback puts the
    # environments it names in redesign, a new version makes it active, a retirement retires it
    env_left: dict[str, str] = {}
    calibrations: set[tuple[str, str, str]] = set()  # (judge, version, labels hash)
    replay = StatusReplay()
    for place, (_, entry) in enumerate(read(ws)):
        replay.add(entry)
        subject = entry.get("subject") or {}
        kind = entry.get("kind")
        if kind in ("promotion", "override"):
            promotions[subject.get("checkpoint", "")] = place
        elif kind == "check" and entry.get("outcome") == "block":
            blocks.add(subject.get("checkpoint", ""))
        elif kind == "flag_raised":
            raised.add((subject.get("environment", ""), subject.get("checkpoint", "")))
            env_left[subject.get("environment", "")] = "flagged"
        elif kind == "rollback_applied":
            named = set(filter(None, subject.get("environments", "").split(",")))
            redesigned.update(named)
            retirements -= named  # an earlier gov put a retired environment in redesign
            env_left.update(dict.fromkeys(named, "in_redesign"))
        elif kind == "environment_retired":
            retirements.add(subject.get("environment", ""))
            env_left[subject.get("environment", "")] = "retired"
        elif kind == "redesign":
            retirements.discard(subject.get("environment", ""))
            env_left[subject.get("environment", "")] = "active"
        elif kind == "status_change":
            ref, outcome = subject.get("checkpoint", ""), str(entry.get("outcome"))
            marked.add((ref, outcome))
            last_marked[ref] = (place, outcome)
        elif kind == "judge_calibrated":
            labels = str((entry.get("inputs") or {}).get("labels", ""))
            calibrations.add((subject.get("judge", ""), subject.get("judge_version", ""), labels))
    for ref in blocked:
        if ref not in blocks and (ref, "blocked") not in marked:
            raise TrailBroken(f"{rel}: {ref} is blocked, but no check in the trail blocked it")
    for judge, version, digest in calibrated:
        if (judge, version, f"sha256:{digest}") not in calibrations:
            raise TrailBroken(
                f"{rel}: {judge}@{version} has a calibration, but no entry of the trail recorded "
                "it: its confusion matrix was written by hand"
            )
    for ref in quarantined:
        if last_marked.get(ref, (0, ""))[1] != "quarantined":
            raise TrailBroken(
                f"{rel}: {ref} is quarantined, but no entry of the trail quarantined it"
                + (" since it was released" if (ref, "quarantined") in marked else "")
            )
    for env in retired:
        if env not in retirements:
            raise TrailBroken(f"{rel}: {env} is retired, but no entry of the trail retired it")
    for env in in_redesign:
        if env not in redesigned:
            raise TrailBroken(
                f"{rel}: {env} is in redesign, but no rollback in the trail put it there"
            )
    for ref in promoted:
        if ref not in promotions:
            raise TrailBroken(
                f"{rel}: {ref} is promoted, but no entry of the trail promotes it: the entry "
                "was removed, or the status was set by hand"
            )
        later = last_marked.get(ref)
        if later is not None and later[0] > promotions[ref]:
            raise TrailBroken(
                f"{rel}: {ref} is promoted, but the trail set it {later[1]} after its last "
                "promotion: the status was set back by hand"
            )
    for env, ref in flags:
        if (env, ref) not in raised:
            raise TrailBroken(
                f"{rel}: {env} is flagged (at {ref}), but no entry of the trail raised that flag"
            )
    for ref, status in (statuses or {}).items():
        left = replay.status.get(ref, "registered")
        if not replay.allows(ref, status):
            by = f" (by a {replay.by[ref]} entry)" if ref in replay.by else ""
            raise TrailBroken(
                f"{rel}: {ref} is {status}, but the trail left it {left}{by}: the status was "
                "changed by hand"
            )
    for env, status in (environments or {}).items():
        if env in retirements and status != "retired":
            raise TrailBroken(
                f"{rel}: {env} is {status}, but the trail retired it: the status was changed "
                "by hand"
            )
        left = env_left.get(env, "active")
        if status != left:
            raise TrailBroken(
                f"{rel}: {env} is {status}, but the trail left it {left}: the status was "
                "changed by hand"
            )


def _first_difference(ws: Workspace, commit: str, upto: int) -> int:
    """The first entry (seq) that differs from the trail as `commit` recorded it."""
    import git

    sealed = _repo_path(ws, f"{ws.rel(ws.audit)}/{SEALED}")
    names = ws.repo.git.ls_tree("-r", "--name-only", commit, "--", sealed).split()
    then: list[str] = []
    for name in [*sorted(names), _repo_path(ws, ws.rel(trail_path(ws)))]:
        try:
            then += ws.repo.git.show(f"{commit}:{name}").splitlines()
        except git.GitCommandError:  # not in that commit
            continue
    now = [line for p in _present(ws) for line in p.read_text().splitlines()]
    for index, (old, new) in enumerate(zip(then[:upto], now, strict=False)):
        if old != new:
            return index + 1
    return upto


def _tracked(ws: Workspace, rel: str) -> bool:
    return bool(ws.repo.git.ls_files("--", _repo_path(ws, rel)))


def _committed_text(ws: Workspace, rel: str) -> bytes | None:
    if not _tracked(ws, rel):
        return None
    import git

    try:
        text = ws.repo.git.show(f"HEAD:{_repo_path(ws, rel)}", stdout_as_string=False)
    except git.GitCommandError:  # not committed yet
        return None
    return bytes(text)


# -- monitor pressure -------------------------------------------------------------------------
def pressure(ws: Workspace) -> dict[str, dict[str, int]]:
    """Per environment: how many interventions of each kind were made on monitor evidence."""
    return {env: dict(counts) for env, counts in _summaries(ws).pressure.items()}


def _summaries(ws: Workspace) -> trailindex.TrailIndex:
    """What the trail's index folds over its entries (governance.trailindex: extended by the
    entries appended since it was last read); folded here over the trail read whole where the
    index cannot be had (a bad line is then named)."""
    index = _index(ws)
    if index is None:
        index = trailindex.TrailIndex.empty()
        for _, entry in read(ws):
            index.fold(entry)
    return index


# The index read once per process and trail state: a check asks for the pressure once per
# environment.
_index_seen: dict[tuple[FileStamp | None, ...], trailindex.TrailIndex] = {}


def _index(ws: Workspace) -> trailindex.TrailIndex | None:
    """The trail's index as the trail is now, or None (no trail, or a line the index cannot
    read: the caller reads the trail, which names it)."""
    files = _present(ws) if ws.audit.is_dir() else []
    if not files:
        return None
    stamp = tuple(file_stamp(p) for p in files)
    if stamp in _index_seen:
        return _index_seen[stamp]
    try:
        index = trailindex.current(ws.local(), files)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if stamp == tuple(file_stamp(p) for p in files):
        _index_seen.clear()
        _index_seen[stamp] = index
    return index


_environments = trailindex.subject_environments


def check_ledger(ws: Workspace, ledger_md5s: Sequence[str], display: str) -> None:
    """The report ledger (`display`, its md5s in order) names exactly the reports the trail
    recorded as ingested: a line deleted from it would hide a report's counts from every gate,
    and one added by hand would count what no ingest checked. A GovError naming the first."""
    trail = _summaries(ws).reports
    kept = set(ledger_md5s)
    for md5 in trail:
        if md5 not in kept:
            raise GovError(
                f"{display}: report {md5} was ingested (the audit trail records it) but is not in "
                "the ledger: its counts would not be read; restore the ledger from git "
                f"(`git checkout -- {display}`)"
            )
    recorded = set(trail)
    for md5 in ledger_md5s:
        if md5 not in recorded:
            raise GovError(
                f"{display}: report {md5} is in the ledger, but no entry of the audit trail "
                "ingested it: counts are added by `gov ingest`, not by hand"
            )


def recommended(ws: Workspace, digest: str) -> bool:
    """A rollback recommendation with this digest is in the trail already."""
    return digest in _summaries(ws).recommended


def policy_change(ws: Workspace, current: dict[str, str]) -> dict[str, list[str]] | None:
    """How the policy files differ from the last ones the trail recorded (None: no change).

    gov does not write policies (people edit and commit them), so a change is noticed, and
    recorded, by the next decision that reads them."""
    index = _index(ws)
    last = _last_policies(trail_files(ws)) if index is None else (index.policies or {})
    if last is None:  # read forwards: names the line that cannot be read
        last = {}
        for _, entry in read(ws):
            if entry["kind"] in ("policy_change", "check"):
                last = entry.get("inputs", {}).get("policies", last)
    if last == current:
        return None
    return {
        "added": sorted(set(current) - set(last)),
        "removed": sorted(set(last) - set(current)),
        "changed": sorted(p for p in current if p in last and last[p] != current[p]),
    }


def _last_policies(files: Sequence[Path], block: int = 1 << 16) -> dict[str, str] | None:
    """The policies of the newest check or policy_change entry, reading the trail from its end
    (a decision needs only the latest; the trail only grows). None: a line that is not an
    entry was met, or the trail is missing, for the forward read to report."""
    present = [p for p in files if p.is_file()]
    if not present:
        return None
    lines = (raw for path in reversed(present) for raw in iter_jsonl_lines_reversed(path, block))
    for raw in lines:
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(entry, dict) or "kind" not in entry:
            return None
        if entry["kind"] in ("policy_change", "check"):
            policies = entry.get("inputs", {}).get("policies")
            if isinstance(policies, dict):
                return policies
    return {}
