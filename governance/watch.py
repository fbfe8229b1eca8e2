"""Following a training run's output folder: each checkpoint its framework marks complete is
pinned and registered, once.

Pinning: the checkpoint's files are hard-linked into the workspace (`ckpt/RUN/step-N/`, copied
only across filesystems) and DVC tracks that folder with a hard-link cache. Nothing is copied,
and the framework deleting its own folder (its retention rule) unlinks its names only: the
workspace's and the cache's stay, so the restore point stays restorable.

What is registered is the registry's to say (a watcher killed half-way registered nothing, and
a restarted one registers what is missing). The watcher's own state, in `.gov/watch/`, holds
only the steps it has seen and not yet registered: one that vanishes before it could be pinned
is reported in one line and recorded in the audit trail (`checkpoint_lost`), once.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from . import audit, objectstore
from .errors import GovError, NotFound
from .layouts import Folder, Found, Layout
from .objectstore import S3Folder
from .registry import NewCheckpoint, Registry
from .storage import atomic_write
from .yamlio import load


@dataclass(frozen=True)
class ExposureRange:
    first: int
    last: int | None  # None: to the end of the run
    weights: Mapping[str, float]


@dataclass(frozen=True)
class Exposure:
    """What each step was trained on: one mapping for the whole run, or step ranges."""

    source: str
    ranges: tuple[ExposureRange, ...]

    def at(self, step: int) -> Mapping[str, float]:
        for part in self.ranges:
            if part.first <= step and (part.last is None or step <= part.last):
                return part.weights
        raise GovError(f"{self.source}: no exposure for step {step} (no range covers it)")


def _weights(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise GovError(f"{where}: an exposure maps ENV[@VERSION] to a weight, e.g. `math: 0.5`")
    out = {}
    for env, weight in value.items():
        if not isinstance(env, str) or isinstance(weight, bool):
            raise GovError(f"{where}: {env!r}: a weight is a number between 0 and 1")
        if not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise GovError(f"{where}: {env}: weight {weight!r} is not a number between 0 and 1")
        out[env] = float(weight)
    return out


def read_exposure(path: Path | Mapping[str, float]) -> Exposure:
    """An exposure file: a mapping of ENV[@VERSION] to weight for the whole run, or a list of
    step ranges, each `{from: N, to: M, exposure: {...}}` (`to` left out: to the end). A
    mapping given as is (a training script's) is the whole run's."""
    if isinstance(path, Mapping):
        return Exposure("exposure", (ExposureRange(0, None, _weights(dict(path), "exposure")),))
    try:
        data = load(path.read_text(encoding="utf-8"), str(path), GovError, strict=True)
    except OSError as exc:
        raise GovError(f"{path}: cannot be read: {exc.strerror}") from None
    if isinstance(data, dict):
        return Exposure(str(path), (ExposureRange(0, None, _weights(data, str(path))),))
    if not isinstance(data, list) or not data:
        raise GovError(
            f"{path}: an exposure file is a mapping of ENV to weight, or a list of "
            "{from, to, exposure} step ranges"
        )
    ranges = []
    for number, item in enumerate(data, 1):
        where = f"{path}: range {number}"
        if not isinstance(item, dict) or set(item) - {"from", "to", "exposure"}:
            raise GovError(f"{where}: a range has `from`, `to` (optional) and `exposure`")
        first, last = item.get("from", 0), item.get("to")
        if not isinstance(first, int) or isinstance(first, bool) or first < 0:
            raise GovError(f"{where}: from: {first!r} is not a step (an integer >= 0)")
        if last is not None and (not isinstance(last, int) or isinstance(last, bool)):
            raise GovError(f"{where}: to: {last!r} is not a step (an integer)")
        if last is not None and last < first:
            raise GovError(f"{where}: to {last} is before from {first}")
        ranges.append(ExposureRange(first, last, _weights(item.get("exposure"), where)))
    ordered = sorted(ranges, key=lambda r: r.first)
    for a, b in itertools.pairwise(ordered):
        if a.last is None or a.last >= b.first:
            raise GovError(f"{path}: the ranges from {a.first} and from {b.first} overlap")
    return Exposure(str(path), tuple(ordered))


def pin(source: Path, dest: Path) -> int:
    """Hard-link every file of the checkpoint folder `source` into `dest` (a copy across
    filesystems); return the bytes pinned. Raises FileNotFoundError if the framework deleted
    the folder meanwhile (dest is then removed)."""
    total = 0
    try:
        for folder, _, files in os.walk(source, onerror=_raise, followlinks=True):
            target = dest / Path(folder).relative_to(source)
            target.mkdir(parents=True, exist_ok=True)
            for name in files:
                src, dst = Path(folder) / name, target / name
                try:
                    os.link(src, dst, follow_symlinks=True)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    shutil.copy2(src, dst)
                total += dst.stat().st_size
        if not dest.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such folder", str(source))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return total


def _raise(exc: OSError) -> None:
    raise exc


@dataclass
class Pass:
    """What one look at the folder did."""

    registered: list[str] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # seen, not yet marked complete
    ingested: list[str] = field(default_factory=list)  # report files
    checked: list[tuple[str, str]] = field(default_factory=list)  # (RUN@STEP, outcome)
    blocked: str | None = None  # the first checkpoint a check blocked (the stop marker's)
    found: int = 0  # checkpoint folders of the layout seen, complete or not


@dataclass
class State:
    """What a watcher keeps between looks (in `.gov/watch/`): the steps seen and not registered
    yet, those reported lost, those judged, each checked one with the judgments it was checked
    on, and the report files ingested (by name, with their size and mtime)."""

    seen: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    judged: set[int] = field(default_factory=set)
    checked: dict[int, int] = field(default_factory=dict)
    reports: dict[str, list[int]] = field(default_factory=dict)
    # Checkpoints in object storage marked complete, by what was under them at that look
    # (objectstore.S3Folder.fingerprint): registered once a later look finds them unchanged
    settling: dict[int, str] = field(default_factory=dict)
    # NeMo-RL's rollout logs of checkpointed steps, by their size and mtime at the look that
    # found them: judged once a later look finds them unchanged (see Watcher._logged)
    logs: dict[int, list[int]] = field(default_factory=dict)
    # The registered checkpoints still in the framework's folder, by the stamp of the file the
    # framework writes last into each (`_written`): a folder written again is said
    # (see Watcher._rewritten)
    written: dict[int, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> State:
        return cls(
            seen={int(s) for s in data.get("seen", [])},
            lost={int(s) for s in data.get("lost", [])},
            judged={int(s) for s in data.get("judged", [])},
            checked={int(k): int(v) for k, v in dict(data.get("checked", {})).items()},
            reports={str(k): [int(x) for x in v] for k, v in data.get("reports", {}).items()},
            settling={int(k): str(v) for k, v in dict(data.get("settling", {})).items()},
            logs={int(k): [int(x) for x in v] for k, v in dict(data.get("logs", {})).items()},
            written={int(k): str(v) for k, v in dict(data.get("written", {})).items()},
        )

    def dump(self) -> dict[str, Any]:
        return {
            "seen": sorted(self.seen),
            "lost": sorted(self.lost),
            "checked": {str(k): v for k, v in sorted(self.checked.items())},
            "judged": sorted(self.judged),
            "reports": self.reports,
            "settling": {str(k): v for k, v in sorted(self.settling.items())},
            "logs": {str(k): v for k, v in sorted(self.logs.items())},
            "written": {str(k): v for k, v in sorted(self.written.items())},
        }


@dataclass(frozen=True)
class Gate:
    """What the watcher does with judgments: the folder judge reports are dropped in (each
    ingested once), the stop marker it writes when a check blocks, and whether it then stops."""

    reports: Path | None = None
    stop_file: Path | None = None
    exit_on_block: bool = False
    # Judging the framework's rollouts: its dump folder, and what judges a transcripts file
    # into a report (the API's `gov judge run`); the environment of the rollouts (or the field
    # naming it) and the chain-of-thought split rule, as `gov transcripts` takes them.
    rollouts: Path | None = None
    judge: Callable[[Path, Path], None] | None = None
    environment: str | None = None
    environment_column: str | None = None
    split: str = "<think>,</think>"


class Watcher:
    """One run's output folder, followed by one process at a time (a lock in `.gov/watch/`)."""

    def __init__(
        self,
        registry: Registry,
        root: Path | str,
        layout: Layout,
        run: str,
        exposure: Exposure | None,
        say: Callable[[str], None] = lambda _line: None,
        gate: Gate | None = None,
    ) -> None:
        self.root: Path | str
        if isinstance(root, str) and objectstore.is_uri(root):
            self.root = objectstore.folder_uri(root)
            if not any(objectstore.S3Folder.open(self.root).iterdir()):  # the bucket can be listed
                say(f"nothing under {self.root} yet: watching for the run's first checkpoint")
        else:
            if not Path(root).is_dir():
                raise GovError(f"{root}: no such folder (the run's output folder to watch)")
            self.root = Path(root).resolve()
        self.registry, self.layout, self.run = registry, layout, run
        self.exposure, self.say, self.gate = exposure, say, gate or Gate()
        if self.gate.reports is not None and not self.gate.reports.is_dir():
            raise GovError(f"{self.gate.reports}: no such folder (where judge reports arrive)")
        self.reports = self.gate.reports
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        folder = registry.ws.state / "watch"
        folder.mkdir(parents=True, exist_ok=True)
        self.state_path = folder / f"{key}.json"
        self.lock = FileLock(str(folder / f"{key}.lock"))
        self.work = folder / f"{key}-judged"
        if self.gate.rollouts is not None:
            self._judging()
        elif exposure is None:
            raise GovError(
                "give the exposure: --exposure FILE, or --rollouts with --environment or "
                "--environment-column (each checkpoint's mixture read from its rollouts)"
            )

    def _judging(self) -> None:
        """Check the rollout options at the start, not at the first checkpoint."""
        from . import rollouts

        gate = self.gate
        assert gate.rollouts is not None
        if self.layout.name not in rollouts.FRAMEWORKS:
            raise GovError(
                f"--rollouts: {self.layout.name}'s rollout dumps are not read yet (only "
                f"{', '.join(rollouts.FRAMEWORKS)})"
            )
        if not gate.rollouts.is_dir():
            raise GovError(f"{gate.rollouts}: no such folder (the framework's rollout dumps)")
        if (gate.environment is None) == (gate.environment_column is None):
            raise GovError("--rollouts: give --environment NAME or --environment-column FIELD")
        rollouts.parse_split(gate.split)
        self.work.mkdir(exist_ok=True)
        if self.reports is None and gate.judge is not None:  # kept beside its transcripts
            self.reports = self.work

    def __enter__(self) -> Watcher:
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise GovError(
                f"{self.root}: another gov watch follows this folder (one watcher per folder)"
            ) from None
        return self

    def __exit__(self, *_: object) -> None:
        self.lock.release()

    def _state(self) -> State:
        try:
            return State.parse(json.loads(self.state_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, AttributeError):
            # No state yet, or a broken one: what is registered is the registry's to say; at
            # worst a loss goes unreported, a report is read again (ingest keeps it once) or a
            # checkpoint is checked again.
            return State()

    def _keep(self, state: State) -> None:
        record = {"root": str(self.root), "layout": self.layout.name, "run": self.run}
        atomic_write(self.state_path, (json.dumps({**record, **state.dump()}) + "\n").encode())

    def look(self) -> Pass:
        """Pin and register every complete checkpoint not registered yet, oldest first."""
        done = Pass()
        self._ensure_run()
        registered = {c.step for c in self.registry.checkpoints(self.run)}
        try:
            found = {f.step: f for f in self.layout.scan(self.folder())}
        except GovError as exc:  # a store that cannot be listed now (a network blip, an
            # expired token): said, and the next look tries again
            if not isinstance(self.root, str):
                raise
            done.problems.append(exc.message)
            self.say(f"gov: error: {exc.message}")
            return done
        done.found = len(found)
        state = self._state()
        seen, lost = state.seen, state.lost
        gone = (seen - set(found)) | {s for s, f in found.items() if f.deleted}
        for step in sorted(gone - registered - lost):
            self._lost(step, done)
        lost |= set(done.lost)
        seen &= set(found)
        state.written = {s: w for s, w in state.written.items() if s in found}
        for step in sorted(found):
            item = found[step]
            if step in registered:
                self._rewritten(item, state, done)
            if step in registered or step in lost:
                seen.discard(step)
                continue
            seen.add(step)
            if not item.complete:
                done.waiting.append(step)
                continue
            if item.problem is not None:
                done.problems.append(item.problem)
                self.say(f"gov: error: {item.problem}")
                continue
            if isinstance(item.path, objectstore.S3Folder) and not self._settled(item, state):
                done.waiting.append(step)
                continue
            if self._register(item, done, max((s for s in registered if s < step), default=-1)):
                seen.discard(step)
                registered.add(step)
                mark = _written(self.layout, item) if isinstance(item.path, Path) else None
                if mark is not None:
                    state.written[step] = mark
            elif step in done.lost:
                seen.discard(step)
                lost.add(step)
        state.seen = seen - registered
        state.settling = {s: f for s, f in state.settling.items() if s not in registered}
        if self.gate.rollouts is not None and self.gate.judge is not None:
            self._judge(state, registered, done)
        if self.reports is not None:
            self._take_reports(state, done)
            self._check(state, registered, done)
        self._keep(state)
        return done

    def folder(self) -> Folder:
        """The output folder as it stands now (a prefix in object storage: listed again)."""
        if isinstance(self.root, str):
            return objectstore.S3Folder.open(self.root)
        return self.root

    def _judge(self, state: State, registered: set[int], done: Pass) -> None:
        """Judge the rollouts of each registered checkpoint not judged yet: those the framework
        dumped after the previous checkpoint, up to and at this one, counted at this checkpoint
        (TRL and verl write a step's dump before its checkpoint; NeMo-RL after it, so there the
        checkpoint waits for its own step's log: `_logged`). A report goes to the reports
        folder; a rollout that cannot be read or split is one line, and is tried again."""
        from . import rollouts

        gate = self.gate
        assert gate.rollouts is not None and gate.judge is not None and self.reports is not None
        framework = self.layout.name
        by_step = rollouts.dumps(framework, gate.rollouts)
        ordered = sorted(registered)
        versions: dict[str, int | str] | None = None
        for i, step in enumerate(ordered):
            if step in state.judged:
                continue
            previous = ordered[i - 1] if i else -1
            files = _since(by_step, previous, step)
            if not files or (framework == "nemo-rl" and not self._logged(step, by_step, state)):
                continue
            ref = f"{self.run}@{step}"
            if versions is None:
                versions = {e.id: e.current.number for e in self.registry.environments()}
            transcripts = self.work / f"transcripts-{step}.jsonl"
            report = self.reports / f"{self.run}-step-{step}.jsonl"
            try:
                found_t = rollouts.to_transcripts(
                    framework,
                    files,
                    run=self.run,
                    environment=gate.environment,
                    environment_column=gate.environment_column,
                    versions=versions,
                    split=rollouts.parse_split(gate.split),
                    at_step=step,
                    before=_last_before(by_step, previous),
                )
                if found_t:
                    rollouts.write(found_t, transcripts)
                    gate.judge(transcripts, report)
            except GovError as exc:
                done.problems.append(f"{ref}: {exc.message}")
                self.say(f"gov: error: {ref}: {exc.message}")
                continue
            state.judged.add(step)
            state.logs.pop(step, None)
            if not found_t:  # TRL logged the generation judged with the checkpoint before
                self.say(
                    f"{ref}: its {len(files)} dumps repeat the generation judged with the "
                    "checkpoint before it: no rollouts of its own to judge"
                )
                continue
            self.say(f"judged {ref}: {len(found_t)} rollouts from {len(files)} dumps -> {report}")

    def _rewritten(self, item: Found, state: State, done: Pass) -> None:
        """Say (once) that a registered checkpoint's folder was written again: the framework
        restarted from an earlier step into the same folder and numbers its steps from there.
        The new checkpoint is not this run's step, and is not registered as it."""
        was = state.written.get(item.step)
        if was is None or not isinstance(item.path, Path) or not item.complete:
            return
        now = _written(self.layout, item)
        if now is None or now == was:
            return
        state.written[item.step] = now  # said once
        message = (
            f"{self.run}@{item.step}: {item.path} was written again after gov registered it "
            "(the training restarted from an earlier step into the same folder?): it is not "
            "registered again; watch a restarted training under its own run (`gov rollback "
            "apply --name NAME`, then --run NAME), in a folder of its own"
        )
        done.problems.append(message)
        self.say(f"gov: error: {message}")

    def _logged(self, step: int, by_step: dict[int, list[Path]], state: State) -> bool:
        """Whether NeMo-RL has written the rollout log of the checkpoint's own step: its GRPO
        loop saves `step_N/` first and then writes `train_data_stepN.jsonl` line by line, so
        the log is judged once it is there and a later look finds it unchanged (otherwise its
        rollouts would be judged with the next checkpoint's, or a part of them with this one's
        and the rest never)."""
        paths = by_step.get(step)
        if not paths:
            return False
        info = paths[0].stat()
        mark = [info.st_size, info.st_mtime_ns]
        if state.logs.get(step) == mark:
            return True  # forgotten once the checkpoint is judged (see _judge)
        if step not in state.logs:
            self.say(
                f"{self.run}@{step}: its rollout log {paths[0].name} is judged when the next look "
                "finds it unchanged"
            )
        state.logs[step] = mark
        return False

    def _take_reports(self, state: State, done: Pass) -> None:
        """Ingest each report file dropped in the reports folder once (a bad one: its line,
        and it is read again when it changes)."""
        from .ingest import ingest
        from .ingest.formats import report_files

        assert self.reports is not None
        for path in report_files(self.reports):
            if path.name.startswith("transcripts-"):
                continue  # the watcher's own input to gov judge run, kept beside its report
            stamp = [path.stat().st_size, path.stat().st_mtime_ns]
            if state.reports.get(path.name) == stamp:
                continue
            try:
                ingest(self.registry, [path])
            except GovError as exc:
                done.problems.append(exc.message)
                self.say(f"gov: error: {exc.message}")
                continue
            state.reports[path.name] = stamp
            done.ingested.append(path.name)
            self.say(f"ingested {path}")

    def _check(self, state: State, registered: set[int], done: Pass) -> None:
        """Check, and record the decision at, each registered checkpoint of the run whose
        judgments have arrived, oldest first: once, and again when more arrive for it (a second
        judge's report); on a block, the stop marker."""
        import numpy as np

        from . import counts, gates

        table = counts.table(self.registry.ws)
        per = np.bincount(
            table.checkpoint, weights=table.columns["n"], minlength=len(table.checkpoints)
        )
        judged = {
            s: int(per[i]) for i, (r, s) in enumerate(table.checkpoints) if r == self.run and per[i]
        }
        for step in sorted(set(judged) & registered):
            if state.checked.get(step) == judged[step]:
                continue
            ref = f"{self.run}@{step}"
            decision = gates.decide(self.registry, ref)
            gates.record(self.registry, decision)
            state.checked[step] = judged[step]
            done.checked.append((ref, decision.outcome))
            fired = sorted({r.policy for r in decision.fired})
            self.say(
                f"checked {ref}: {decision.outcome}" + (f" ({', '.join(fired)})" if fired else "")
            )
            if decision.outcome == "block" and done.blocked is None:
                done.blocked = ref
                self._stop_marker(ref, decision.digest, fired)
                if self.gate.exit_on_block:
                    return

    def _stop_marker(self, ref: str, digest: str, fired: list[str]) -> None:
        """The file a training script polls: written whole, naming the first checkpoint that
        blocked (a later block leaves it as it is; removing it re-arms it)."""
        if self.gate.stop_file is None or self.gate.stop_file.exists():
            return
        marker = {
            "checkpoint": ref,
            "outcome": "block",
            "policies": fired,
            "decision": digest,
            "next": "gov rollback recommend: the checkpoint to restart from",
        }
        atomic_write(self.gate.stop_file, (json.dumps(marker, indent=2) + "\n").encode())
        self.say(f"gov: wrote the stop marker {self.gate.stop_file} ({ref} blocked)")

    def _ensure_run(self) -> None:
        try:
            self.registry.run(self.run)
        except NotFound:
            self.registry.add_run(self.run, note=f"registered by gov watch of {self.root}")
            self.say(f"registered run {self.run}")

    def _register(self, item: Found, done: Pass, previous: int) -> bool:
        """Pin and register one checkpoint; False (said, and in `done`) where it cannot be.
        `previous`: the registered checkpoint before it (-1: none)."""
        ref = f"{self.run}@{item.step}"
        try:
            if self.exposure is not None:
                weights = self.exposure.at(item.step)
            else:
                weights = self._mixture(item.step, previous)
        except GovError as exc:
            done.problems.append(exc.message)
            self.say(f"gov: error: {ref}: {exc.message}")
            return False
        if isinstance(item.path, objectstore.S3Folder):
            return self._reference(item, done, weights)
        assert isinstance(item.path, Path)
        dest = self.registry.ws.root / "ckpt" / self.run / f"step-{item.step}"
        if dest.exists():  # left by a watcher killed before it registered the step
            shutil.rmtree(dest)
        start = time.perf_counter()
        try:
            if item.parts:
                size = sum(pin(Path(str(source)), dest / place) for place, source in item.parts)
            else:
                size = pin(item.path, dest)
        except FileNotFoundError:
            shutil.rmtree(dest, ignore_errors=True)  # a part pinned before another vanished
            self._lost(item.step, done)
            return False
        try:
            self.registry.add_checkpoints(
                self.run,
                [NewCheckpoint(item.step, dest, weights, note=f"gov watch: {item.path}")],
                link="hardlink",
            )
        except GovError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            done.problems.append(f"{ref}: {exc.message}")
            self.say(f"gov: error: {ref}: {exc.message}")
            return False
        done.registered.append(ref)
        self.say(
            f"registered {ref} from {item.path} ({_size(size)} pinned, "
            f"{time.perf_counter() - start:.1f} s)"
        )
        return True

    def _settled(self, item: Found, state: State) -> bool:
        """An object store has no rename: a checkpoint folder is there from its first object
        on, and a job that syncs a framework's output uploads its files in any order. So one
        marked complete is taken once a later look finds everything under it unchanged."""
        assert isinstance(item.path, objectstore.S3Folder)
        folders = [p for _, p in item.parts] or [item.path]
        mark = "+".join(f.fingerprint() for f in folders if isinstance(f, objectstore.S3Folder))
        if state.settling.get(item.step) == mark:
            return True
        if item.step not in state.settling:
            self.say(
                f"{self.run}@{item.step} is complete in {item.path.uri}; it is registered when the "
                "next look finds it unchanged"
            )
        state.settling[item.step] = mark
        return False

    def _reference(self, item: Found, done: Pass, weights: Mapping[str, float]) -> bool:
        """Register a checkpoint in object storage by reference: each object's version (or,
        in a bucket without versioning, its ETag) in the listing that found it complete, each
        checked to be there before it is recorded."""
        ref = f"{self.run}@{item.step}"
        start = time.perf_counter()
        assert isinstance(item.path, objectstore.S3Folder)
        parts = tuple((place, p) for place, p in item.parts if isinstance(p, objectstore.S3Folder))
        try:
            uri = item.path.uri
            objects = objectstore.manifest(item.path, parts)
            try:
                objectstore.check(objects)  # Gone (a FileNotFoundError): lost, below
            except GovError as exc:
                raise GovError(f"{exc.message}; it is looked at again on the next look") from None
            self.registry.add_checkpoints(
                self.run,
                [NewCheckpoint(item.step, uri, weights, note=f"gov watch: {uri}", objects=objects)],
            )
        except FileNotFoundError:
            self._lost(item.step, done)
            return False
        except GovError as exc:
            done.problems.append(f"{ref}: {exc.message}")
            self.say(f"gov: error: {ref}: {exc.message}")
            return False
        done.registered.append(ref)
        how = (
            "pinned by version"
            if objects.versioned
            else "by ETag only: the bucket keeps no versions, so a delete loses it; turn "
            "versioning on to pin it"
        )
        self.say(
            f"registered {ref} from {uri} ({len(objects.objects)} objects, "
            f"{_size(objects.size)}, {how}; {time.perf_counter() - start:.1f} s)"
        )
        return True

    def _mixture(self, step: int, previous: int) -> dict[str, float]:
        """The exposure of a checkpoint without an exposure file: the share of each
        environment among the rollouts the framework dumped since the previous checkpoint (the
        data it was trained on), by `--environment-column`, or all of it `--environment`'s."""
        from . import rollouts

        gate = self.gate
        assert gate.rollouts is not None
        if gate.environment is not None:
            return {gate.environment: 1.0}
        files = _since(rollouts.dumps(self.layout.name, gate.rollouts), previous, step)
        if not files:
            raise GovError(
                f"no exposure for step {step}: no rollouts dumped since the previous checkpoint "
                f"under {gate.rollouts}"
            )
        column = gate.environment_column
        assert column is not None
        tally: dict[str, int] = {}
        for path in files:
            for rollout in rollouts.read(self.layout.name, path):
                env = rollout.fields.get(column)
                if not isinstance(env, str) or not env:
                    raise GovError(f"{rollout.where}: no environment in field {column}")
                tally[env] = tally.get(env, 0) + 1
        total = sum(tally.values())
        return {env: count / total for env, count in sorted(tally.items())}

    def _lost(self, step: int, done: Pass) -> None:
        """A checkpoint the framework deleted before it could be pinned: said and recorded."""
        ref = f"{self.run}@{step}"
        with self.registry.ws.change(f"checkpoint {ref} lost before it was pinned") as change:
            audit.append(
                change,
                "checkpoint_lost",
                subject={"run": self.run, "checkpoint": ref},
                outcome="lost",
                reason=(
                    f"the {self.layout.name} folder for step {step} under {self.root} was deleted "
                    "before gov watch could pin it: it is no restore point"
                ),
            )
        done.lost.append(step)
        self.say(f"gov: error: {ref}: deleted before it could be pinned (recorded in the trail)")


def _since(by_step: dict[int, list[Path]], previous: int, step: int) -> list[Path]:
    """The dumps a checkpoint at `step` was trained on: those after the previous checkpoint,
    up to and at its own step."""
    return [p for s, found in sorted(by_step.items()) if previous < s <= step for p in found]


def _written(layout: Layout, item: Found) -> str | None:
    """A registered checkpoint folder's mark: the inode and mtime of the file its framework
    writes last (one stat, however many shards; a folder of thousands stays cheap at every
    look). None where that file is not there (a folder the framework is deleting, or an older
    OpenRLHF without metric.json): no mark, nothing said."""
    try:
        st = (Path(str(item.path)) / layout.last_written).stat()
    except OSError:
        return None
    return f"{st.st_ino}:{0 if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns}"


def _last_before(by_step: dict[int, list[Path]], previous: int) -> Path | None:
    """The last dump at or before the previous checkpoint (None: none), to tell a batch that
    TRL logged again after it."""
    earlier = [found[-1] for s, found in sorted(by_step.items()) if s <= previous]
    return earlier[-1] if earlier else None


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def watch(
    watcher: Watcher,
    *,
    once: bool,
    interval: float,
    stop: Callable[[], bool] = lambda: False,
) -> list[Pass]:
    """Look at the folder every `interval` seconds until `stop()` (or once)."""
    passes = []
    with watcher:
        while True:
            passes.append(watcher.look())
            folder = watcher.folder() if once and not passes[0].found else None
            if folder is not None and not any(folder.iterdir()) and isinstance(folder, S3Folder):
                raise GovError(f"{folder.uri}: no objects under it (the run's output to watch)")
            if folder is not None and any(folder.iterdir()):
                names = ", ".join(sorted(p.name for p in folder.iterdir())[:5])
                raise GovError(
                    f"{watcher.root}: not a {watcher.layout.name} output folder (no "
                    f"{watcher.layout.describe}; it holds {names})"
                )
            if once or stop() or (passes[-1].blocked and watcher.gate.exit_on_block):
                return passes
            time.sleep(interval)
