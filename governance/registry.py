"""The registry of runs, checkpoints, environments and judges: plain files, changed by commits.

This is the library a training loop calls (register a checkpoint right after saving it) and the CLI
wraps. The current state is the files themselves, so reading never replays git history; git holds
the history of every change, one commit each.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from . import artifacts, audit, counts, objectstore, scm
from . import workspace as workspace_mod
from .errors import (
    AlreadyExists,
    ArtifactError,
    ExposureError,
    GovError,
    InvalidName,
    LineageError,
    NotFound,
    RegistryFileError,
)
from .kept import kept_records
from .models import (
    Checkpoint,
    CheckpointStatus,
    Environment,
    EnvironmentStatus,
    EnvironmentVersion,
    ExposureEntry,
    Flag,
    Judge,
    JudgeVersion,
    Mixture,
    Run,
    name_problem,
    quoted,
    utc_now,
)
from .storage import (
    FileStamp,
    file_stamp,
    iter_jsonl_lines,
    load_yaml_model,
    model_json_line,
    model_yaml,
    parse_yaml_model,
    validate_jsonl_line,
)
from .workspace import Workspace

WEIGHT_TOLERANCE = 1e-3
_HEX64 = re.compile(r"(sha256:)?([0-9a-f]{64})")


def check_name(kind: str, value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise InvalidName(f"{kind} name {quoted(value)} {problem}")
    return value


def parse_checkpoint_ref(ref: str) -> tuple[str, int]:
    """`RUN@STEP` -> (run, step)."""
    run, sep, step = ref.rpartition("@")
    if not sep or not run or not step.isdigit():
        raise GovError(f"checkpoint {ref!r}: expected RUN@STEP, for example main@1200")
    if not _STEP.fullmatch(step):
        raise GovError(
            f"checkpoint {ref!r}: a step is written in ASCII digits without leading zeros "
            "(for example main@1400)"
        )
    return check_name("run", run), int(step)


_STEP = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_VERSION_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}", re.ASCII)


def _files_under(folder: Path) -> list[Path]:
    """Every file under `folder` (following links to folders, as rglob does); a folder that
    cannot be listed is an OSError, where rglob would leave it out without a word."""

    def fail(exc: OSError) -> None:
        raise exc

    found = []
    for where, _, names in os.walk(folder, onerror=fail, followlinks=True):
        found += [p for p in (Path(where) / n for n in names) if p.is_file()]
    return sorted(found)


def content_hash(paths: Sequence[Path]) -> str:
    """A content hash of files and folders: names relative to each given path, and file bytes.

    Renaming the folder that holds an environment does not change its hash; editing a file does.
    """
    entries: list[str] = []
    for path in paths:
        if not path.exists():
            raise NotFound(f"{path}: no such file or folder to hash")
        try:
            files = [path] if path.is_file() else _files_under(path)
            for file in files:
                if any(part in (".git", "__pycache__") for part in file.parts):
                    continue
                inner = file.relative_to(path).as_posix()
                name = path.name if file == path else f"{path.name}/{inner}"
                entries.append(f"{name}\0{hashlib.sha256(file.read_bytes()).hexdigest()}\n")
        except OSError as exc:
            where = exc.filename or path
            raise GovError(
                f"{where}: cannot be read to hash ({exc.strerror or exc}): an environment's "
                "files must all be readable"
            ) from None
    if not entries:
        raise GovError(f"nothing to hash in {', '.join(map(str, paths))}: no files")
    digest = hashlib.sha256("".join(sorted(entries)).encode()).hexdigest()
    return f"sha256:{digest}"


def normalise_hash(value: str, what: str) -> str:
    match = _HEX64.fullmatch(value.strip().lower())
    if not match:
        raise GovError(f"{what} {quoted(value)} is not a sha256 content hash (64 hex digits)")
    return f"sha256:{match.group(2)}"


def _content(paths: Sequence[Path] | None, digest: str | None, what: str) -> str:
    if bool(paths) == bool(digest):
        raise GovError(f"{what}: give the files to hash or a precomputed hash, exactly one of them")
    return content_hash(paths) if paths else normalise_hash(digest or "", what)


@dataclass(frozen=True)
class NewCheckpoint:
    """A checkpoint to register: what the training loop knows right after saving it."""

    step: int
    artifact: Path | str  # a file or folder in the workspace, or an s3:// folder URI
    exposure: Mapping[str, float]
    note: str | None = None
    created: datetime | None = None
    # An s3:// checkpoint's objects as already listed (else listed when it is registered)
    objects: objectstore.Manifest | None = None


@dataclass(frozen=True)
class Summary:
    root: Path
    runs: int
    checkpoints: int
    checkpoints_by_status: dict[str, int]
    environments_by_status: dict[str, int]
    judges: int
    reports: int
    judgments: int
    dvc_remote: str | None
    head: str | None


# One run's checkpoints as last read in this process, by file and its state (see _checkpoint_lines)
_CHECKPOINTS_SEEN: dict[Path, tuple[FileStamp, tuple[Checkpoint, ...]]] = {}
# Each run's, environment's and judge's record, likewise (see Registry._load_named)
_NAMED_SEEN: dict[Path, tuple[FileStamp, Run | Environment | Judge]] = {}


def _ends_a_line(path: Path) -> bool:
    """Whether the file's last byte ends a line (what a line appended after it needs)."""
    with path.open("rb") as handle:
        if handle.seek(0, 2) == 0:
            return False
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


_MIXTURE_KEY = b'"exposure":'


@functools.cache
def _mixture() -> TypeAdapter[tuple[ExposureEntry, ...]]:
    """The exposure list's validator, built when first needed (a TypeAdapter builds its
    validator when made: 10 ms of every command's start-up at import)."""
    return TypeAdapter(Mixture)


def _shared_mixture(
    raw: bytes, mixtures: dict[bytes, tuple[ExposureEntry, ...]]
) -> Checkpoint | None:
    """A checkpoint line validated with its training mixture read once per distinct mixture: a
    run's checkpoints mostly repeat one (300 environments are 300 entries a line, nine tenths of
    the validation of a long run's registry). None when the line does not split cleanly into its
    mixture and the rest, or either part is invalid: the caller validates it whole."""
    if raw.count(_MIXTURE_KEY) != 1:
        return None
    start = raw.index(_MIXTURE_KEY) + len(_MIXTURE_KEY)
    end = raw.find(b"]", start) + 1
    if end == 0 or raw[start : start + 1] != b"[":
        return None
    mixture = raw[start:end]
    try:
        rest = Checkpoint.model_validate_json(
            raw[:start] + b"[]" + raw[end:], context={"mixture_apart": True}
        )
        exposure = mixtures.get(mixture)
        if exposure is None:
            exposure = mixtures[mixture] = _mixture().validate_json(mixture)
    except ValidationError:
        return None
    return rest.model_copy(update={"exposure": exposure})


def version_number(ref: str) -> int | None:
    """The number an environment version is spelled by (`2`, `v2`), or None where the spelling
    is not one (a prefix of its content hash)."""
    ref = ref.strip().lower()
    number = ref[1:] if ref.startswith("v") else ref
    return int(number) if number.isascii() and number.isdigit() and len(number) < 7 else None


class Registry:
    """Runs, checkpoints, environments and judges of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # -- files ---------------------------------------------------------------------------
    def _run_file(self, run: str) -> Path:
        return self.ws.registry / "runs" / f"{run}.yaml"

    def _checkpoint_file(self, run: str) -> Path:
        return self.ws.registry / "checkpoints" / f"{run}.jsonl"

    def _env_file(self, env: str) -> Path:
        return self.ws.registry / "environments" / f"{env}.yaml"

    def _judge_file(self, judge: str) -> Path:
        return self.ws.registry / "judges" / f"{judge}.yaml"

    def _present(self, path: Path) -> bool:
        """Whether a registry file is there. One that is there but is not a file (a folder, a
        broken link) is an error naming it, not a record that was never added."""
        if path.is_file():
            return True
        if path.is_symlink() or path.exists():
            rel = self.ws.rel(path.parent) + "/" + path.name  # the link's name, not its target
            raise RegistryFileError(
                f"{rel}: not a file (a folder or a broken link): restore it with "
                f"`git checkout -- {rel}`"
            )
        return False

    def _load_named(self, path: Path, model: type[Run] | type[Environment] | type[Judge]) -> object:
        """A run's, environment's or judge's file, parsed once per process and state of the
        file (a check reads 300 environments twice), and kept across processes by its bytes
        (see kept.py). The records are frozen, so callers share them."""
        stamp = file_stamp(path)
        seen = _NAMED_SEEN.get(path)
        if stamp is not None and seen is not None and seen[0] == stamp:
            return seen[1]
        rel = self.ws.rel(path)
        data = path.read_bytes()
        kept, digest = kept_records(self.ws), hashlib.sha256(data).hexdigest()
        record = kept.get(rel, digest, model)
        if record is None:
            record = parse_yaml_model(data, model, rel)
            if record.id != path.stem:
                raise GovError(
                    f"{rel}: field id: {record.id!r} does not match the file name "
                    f"{path.stem!r}; fix the file, or restore it with `git checkout -- {rel}`"
                )
            kept.put(rel, digest, record)
        if stamp is not None and stamp == file_stamp(path):
            _NAMED_SEEN[path] = (stamp, record)
        return record

    @contextlib.contextmanager
    def _list(self) -> Iterator[None]:
        """Read many named files, then keep what had to be parsed."""
        yield
        kept_records(self.ws).save()

    def _all(self, folder: str, suffix: str) -> list[Path]:
        return sorted((self.ws.registry / folder).glob(f"*{suffix}"))

    # -- runs ----------------------------------------------------------------------------
    def runs(self) -> list[Run]:
        with self._list():
            return [self.run(p.stem) for p in self._all("runs", ".yaml")]

    def run(self, run: str) -> Run:
        path = self._run_file(check_name("run", run))
        if not self._present(path):
            if self._present(self._checkpoint_file(run)):  # its checkpoints are still there
                rel = self.ws.rel(path)
                raise RegistryFileError(
                    f"{rel}: missing, while {self.ws.rel(self._checkpoint_file(run))} holds the "
                    f"checkpoints of run {run!r}: restore it with `git checkout -- {rel}`"
                )
            raise NotFound(f"run {run!r} is not registered: add it with `gov run add {run}`")
        record = self._load_named(path, Run)
        assert isinstance(record, Run)
        return record

    def lineage(self, run: str) -> list[Run]:
        """The run and its ancestors, oldest first; a cycle in hand-edited files is an error."""
        chain: list[Run] = []
        seen: set[str] = set()
        current: str | None = run
        while current is not None:
            if current in seen:
                cycle = " -> ".join([r.id for r in chain] + [current])
                raise LineageError(
                    f"run lineage has a cycle ({cycle}): fix parent_run in registry/runs/*.yaml"
                )
            seen.add(current)
            record = self.run(current)
            chain.append(record)
            current = record.parent_run
        return chain[::-1]

    def lineage_checkpoints(self, run: str, step: int | None = None) -> list[Checkpoint]:
        """The checkpoints a run has seen, oldest first: each ancestor's up to the step the next
        run forked from, then the run's own up to `step` (all of them by default)."""
        lineage = self.lineage(run)
        found: list[Checkpoint] = []
        for i, record in enumerate(lineage):
            limit = lineage[i + 1].forked_from_step if i + 1 < len(lineage) else step
            found += [c for c in self.checkpoints(record.id) if limit is None or c.step <= limit]
        return found

    def default_run(self, run: str | None = None) -> str:
        """`run` if given, else the only run, else `main`: the run commands act on by default."""
        if run is not None:
            return run
        runs = [p.stem for p in self._all("runs", ".yaml")]
        return runs[0] if len(runs) == 1 else "main"

    def newest(self, run: str) -> str:
        """The newest run whose lineage includes `run` (itself when nothing forked from it):
        the run being trained, after restarts."""
        found = [r for r in self.runs() if run in {a.id for a in self.lineage(r.id)}]
        return max(found, key=lambda r: (r.created, r.id)).id if found else run

    def order(self, run: str, step: int | None = None) -> list[tuple[str, int, str]]:
        """(run, step, status) of the lineage's checkpoints up to `step`: a series' order."""
        return [(c.run, c.step, c.status.value) for c in self.lineage_checkpoints(run, step)]

    def add_run(
        self,
        run: str,
        *,
        parent_run: str | None = None,
        forked_from_step: int | None = None,
        note: str | None = None,
        created: datetime | None = None,
    ) -> Run:
        """Register a run; a restart names its parent run and the step it was forked from."""
        check_name("run", run)
        if (parent_run is None) != (forked_from_step is None):
            raise LineageError(
                "a forked run needs both its parent run and the step it was forked from"
            )
        with self.ws.change(f"register run {run}") as change:
            if self._run_file(run).exists():
                raise AlreadyExists(f"run {run!r} is already registered")
            if parent_run is not None and forked_from_step is not None:
                self.lineage(parent_run)
                self.checkpoint(parent_run, forked_from_step)
            record = Run(
                id=run,
                created=created or utc_now(),
                parent_run=parent_run,
                forked_from_step=forked_from_step,
                note=note,
            )
            self.write_run(change, record)
            if parent_run is not None:
                change.body = f"Forked from {parent_run}@{forked_from_step}."
        return record

    def write_run(self, change: workspace_mod.Change, record: Run) -> None:
        """Register a run as part of `change` (a rollback forks one in its own change)."""
        if self._run_file(record.id).exists():
            raise AlreadyExists(f"run {record.id!r} is already registered", remedy="name")
        change.write(self._run_file(record.id), model_yaml(record))

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoints(self, run: str | None = None) -> list[Checkpoint]:
        """Checkpoints of one run (by step), or of every run."""
        runs = [run] if run is not None else [p.stem for p in self._all("checkpoints", ".jsonl")]
        found: list[Checkpoint] = []
        for name in runs:
            if run is not None:
                self.run(name)
            path = self._checkpoint_file(name)
            if self._present(path):
                found.extend(self._checkpoint_lines(path))
        return found

    def _checkpoint_lines(self, path: Path) -> list[Checkpoint]:
        """One run's checkpoints, in the order gov writes them: one line a step, steps rising;
        a hand edit that repeats or reorders a step is an error naming its line. Read once per
        process and state of the file (the records are frozen): a check asks several times."""
        stamp = file_stamp(path)
        seen = _CHECKPOINTS_SEEN.get(path)
        if stamp is not None and seen is not None and seen[0] == stamp:
            return list(seen[1])
        found = self._read_checkpoint_lines(path)
        if stamp is not None and stamp == file_stamp(path):
            _CHECKPOINTS_SEEN[path] = (stamp, tuple(found))
        return found

    def _read_checkpoint_lines(self, path: Path) -> list[Checkpoint]:
        display = self.ws.rel(path)
        found: list[Checkpoint] = []
        mixtures: dict[bytes, tuple[ExposureEntry, ...]] = {}
        for number, raw in iter_jsonl_lines(path):
            ckpt = _shared_mixture(raw, mixtures)
            if ckpt is None:  # validated whole, for the error message that names the field
                ckpt = validate_jsonl_line(raw, number, Checkpoint, display)
            if ckpt.run != path.stem:
                raise RegistryFileError(
                    f"{display}:{number}: field run: {ckpt.run!r} in the file of run "
                    f"{path.stem!r}: fix or remove the line by hand"
                )
            if found and ckpt.step <= found[-1].step:
                why = "appears twice" if ckpt.step == found[-1].step else "is out of order"
                raise RegistryFileError(
                    f"{display}:{number}: field step: step {ckpt.step} {why} (each step once, "
                    "rising): fix or remove the line by hand"
                )
            found.append(ckpt)
        return found

    def checkpoint(self, run: str, step: int) -> Checkpoint:
        self.run(run)
        path = self._checkpoint_file(run)
        if self._present(path):
            # gov writes `"step":N,` in every line: validate only the line that can match, so one
            # lookup stays fast in a run of thousands. A hand-formatted file takes the full read.
            key = b'"step":%d,' % step
            with path.open("rb") as handle:
                lines = [line for line in handle if key in line]
            for line in lines:
                try:
                    ckpt = Checkpoint.model_validate_json(line)
                except ValueError:  # a broken line: the full read names it
                    break
                if ckpt.step == step and ckpt.run == run:
                    return ckpt
            for ckpt in self.checkpoints(run):
                if ckpt.step == step:
                    return ckpt
        raise NotFound(f"checkpoint {run}@{step} is not registered (see `gov checkpoint list`)")

    def resolve_exposure(self, exposure: Mapping[str, float]) -> tuple[ExposureEntry, ...]:
        """`{"env": w, "env@2": w, "env@<hash prefix>": w}` -> exposure entries (latest version
        when none is named)."""
        if not exposure:
            raise ExposureError(
                "a checkpoint needs its exposure: the environments (and weights) it was trained on"
            )
        entries: list[ExposureEntry] = []
        for key, weight in exposure.items():
            env_id, at, version = key.partition("@")
            if at and not version:
                raise ExposureError(
                    f"exposure {key!r}: no version after '@' (name one, or leave out the '@' for "
                    "the latest)"
                )
            env = self.environment(env_id)
            if env.status == EnvironmentStatus.RETIRED:
                raise ExposureError(f"exposure names environment {env_id!r}, which is retired")
            chosen = self.environment_version(env, version) if version else env.current
            if any(e.environment == env_id for e in entries):
                raise ExposureError(f"exposure names environment {env_id!r} twice")
            if not (0 < weight <= 1):
                raise ExposureError(
                    f"exposure weight of {key!r} is {weight}: weights must be in (0, 1]"
                )
            entries.append(
                ExposureEntry(
                    environment=env_id, version=chosen.number, hash=chosen.hash, weight=weight
                )
            )
        total = sum(e.weight for e in entries)
        if abs(total - 1) > WEIGHT_TOLERANCE:
            raise ExposureError(
                f"exposure weights sum to {total:.4g}: mixture weights must sum to 1"
            )
        return tuple(sorted(entries, key=lambda e: e.environment))

    def _artifact_path(self, artifact: Path) -> Path:
        path = (artifact if artifact.is_absolute() else Path.cwd() / artifact).resolve()
        if not path.exists():
            raise ArtifactError(f"checkpoint artifact {artifact} does not exist")
        try:
            path.relative_to(self.ws.root)
        except ValueError:
            raise ArtifactError(
                f"checkpoint artifact {artifact} is outside the workspace {self.ws.root}: "
                "save or move it under the workspace so DVC can track it"
            ) from None
        if path == self.ws.root or self.ws.rel(path).split("/")[0] in ("registry", ".gov", ".dvc"):
            raise ArtifactError(f"checkpoint artifact {artifact} is inside gov's own folders")
        return path

    def _stored(self, uri: str, listed: objectstore.Manifest | None) -> objectstore.Manifest:
        """An s3:// checkpoint folder's objects, each with its version (or ETag) and size."""
        if listed is not None:
            return listed
        try:
            return objectstore.snapshot(uri)
        except FileNotFoundError:
            raise ArtifactError(f"checkpoint artifact {uri}: no objects under it") from None

    def _objects_file(self, run: str, step: int) -> Path:
        return self.ws.registry / "objects" / run / f"{step}.json"

    def objects(self, checkpoint: Checkpoint) -> objectstore.Manifest:
        """The objects an s3:// checkpoint was registered with, as its record names them."""
        path = self._objects_file(checkpoint.run, checkpoint.step)
        where = self.ws.rel(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{where}: cannot be read: {exc.strerror}") from None
        if hashlib.md5(data).hexdigest() != checkpoint.artifact_md5:
            raise ArtifactError(
                f"{where}: does not match checkpoint {checkpoint.ref}'s record (md5 "
                f"{checkpoint.artifact_md5}); restore it with `git checkout -- {where}`"
            )
        return objectstore.Manifest.from_bytes(data, where)

    def add_checkpoint(
        self,
        run: str,
        step: int,
        artifact: Path | str,
        exposure: Mapping[str, float],
        *,
        note: str | None = None,
    ) -> Checkpoint:
        """Register one checkpoint: DVC tracks its artifact, one git commit records it."""
        where = artifact if objectstore.is_uri(artifact) else Path(artifact)
        new = NewCheckpoint(step=step, artifact=where, exposure=exposure, note=note)
        return self.add_checkpoints(run, [new])[0]

    def add_checkpoints(
        self, run: str, new: Sequence[NewCheckpoint], *, link: str | None = None
    ) -> list[Checkpoint]:
        """Register several checkpoints of a run in one change (one DVC add, one commit).
        `link`: DVC's cache link type for these artifacts (`hardlink`: the cache shares their
        files, nothing is copied), else the workspace's."""
        if not new:
            return []
        steps = [n.step for n in new]
        summary = (
            f"register checkpoint {run}@{steps[0]}"
            if len(new) == 1
            else f"register {len(new)} checkpoints of run {run} (steps {min(steps)}-{max(steps)})"
        )
        with self.ws.change(summary) as change:
            record = self.run(run)
            existing = {c.step: c for c in self.checkpoints(run)}
            seen: set[int] = set()
            paths: list[Path | objectstore.Manifest] = []
            exposures: list[tuple[ExposureEntry, ...]] = []
            for item in new:
                if item.step < 0:
                    raise GovError(f"checkpoint step {item.step} is negative")
                if item.step in existing or item.step in seen:
                    raise AlreadyExists(
                        f"run {run!r} already has a checkpoint at step {item.step}: each step is "
                        "registered once"
                    )
                if record.forked_from_step is not None and item.step <= record.forked_from_step:
                    raise LineageError(
                        f"run {run!r} was forked at step {record.forked_from_step}; "
                        f"step {item.step} is not after it"
                    )
                seen.add(item.step)
                if isinstance(item.artifact, str):
                    paths.append(self._stored(item.artifact, item.objects))
                else:
                    paths.append(self._artifact_path(item.artifact))
                exposures.append(self.resolve_exposure(item.exposure))
            where = [p.uri if isinstance(p, objectstore.Manifest) else p for p in paths]
            if len(set(where)) != len(where):
                raise ArtifactError("two checkpoints name the same artifact")
            tracked = change.track([p for p in paths if isinstance(p, Path)], link=link)
            now = utc_now()
            added = []
            for item, path, entries in zip(new, paths, exposures, strict=True):
                size: int | None
                pinned: Literal["version", "etag"] | None = None
                if isinstance(path, objectstore.Manifest):
                    change.write(self._objects_file(run, item.step), path.to_bytes())
                    artifact, md5, size = path.uri, path.md5, path.size
                    pinned = "version" if path.versioned else "etag"
                else:
                    artifact = self.ws.rel(path)
                    md5, size = tracked[path].md5, tracked[path].size
                added.append(
                    Checkpoint(
                        run=run,
                        step=item.step,
                        artifact=artifact,
                        artifact_md5=md5,
                        artifact_size=size,
                        artifact_pinned=pinned,
                        created=item.created or now,
                        exposure=entries,
                        note=item.note,
                    )
                )
            path = self._checkpoint_file(run)
            last = max(existing, default=-1)
            if existing and min(steps) > last and _ends_a_line(path):
                # the common case, a run's next checkpoints: appended, the rest left as it is
                ordered = sorted(added, key=lambda c: c.step)
                text = "".join(model_json_line(c) + "\n" for c in ordered)
                change.append(path, text.encode())
            else:
                self._write_checkpoints(change, run, [*existing.values(), *added])
            change.body = "\n".join(
                f"{c.ref}: {c.artifact} (md5 {c.artifact_md5})" for c in added[:50]
            )
        return added

    def set_checkpoint_status(
        self,
        run: str,
        step: int,
        status: CheckpointStatus | Callable[[Checkpoint], CheckpointStatus],
        reason: str | None = None,
    ) -> Checkpoint:
        """Quarantine (or re-register, or block) a checkpoint. Promotion is not done here: it
        goes through `governance.promotion.promote`, which needs a passing check or a recorded
        override. `status` may be a function of the checkpoint as it is under the change's lock
        (which may refuse it): read and written with no other writer between."""
        with self.ws.change(f"mark checkpoint {run}@{step}") as change:
            wanted = status(self.checkpoint(run, step)) if callable(status) else status
            if wanted == CheckpointStatus.PROMOTED:
                raise GovError(
                    f"checkpoint {run}@{step} is promoted only by `gov promote` "
                    "(a passing check of the same inputs, or a recorded override)",
                    remedy="override",
                )
            change.summary = f"mark checkpoint {run}@{step} {wanted.value}"
            updated = self.write_status(change, run, step, wanted)
            audit.append(
                change,
                "status_change",
                subject={"run": run, "checkpoint": f"{run}@{step}"},
                outcome=wanted.value,
                reason=reason,
            )
            change.body = reason or ""
        return updated

    def quarantine_checkpoint(self, run: str, step: int, reason: str) -> Checkpoint:
        """Set a checkpoint aside (bad data, a broken artifact, a finding after promotion): it is
        no restore point and only a recorded override promotes it, until it is released."""

        def aside(current: Checkpoint) -> CheckpointStatus:
            if current.status == CheckpointStatus.QUARANTINED:
                raise GovError(f"checkpoint {current.ref} is already quarantined")
            return CheckpointStatus.QUARANTINED

        return self.set_checkpoint_status(run, step, aside, reason)

    def release_checkpoint(self, run: str, step: int, reason: str) -> Checkpoint:
        """Take a checkpoint out of quarantine: blocked again if the last check of it since its
        last promotion blocked (one made while it was quarantined too), else registered (a
        promotion is earned again through `gov promote`)."""

        def back(current: Checkpoint) -> CheckpointStatus:
            if current.status != CheckpointStatus.QUARANTINED:
                raise GovError(
                    f"checkpoint {current.ref} is {current.status.value}, not quarantined: "
                    "only a quarantined checkpoint is released"
                )
            last = audit.replayed_statuses(self.ws, checks_only=True).get(current.ref)
            return CheckpointStatus.BLOCKED if last == "blocked" else CheckpointStatus.REGISTERED

        return self.set_checkpoint_status(run, step, back, reason)

    def write_status(
        self, change: workspace_mod.Change, run: str, step: int, status: CheckpointStatus
    ) -> Checkpoint:
        """Set a checkpoint's status as part of `change` (for gov's own gates)."""
        ordered = self.checkpoints(run)  # validated: one line a step, steps rising
        steps = [c.step for c in ordered]
        if step not in steps:
            self.checkpoint(run, step)  # raises the not-registered error
        index = steps.index(step)
        updated = ordered[index].model_copy(update={"status": status})
        # Only that checkpoint's line is written anew: the others stay byte for byte.
        path = self._checkpoint_file(run)
        lines = path.read_bytes().splitlines(keepends=True)
        where = [i for i, line in enumerate(lines) if line.strip()][index]
        lines[where] = (model_json_line(updated) + "\n").encode()
        change.write(path, b"".join(lines))
        return updated

    def _write_checkpoints(
        self, change: workspace_mod.Change, run: str, records: Iterable[Checkpoint]
    ) -> None:
        ordered = sorted(records, key=lambda c: c.step)
        text = "".join(model_json_line(c) + "\n" for c in ordered)
        change.write(self._checkpoint_file(run), text.encode())

    # -- environments --------------------------------------------------------------------
    def check_references(
        self, ckpt: Checkpoint, counted: Iterable[tuple[str, int, str, str]]
    ) -> None:
        """That the registry still holds what a check reads, after hand edits of its files:
        each environment version the checkpoint was trained on, with the content hash its line
        records, and each environment and judge version the counts hold judgments of (`counted`:
        environment, version, judge, judge version). Otherwise the gate would judge training,
        or read evidence, the registry can say nothing about: RegistryFileError naming the
        file."""
        environments = {e.id: {v.number: v.hash for v in e.versions} for e in self.environments()}
        where = self.ws.rel(self._checkpoint_file(ckpt.run))
        for entry in ckpt.exposure:
            versions = environments.get(entry.environment)
            if versions is None:
                problem = f"environment {entry.environment!r} is not registered"
            elif entry.version not in versions:
                problem = f"environment {entry.environment!r} has no version {entry.version}"
            elif versions[entry.version] != entry.hash:
                problem = (
                    f"{entry.environment} v{entry.version} is registered with another content hash"
                )
            else:
                continue
            raise RegistryFileError(
                f"{where}: checkpoint {ckpt.ref} was trained on {entry.environment} "
                f"v{entry.version}, but {problem}: the registry was edited by hand (see git log)"
            )
        judges = {j.id: {v.version for v in j.versions} for j in self.judges()}
        for env, version, judge, judge_version in counted:
            if version not in environments.get(env, {}):
                what, file = f"environment {env!r} version {version}", self._env_file(env)
            elif judge_version not in judges.get(judge, set()):
                what, file = f"judge {judge!r} version {judge_version!r}", self._judge_file(judge)
            else:
                continue
            raise RegistryFileError(
                f"{self.ws.rel(file)}: the counts hold judgments of {what}, which is not "
                "registered: the registry was edited by hand after they were ingested (restore "
                "the file from git)"
            )

    def environments(self) -> list[Environment]:
        with self._list():
            return [self.environment(p.stem) for p in self._all("environments", ".yaml")]

    def environment(self, env: str) -> Environment:
        path = self._env_file(check_name("environment", env))
        if not self._present(path):
            raise NotFound(
                f"environment {env!r} is not registered: add it with `gov env add {env}`"
            )
        record = self._load_named(path, Environment)
        assert isinstance(record, Environment)
        return record

    def environment_version(self, env: Environment, ref: str) -> EnvironmentVersion:
        """A version by number (`2`, `v2`) or by a prefix of its content hash (7+ hex digits)."""
        ref = ref.strip().lower()
        number = version_number(ref)
        if number is not None:
            for version in env.versions:
                if version.number == number:
                    return version
        else:
            digits = ref.removeprefix("sha256:")
            found = [v for v in env.versions if v.hash.removeprefix("sha256:").startswith(digits)]
            if len(found) == 1 and len(digits) >= 7:
                return found[0]
            if len(found) > 1:
                raise NotFound(f"environment version {env.id}@{ref} is ambiguous")
        known = ", ".join(f"v{v.number} ({v.hash[7:19]})" for v in env.versions)
        raise NotFound(f"environment {env.id!r} has no version {ref!r} (known: {known})")

    def add_environment(
        self,
        env: str,
        *,
        paths: Sequence[Path] | None = None,
        content_hash: str | None = None,
        description: str | None = None,
        note: str | None = None,
        created: datetime | None = None,
    ) -> Environment:
        """Register an environment; its first version is the content hash of its files."""
        check_name("environment", env)
        digest = _content(paths, content_hash, f"environment {env}")
        with self.ws.change(f"register environment {env}") as change:
            if self._env_file(env).exists():
                raise AlreadyExists(
                    f"environment {env!r} is already registered: a redesign is "
                    f"`gov env version {env}`"
                )
            version = EnvironmentVersion(
                number=1, hash=digest, created=created or utc_now(), note=note
            )
            record = Environment(id=env, description=description, versions=(version,))
            change.write(self._env_file(env), model_yaml(record))
            change.body = f"Version 1: {digest}"
        return record

    def add_environment_version(
        self,
        env: str,
        *,
        paths: Sequence[Path] | None = None,
        content_hash: str | None = None,
        note: str,
    ) -> Environment:
        """Register a new version of an environment (a redesign); it becomes active again."""
        digest = _content(paths, content_hash, f"environment {env}")
        with self.ws.change(f"new version of environment {env}") as change:
            current = self.environment(env)
            if current.status == EnvironmentStatus.RETIRED:
                raise GovError(f"environment {env!r} is retired: register a new environment")
            clash = [v for v in current.versions if v.hash == digest]
            if clash:
                raise AlreadyExists(
                    f"environment {env!r} already has this content as version {clash[0].number}: "
                    "a redesign must change the environment or its scoring"
                )
            number = current.versions[-1].number + 1
            version = EnvironmentVersion(number=number, hash=digest, created=utc_now(), note=note)
            record = current.model_copy(
                update={
                    "versions": (*current.versions, version),
                    "status": EnvironmentStatus.ACTIVE,
                }
            )
            change.write(self._env_file(env), model_yaml(record))
            change.summary = f"environment {env} version {number}"
            change.body = f"{digest}\n\n{note}"
            audit.append(
                change,
                "redesign",
                subject={"environment": env},
                outcome=f"v{number}",
                inputs={"hash": digest, "previous": current.current.hash},
                reason=note,
            )
            flag = self.find_flag(env)
            if flag is not None and flag.status != "resolved":  # the redesign resolves it
                resolved = flag.model_copy(
                    update={"status": "resolved", "resolved_by_version": number}
                )
                self.write_flag(change, resolved)
                change.body += f"\n\nResolves the flag raised at {flag.checkpoint}."
                audit.append(
                    change,
                    "flag_resolved",
                    subject={"environment": env, "checkpoint": flag.checkpoint},
                    outcome=f"resolved by v{number}",
                )
        return record

    def set_environment_status(
        self, env: str, status: EnvironmentStatus, reason: str | None = None
    ) -> Environment:
        with self.ws.change(f"mark environment {env} {status.value}") as change:
            record = self.write_environment_status(change, env, status)
            change.body = reason or ""
        return record

    def retire_environment(self, env: str, reason: str) -> Environment:
        """Stop training on an environment for good: no checkpoint may name it in its mixture
        again and it takes no new version (a replacement is a new environment). Its history,
        flags and series stay as they are."""
        with self.ws.change(f"retire environment {env}") as change:
            current = self.environment(env)
            if current.status == EnvironmentStatus.RETIRED:
                raise GovError(f"environment {env!r} is already retired")
            record = self.write_environment_status(change, env, EnvironmentStatus.RETIRED)
            change.body = reason
            audit.append(
                change,
                "environment_retired",
                subject={"environment": env},
                outcome=EnvironmentStatus.RETIRED.value,
                reason=reason,
            )
        return record

    def write_environment_status(
        self, change: workspace_mod.Change, env: str, status: EnvironmentStatus
    ) -> Environment:
        """Set an environment's status as part of `change` (for gov's gates and rollbacks). A
        retired environment stays retired: a flag raised on its old series, or a rollback that
        names it, does not bring it back."""
        current = self.environment(env)
        if current.status == EnvironmentStatus.RETIRED:
            return current
        record = current.model_copy(update={"status": status})
        change.write(self._env_file(env), model_yaml(record))
        return record

    # -- flags ---------------------------------------------------------------------------
    def _flag_file(self, env: str) -> Path:
        return self.ws.registry / "flags" / f"{check_name('environment', env)}.yaml"

    def flags(self) -> list[Flag]:
        """Every flag, open, acknowledged or resolved, by environment. A flag file of another
        environment's name, or of an environment not registered, is refused (a hand edit)."""
        found = []
        for path in sorted((self.ws.registry / "flags").glob("*.yaml")):
            flag = load_yaml_model(path, Flag, self.ws.rel(path))
            assert isinstance(flag, Flag)
            if flag.environment != path.stem:
                problem = (
                    f"field environment: {flag.environment!r} in the flag file of {path.stem!r}"
                )
            elif not self._env_file(flag.environment).is_file():
                problem = f"environment {flag.environment!r} is not registered"
            else:
                found.append(flag)
                continue
            raise RegistryFileError(f"{self.ws.rel(path)}: {problem}: fix or remove it by hand")
        return found

    def find_flag(self, env: str) -> Flag | None:
        path = self._flag_file(env)
        return load_yaml_model(path, Flag, self.ws.rel(path)) if path.is_file() else None

    def flag(self, env: str) -> Flag:
        found = self.find_flag(env)
        if found is None:
            raise NotFound(f"environment {env!r} has no flag (see `gov flags list`)")
        return found

    def write_flag(self, change: workspace_mod.Change, flag: Flag) -> None:
        """Raise or update a flag as part of `change` (for gov's gates)."""
        change.write(self._flag_file(flag.environment), model_yaml(flag))

    def acknowledge_flag(self, env: str, reason: str) -> Flag:
        """Someone has seen the flag and owns the redesign; it stays until a new version lands."""
        actor = audit.actor_of(self.ws)
        with self.ws.change(f"acknowledge the flag on environment {env}") as change:
            flag = self.flag(env)
            if flag.status == "resolved":
                raise GovError(
                    f"the flag on {env!r} was resolved by version {flag.resolved_by_version}"
                )
            updated = flag.model_copy(
                update={
                    "status": "acknowledged",
                    "acknowledged_by": actor,
                    "acknowledged_reason": reason,
                }
            )
            self.write_flag(change, updated)
            change.body = f"{actor}: {reason}"
            audit.append(
                change,
                "flag_acknowledged",
                subject={"environment": env, "checkpoint": flag.checkpoint},
                outcome="acknowledged",
                reason=reason,
            )
        return updated

    # -- judges --------------------------------------------------------------------------
    def judges(self) -> list[Judge]:
        with self._list():
            return [self.judge(p.stem) for p in self._all("judges", ".yaml")]

    def judge(self, judge: str) -> Judge:
        path = self._judge_file(check_name("judge", judge))
        if not self._present(path):
            raise NotFound(
                f"judge {judge!r} is not registered: add it with `gov judge add {judge}`"
            )
        record = self._load_named(path, Judge)
        assert isinstance(record, Judge)
        return record

    def add_judge(
        self,
        judge: str,
        version: str,
        *,
        rubric: Sequence[Path] | None = None,
        rubric_hash: str | None = None,
        description: str | None = None,
        note: str | None = None,
        created: datetime | None = None,
        view: Literal["full", "action"] | None = None,
    ) -> Judge:
        """Register a judge, or a new version of one (a new model or rubric is a new series).
        `view`: what the version sees (full, or action: the task and the action only)."""
        check_name("judge", judge)
        if not _VERSION_LABEL.fullmatch(version):
            raise InvalidName(
                f"judge version {quoted(version)}: a version label is up to 100 ASCII letters, "
                "digits and . _ + -, beginning with a letter or digit (for example 2026.10)"
            )
        if rubric and len(rubric) == 1 and rubric[0].is_file() and not rubric_hash:
            # one rubric file: its plain sha256, the hash `gov judge rubric --hash` prints and
            # `gov judge run` checks (a folder of rubric files: the content hash of the folder)
            digest = f"sha256:{hashlib.sha256(rubric[0].read_bytes()).hexdigest()}"
        else:
            digest = _content(rubric, rubric_hash, f"judge {judge} rubric")
        entry = JudgeVersion(
            version=version,
            rubric_hash=digest,
            created=created or utc_now(),
            note=note,
            view=view if view == "action" else None,
        )
        with self.ws.change(f"register judge {judge} version {version}") as change:
            path = self._judge_file(judge)
            if path.exists():
                current = self.judge(judge)
                if any(v.version == version for v in current.versions):
                    raise AlreadyExists(f"judge {judge!r} already has version {version!r}")
                record = current.model_copy(update={"versions": (*current.versions, entry)})
            else:
                record = Judge(id=judge, description=description, versions=(entry,))
            change.write(path, model_yaml(record))
            change.body = f"Rubric {digest}"
        return record

    # -- overview ------------------------------------------------------------------------
    def summary(self) -> Summary:
        checkpoints = self.checkpoints()
        by_status: dict[str, int] = {s.value: 0 for s in CheckpointStatus}
        for ckpt in checkpoints:
            by_status[ckpt.status.value] += 1
        envs: dict[str, int] = {s.value: 0 for s in EnvironmentStatus}
        for env in self.environments():
            envs[env.status.value] += 1
        reports, judgments = counts.summary(self.ws)
        return Summary(
            root=self.ws.root,
            runs=len(self.runs()),
            checkpoints=len(checkpoints),
            checkpoints_by_status=by_status,
            environments_by_status=envs,
            judges=len(self.judges()),
            reports=reports,
            judgments=judgments,
            dvc_remote=artifacts.default_remote(self.ws.root),
            head=scm.head(self.ws.repo),
        )


def open_registry(workspace: Path | str | None = None, *, actor: str | None = None) -> Registry:
    """The registry of the workspace at `workspace` (or found upwards from the current folder);
    `actor` is who the audit trail names for its changes (default: git's identity)."""
    found = workspace_mod.find(Path(workspace) if workspace is not None else None)
    found.actor = actor
    return Registry(found)
