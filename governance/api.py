"""gov's API: one function per verb of the `gov` command, each taking plain arguments and
returning a typed result that carries everything the command prints.

The CLI is a thin layer over these functions, and a training loop calls the very same ones::

    from governance import api

    api.checkpoint_add("path/to/workspace", "main@1200", "ckpt/step-1200.pt", {"code-tests": 1})
    decision = api.check("path/to/workspace", "main@1200")
    if decision.outcome != "block":
        api.promote("path/to/workspace", "main@1200")

`workspace` is the workspace folder (or any folder inside it), or None for the one above the
current folder. `actor` names who acts in the audit trail (default: git's user.name and email).
The numerical libraries load only in the verbs that use them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from . import __version__
from .errors import ExposureError, GovError, TrailBroken
from .metrics import METRICS
from .models import Checkpoint, CheckpointStatus, Environment, Flag, Judge, Run
from .records import DEFAULT_ALPHA, KINDS

# The registry (and through it git, DVC and the stores) is imported by the calls that open it,
# not here: `gov audit show` and `gov --help` start without it.
if TYPE_CHECKING:
    from .audit import Anchor, Shown, Verification
    from .backtest import Backtest, CountsBacktest
    from .calibration import Calibration
    from .compare import Comparison
    from .example import ExampleResult
    from .ingest import IngestResult
    from .judging.rubric import Rubric
    from .judging.runner import Outcome as JudgeOutcome
    from .judging.runner import Transcript
    from .lake import Aggregated
    from .policies import Finding
    from .policy_tools import CaseResult, Explanation
    from .records import AuditEntry, Decision
    from .registry import NewCheckpoint, Registry, Summary
    from .review import ReportResult
    from .rollback import Applied, Recommendation
    from .stats.series import Series
    from .watch import Pass
    from .workspace import InitResult, Workspace

Where: TypeAlias = "Path | str | Registry | None"
Progress = Callable[[str, float], None]

__all__ = [
    "AUDIT_KINDS",
    "CHECKPOINT_STATUSES",
    "DEFAULT_ALPHA",
    "METRIC_NAMES",
    "NewCheckpoint",
    "Where",
    "__version__",
    "aggregate",
    "audit_anchor",
    "audit_log",
    "audit_pressure",
    "audit_show",
    "audit_verify",
    "backtest",
    "backtest_counts",
    "check",
    "check_latest",
    "checkpoint_add",
    "checkpoint_list",
    "checkpoint_quarantine",
    "checkpoint_release",
    "checkpoint_show",
    "checkpoints_add",
    "env_add",
    "env_list",
    "env_retire",
    "env_show",
    "env_version",
    "example",
    "flag_ack",
    "flag_show",
    "flags_list",
    "ingest",
    "init",
    "judge_add",
    "judge_list",
    "judge_show",
    "metrics",
    "policy_explain",
    "policy_lint",
    "policy_test",
    "promote",
    "report",
    "rollback_apply",
    "rollback_recommend",
    "run_add",
    "run_list",
    "run_show",
    "schema",
    "schemas",
    "status",
]


def __getattr__(name: str) -> Any:
    if name == "NewCheckpoint":  # in __all__; loaded with the registry
        from .registry import NewCheckpoint

        return NewCheckpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ref(ref: str) -> tuple[str, int]:
    from .registry import parse_checkpoint_ref

    return parse_checkpoint_ref(ref)


def _workspace(workspace: Where) -> Workspace:
    """The workspace alone, for a reader that needs nothing of the registry's."""
    if workspace is None or isinstance(workspace, str | os.PathLike):
        from .workspace import find

        return find(Path(workspace) if workspace is not None else None)
    return workspace.ws


def _open(workspace: Where, actor: str | None = None) -> Registry:
    """The registry to act on; `actor` names who acts for this call only. A caller that holds
    a Registry already keeps it as it is: the actor applies to a copy of its workspace."""
    from .registry import Registry, open_registry

    if isinstance(workspace, Registry):
        if actor is None or actor == workspace.ws.actor:
            return workspace
        return Registry(replace(workspace.ws, actor=actor))
    return open_registry(workspace, actor=actor)


# -- the workspace ----------------------------------------------------------------------------
def init(directory: Path | str = ".") -> InitResult:
    """Make a git repository (or a folder in one) a governance workspace; idempotent."""
    from .workspace import init as init_workspace

    return init_workspace(Path(directory))


def status(workspace: Where = None) -> Summary:
    """Runs, checkpoints by status, environments by status, judges, reports and judgments."""
    return _open(workspace).summary()


# -- runs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunListing:
    run: Run
    checkpoints: int


@dataclass(frozen=True)
class RunDetail:
    run: Run
    lineage: list[str]  # run ids, oldest first
    checkpoints: list[Checkpoint]


def run_add(
    workspace: Where, name: str, *, parent: str | None = None, note: str | None = None
) -> Run:
    """Register a run; a restart names the checkpoint it forks from (`RUN@STEP`)."""
    parent_run, step = _ref(parent) if parent else (None, None)
    return _open(workspace).add_run(name, parent_run=parent_run, forked_from_step=step, note=note)


def run_list(workspace: Where = None) -> list[RunListing]:
    reg = _open(workspace)
    return [RunListing(r, len(reg.checkpoints(r.id))) for r in reg.runs()]


def run_show(workspace: Where, name: str) -> RunDetail:
    reg = _open(workspace)
    lineage = reg.lineage(name)
    return RunDetail(lineage[-1], [r.id for r in lineage], reg.checkpoints(name))


# -- checkpoints ------------------------------------------------------------------------------
def parse_exposure(
    exposure: Mapping[str, float] | Sequence[str] = (), exposure_file: Path | None = None
) -> dict[str, float]:
    """An exposure from a mapping, `ENV[@VERSION]=WEIGHT` texts, and/or a YAML file of the same
    mapping; the texts and mapping win over the file for the same key."""
    found: dict[str, float] = {}
    if exposure_file is not None:
        found.update(_exposure_file(exposure_file))
    if isinstance(exposure, Mapping):
        found.update({k: float(v) for k, v in exposure.items()})
        return found
    for value in exposure:
        key, sep, weight = value.rpartition("=")
        try:
            found[key] = float(weight)
        except ValueError:
            key = ""
        if not sep or not key:
            raise ExposureError(
                f"exposure {value!r}: expected ENV[@VERSION]=WEIGHT, for example code-tests=0.25",
                remedy="exposure",
            )
    return found


def _exposure_file(path: Path) -> dict[str, float]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExposureError(f"{path}: cannot read the exposure file: {exc}") from exc
    from . import yamlio

    data = yamlio.load(text, str(path), ExposureError, strict=True)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in data.items()
    ):
        raise ExposureError(
            f"{path}: an exposure file maps ENV[@VERSION] to a weight, e.g. `math: 0.5`"
        )
    return {k: float(v) for k, v in data.items()}


def checkpoint_add(
    workspace: Where,
    ref: str,
    artifact: Path | str,
    exposure: Mapping[str, float] | Sequence[str] = (),
    *,
    exposure_file: Path | None = None,
    note: str | None = None,
) -> Checkpoint:
    """Register RUN@STEP: DVC tracks the artifact, one git commit records the checkpoint."""
    run, step = _ref(ref)
    weights = parse_exposure(exposure, exposure_file)
    return _open(workspace).add_checkpoint(run, step, artifact, weights, note=note)


def checkpoints_add(workspace: Where, run: str, new: Sequence[NewCheckpoint]) -> list[Checkpoint]:
    """Register several checkpoints of a run in one commit (backfilling a run's history)."""
    return _open(workspace).add_checkpoints(run, new)


def checkpoint_list(
    workspace: Where = None, *, run: str | None = None, status: str | None = None
) -> list[Checkpoint]:
    found = _open(workspace).checkpoints(run)
    if status is not None:
        wanted = CheckpointStatus(status)
        found = [c for c in found if c.status == wanted]
    return found


def checkpoint_show(workspace: Where, ref: str) -> Checkpoint:
    return _open(workspace).checkpoint(*_ref(ref))


def checkpoint_quarantine(
    workspace: Where, ref: str, reason: str, *, actor: str | None = None
) -> Checkpoint:
    """Set a checkpoint aside: no restore point, promoted only by a recorded override, until
    released. Recorded in the audit trail with its reason."""
    return _open(workspace, actor).quarantine_checkpoint(*_ref(ref), _reason(reason))


def checkpoint_release(
    workspace: Where, ref: str, reason: str, *, actor: str | None = None
) -> Checkpoint:
    """Take a checkpoint out of quarantine: registered again (a promotion is earned again)."""
    return _open(workspace, actor).release_checkpoint(*_ref(ref), _reason(reason))


def _reason(reason: str) -> str:
    if not reason.strip():
        raise GovError("the reason is empty: say why (it is what the audit trail keeps)")
    return reason.strip()


# -- environments and judges ------------------------------------------------------------------
def env_add(
    workspace: Where,
    name: str,
    *,
    paths: Sequence[Path] = (),
    content_hash: str | None = None,
    description: str | None = None,
    note: str | None = None,
) -> Environment:
    """Register an environment; version 1 is the content hash of its files (or the given hash)."""
    return _open(workspace).add_environment(
        name, paths=list(paths), content_hash=content_hash, description=description, note=note
    )


def env_version(
    workspace: Where,
    name: str,
    *,
    note: str,
    paths: Sequence[Path] = (),
    content_hash: str | None = None,
    actor: str | None = None,
) -> Environment:
    """Register a redesign: a new version, active again; it resolves the environment's flag."""
    return _open(workspace, actor).add_environment_version(
        name, paths=list(paths), content_hash=content_hash, note=note
    )


def env_retire(
    workspace: Where, name: str, reason: str, *, actor: str | None = None
) -> Environment:
    """Stop training on an environment for good: no checkpoint's mixture may name it again and
    it takes no new version. Recorded in the audit trail with its reason."""
    return _open(workspace, actor).retire_environment(name, _reason(reason))


def env_list(workspace: Where = None) -> list[Environment]:
    return _open(workspace).environments()


def env_show(workspace: Where, name: str) -> Environment:
    return _open(workspace).environment(name)


def judge_add(
    workspace: Where,
    name: str,
    version: str,
    *,
    rubric: Sequence[Path] = (),
    rubric_hash: str | None = None,
    description: str | None = None,
    note: str | None = None,
    view: Literal["full", "action"] = "full",
) -> Judge:
    """Register a judge, or a new version of one (a new series, never pooled with the old).
    `view`: what it sees: the task, CoT and action (full), or the task and action only (action:
    the second channel of the obfuscation watch)."""
    return _open(workspace).add_judge(
        name,
        version,
        rubric=list(rubric),
        rubric_hash=rubric_hash,
        description=description,
        note=note,
        view=view,
    )


def judge_list(workspace: Where = None) -> list[Judge]:
    return _open(workspace).judges()


@dataclass(frozen=True)
class JudgeDetail:
    """A judge, its versions, and each calibrated version's calibration."""

    judge: Judge
    calibrations: dict[str, Calibration]


def judge_show(workspace: Where, name: str) -> JudgeDetail:
    from . import calibration

    reg = _open(workspace)
    record = reg.judge(name)
    found = {}
    for v in record.versions:
        calibrated = calibration.load(reg.ws, name, v.version)
        if calibrated is not None:
            found[v.version] = calibrated
    return JudgeDetail(record, found)


def judge_calibrate(
    workspace: Where,
    judge: str,
    labels: Path,
    *,
    episode_columns: Sequence[str] = ("episode",),
    truth_column: str = "truth",
    verdict_column: str = "verdict",
    where: Mapping[str, str] | None = None,
    truth_map: Mapping[str, str] | None = None,
    verdict_map: Mapping[str, str] | None = None,
    verdicts: Path | None = None,
) -> Calibration:
    """Calibrate judge version `judge` (NAME@VERSION) on labelled episodes: its confusion
    matrix (true class against verdict) recorded with the version, in one commit with an audit
    entry naming the label file's hash. `where` selects rows (column = value); the maps
    translate other vocabularies; `verdicts` is a report of the judge's to read the verdicts
    from, matched by episode id, when the label file has none."""
    from .calibration import Columns, calibrate

    name, _, version = judge.partition("@")
    if not name or not version:
        raise GovError(f"judge {judge!r}: name it as NAME@VERSION")
    columns = Columns(tuple(episode_columns), truth_column, verdict_column)
    return calibrate(
        _open(workspace),
        name,
        version,
        labels,
        columns=columns,
        where=where,
        truth_map=truth_map,
        verdict_map=verdict_map,
        verdicts=verdicts,
    )


def judge_compare(workspace: Where, name: str, first: str, second: str) -> Comparison:
    """Two versions of a judge on what both judged: agreement (Cohen's kappa with its interval,
    the confusion of verdicts) on the same episodes, and the rate ratio per environment."""
    from .compare import compare

    return compare(_open(workspace), name, first, second)


def judge_rubric(path: Path | None = None) -> Rubric:
    """The bundled (a)/(b) rubric, or the user's file, with its sha256 (the rubric hash of a
    judge version that applies it)."""
    from .judging.rubric import load

    return load(path)


def judge_run(
    files: Sequence[Path],
    *,
    judge: str,
    model: str,
    endpoint: str,
    out: Path,
    workspace: Where = None,
    view: Literal["full", "action"] = "full",
    rubric: Path | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    temperature: float = 0.0,
    seed: int = 0,
    max_tokens: int | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
    cache: Path | None = None,
    progress: Callable[[JudgeOutcome], None] | None = None,
) -> JudgeOutcome:
    """Judge transcripts with a model behind an OpenAI-compatible endpoint; write an
    episode-level divergence report `gov ingest` accepts. The API key is read from the
    environment variable `api_key_env`, and is never written anywhere. In a workspace, every
    episode's keys (and the judge version) must be registered before anything is sent."""
    import os

    from .judging.client import ChatClient
    from .judging.rubric import load
    from .judging.runner import Cache, Settings, read_transcripts, run
    from .registry import check_name

    name, at, version = judge.partition("@")
    if not at or not name or not version:
        raise GovError(f"--judge {judge}: name the judge and its version, as NAME@VERSION")
    check_name("judge", name)
    if not _JUDGE_VERSION.fullmatch(version):
        raise GovError(
            f"--judge {judge}: a version label is letters, digits and . _ + -, beginning with a "
            "letter or digit"
        )
    if concurrency < 1 or (max_tokens is not None and max_tokens < 1):
        raise GovError("--concurrency and --max-tokens are at least 1")
    loaded = load(rubric)
    transcripts = read_transcripts([Path(f) for f in files])
    registry = _maybe_open(workspace)
    if registry is not None:
        registered = next((v for v in registry.judge(name).versions if v.version == version), None)
        if registered is None:
            known = ", ".join(v.version for v in registry.judge(name).versions)
            raise GovError(f"judge {name!r} has no version {version!r} (known: {known})")
        if registered.rubric_hash != f"sha256:{loaded.sha256}":
            raise GovError(
                f"judge {name}@{version} was registered with rubric {registered.rubric_hash}, "
                f"but this run applies {loaded.source} (sha256:{loaded.sha256}): a new rubric is "
                f"a new judge version (gov judge add {name} --version NEW --rubric-hash "
                f"{loaded.sha256})"
            )
        if (registered.view or "full") != view:
            raise GovError(
                f"judge {name}@{version} was registered for the {registered.view or 'full'} view, "
                f"but this run asks for --view {view}: each view is its own judge version (gov "
                f"judge add {name} --version NEW --view {view})"
            )
        _known_keys(registry, transcripts, name, version)
    if out.exists() and out.is_dir():
        raise GovError(f"{out}: a folder; --out names the report file to write")
    settings = Settings(
        name,
        version,
        model,
        view,
        temperature,
        seed,
        max_tokens,
        concurrency,
        requests_per_minute,
        tokens_per_minute,
        price_in,
        price_out,
    )
    client = ChatClient(
        endpoint, os.environ.get(api_key_env) or None, timeout=timeout, max_retries=max_retries
    )
    store = Cache(cache or out.with_name(out.name + ".cache.sqlite"))
    try:
        return run(transcripts, loaded, settings, client, store, out, progress)
    finally:
        store.close()


_JUDGE_VERSION = re.compile(r"[A-Za-z0-9][\w.+-]{0,99}")


def _maybe_open(workspace: Where) -> Registry | None:
    """The workspace named, or the one around the current folder, or None outside any (a judge
    run needs no workspace; in one, it checks the episodes' keys first)."""
    from .errors import NotAWorkspace

    if workspace is not None:
        return _open(workspace)
    try:
        return _open(None)
    except NotAWorkspace:
        return None


def _known_keys(reg: Registry, transcripts: Sequence[Transcript], judge: str, version: str) -> None:
    """Every transcript's keys resolve in the registry, or one line naming the first that does
    not (before any request is sent)."""
    from .ingest.join import Join

    join = Join(reg)
    for t in transcripts:
        found = join.group(t.run, t.step, t.environment, t.environment_version, judge, version)
        if isinstance(found, str):
            raise GovError(f"episode {t.episode!r}: {found}: register it before judging")


# -- reports and metrics ----------------------------------------------------------------------
def watch(
    workspace: Where,
    folder: Path | str,
    *,
    layout: str,
    run: str,
    exposure_file: Path | Mapping[str, float] | None = None,
    once: bool = False,
    interval: float = 30.0,
    reports: Path | None = None,
    stop_file: Path | None = None,
    exit_on_block: bool = False,
    rollouts: Path | None = None,
    judge: str | None = None,
    model: str | None = None,
    endpoint: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    environment: str | None = None,
    environment_column: str | None = None,
    split: str = "<think>,</think>",
    say: Callable[[str], None] = lambda _line: None,
    stop: Callable[[], bool] = lambda: False,
    actor: str | None = None,
) -> list[Pass]:
    """Follow a training run's output folder (`layout`: how its framework writes checkpoints):
    pin and register each checkpoint once its framework marks it complete; `once`: look once.
    With `reports` (a folder judge reports are dropped in): ingest each, check each checkpoint
    once its judgments are in, and on a block write `stop_file` (and stop, `exit_on_block`).
    With `rollouts` (the framework's rollout dumps) and a judge (`judge` as NAME@VERSION,
    `model`, `endpoint`, as `gov judge run` takes them): each checkpoint's rollouts are turned
    into transcripts, judged, and the report taken in as above.
    `say` gets a line per checkpoint registered and per problem (the watch goes on)."""
    from .layouts import layout as find_layout
    from .watch import Gate, Watcher, read_exposure
    from .watch import watch as follow

    chosen = find_layout(layout)
    # a file, a mapping for the whole run, or (None) each checkpoint's from its rollouts
    exposure = read_exposure(exposure_file) if exposure_file is not None else None
    registry = _open(workspace, actor)
    judging: Callable[[Path, Path], None] | None = None
    if judge is not None and rollouts is None:
        raise GovError("--judge judges the framework's rollouts: give --rollouts DIR")
    if rollouts is not None and judge is not None:
        if model is None or endpoint is None:
            raise GovError("--judge needs --model and --endpoint (as gov judge run takes them)")
        chosen_model, chosen_endpoint = model, endpoint

        def judging(transcripts: Path, out: Path) -> None:
            judge_run(
                [transcripts],
                judge=judge,
                model=chosen_model,
                endpoint=chosen_endpoint,
                out=out,
                workspace=registry,
                api_key_env=api_key_env,
                concurrency=concurrency,
                cache=transcripts.with_name("judge-cache.sqlite"),
            )

    gate = Gate(
        reports=reports,
        stop_file=stop_file,
        exit_on_block=exit_on_block,
        rollouts=rollouts,
        judge=judging,
        environment=environment,
        environment_column=environment_column,
        split=split,
    )
    from . import objectstore

    root = folder if objectstore.is_uri(folder) else Path(folder)
    watcher = Watcher(registry, root, chosen, run, exposure, say, gate)
    return follow(watcher, once=once, interval=interval, stop=stop)


@dataclass(frozen=True)
class TranscriptsWritten:
    out: Path
    transcripts: int
    steps: list[int]
    environments: list[str]


def transcripts_from(
    workspace: Where,
    framework: str,
    paths: Sequence[Path],
    out: Path,
    *,
    run: str,
    environment: str | None = None,
    environment_column: str | None = None,
    split: str = "<think>,</think>",
) -> TranscriptsWritten:
    """A framework's rollout dumps (`trl`, `verl`, `nemo-rl`) as transcripts for `gov judge
    run`, each episode's chain of thought split from its action by `split` (OPEN,CLOSE); the
    environment version is the registered current one. Written whole, or not at all."""
    from . import rollouts

    reg = _open(workspace)
    reg.run(run)  # an unknown run is an error here, not at ingest
    rollouts.check_out(out, paths)
    versions: dict[str, int | str] = {e.id: e.current.number for e in reg.environments()}
    found = rollouts.to_transcripts(
        framework,
        list(paths),
        run=run,
        environment=environment,
        environment_column=environment_column,
        versions=versions,
        split=rollouts.parse_split(split),
    )
    rollouts.write(found, out)
    return TranscriptsWritten(
        out,
        len(found),
        sorted({t.step for t in found}),
        sorted({t.environment for t in found}),
    )


def ingest(
    workspace: Where,
    files: Sequence[Path | str] = (),
    *,
    folder: Path | None = None,
    replace: bool = False,
    same_counts: bool = False,
    progress: Progress | None = None,
    actor: str | None = None,
) -> IngestResult:
    """Validate judge reports whole, join them with the registry, count and keep them: every
    file of the call, or none. `folder`: also every report file in it (by name).
    `same_counts`: add aggregated counts even where they equal an earlier report's exactly."""
    from .ingest import IngestResult
    from .ingest import ingest as ingest_reports
    from .ingest.formats import report_files

    paths = [Path(f) for f in files]
    if folder is not None:
        paths += report_files(folder)
    if not paths:
        if folder is None:
            raise GovError("no report files given")
        return IngestResult(note=f"{folder}: no report files: nothing to ingest")
    return ingest_reports(
        _open(workspace, actor),
        paths,
        replace=replace,
        same_counts=same_counts,
        progress=progress,
    )


def aggregate(
    workspace: Where,
    lake: Path | str,
    out: Path | str,
    *,
    engine: str = "duckdb",
    master: str | None = None,
) -> Aggregated:
    """Check a Parquet lake of judged episodes as strictly as `ingest` checks a report, count
    it with the one SQL on DuckDB (here) or Spark (`master`: a cluster's), and write the counts
    `ingest` takes with a manifest of every file counted; refused, nothing is written."""
    from . import objectstore
    from .lake import aggregate as aggregate_lake

    where: Path | str = Path(lake)
    if objectstore.is_uri(str(lake)):
        where = objectstore.folder_uri(str(lake))
    elif re.match(r"^[a-z][a-z0-9+.-]*://", str(lake)):
        raise GovError(f"{lake}: a lake is a folder or an s3:// URI (S3 and stores of its API)")
    return aggregate_lake(_open(workspace), where, Path(out), engine, master)


@dataclass(frozen=True)
class Metrics:
    """Series of the metrics asked for (every metric when none was named), with the ones a
    summary shows first (`headline`: those named, else the default metric)."""

    series: list[Series]
    headline: list[str]
    plots: list[Path] | None = None  # the CSV files written for `dvc plots`, when asked


def metrics(
    workspace: Where = None,
    *,
    names: Sequence[str] = (),
    run: str | None = None,
    environment: str | None = None,
    judge: str | None = None,
    plots: Path | None = None,
    corrected: bool = False,
) -> Metrics:
    """Each metric's series per environment version and judge version, with 95% intervals.

    `names`: the metrics (`all`, or none, for every one; a table shows the rationalization rate
    of those). With `run`, the series follow its lineage. `plots`: also write one CSV per series
    there for `dvc plots`. `corrected`: the rationalization rate of each calibrated judge
    version also corrected for its error (`Series.corrected`, with `Series.correction` saying
    how, or why not)."""
    from . import calibration, counts, exports
    from .metrics import DEFAULT_METRIC
    from .stats.series import many

    chosen = list(METRICS) if "all" in names or not names else list(dict.fromkeys(names))
    unknown = [m for m in chosen if m not in METRICS]
    if unknown:
        raise GovError(f"unknown metric {unknown[0]!r}: one of {', '.join(METRICS)}")
    reg = _open(workspace)
    if environment is not None:
        reg.environment(environment)
    if judge is not None:
        reg.judge(judge)
    order = reg.order(run) if run is not None else None
    found = many(counts.table(reg.ws), chosen, order, environment=environment, judge=judge)
    missing = counts.unjudged(reg.ws)
    for s in found:
        k = s.key
        s.unjudged = {
            f"{run}@{step}": n
            for (run, step, env, version, j, jv), n in missing.items()
            if (env, version, j, jv)
            == (k.environment, k.environment_version, k.judge, k.judge_version)
            and n
        }
    if corrected:
        errors = calibration.all_errors(reg.ws)
        for s in found:
            calibration.correct(s, errors.get((s.key.judge, s.key.judge_version)))
    written = exports.plots(plots, found) if plots is not None else None
    return Metrics(found, chosen if names else [DEFAULT_METRIC], written)


@dataclass(frozen=True)
class SchemaFile:
    """One of gov's file formats: its schema's name and the file it describes."""

    name: str
    describes: str


@dataclass(frozen=True)
class Schema:
    name: str
    describes: str
    schema: dict[str, Any]  # the JSON Schema (draft 2020-12)


def schemas() -> list[SchemaFile]:
    """Every file format gov has a JSON Schema for."""
    from .schemas import schemas as listed

    return [SchemaFile(name, where) for name, where in listed().items()]


def schema(name: str) -> Schema:
    """The JSON Schema of one of gov's file formats (see `schemas`)."""
    from .schemas import schema as one
    from .schemas import schemas as listed

    body = one(name)
    return Schema(name, listed()[name], body)


# -- gates ------------------------------------------------------------------------------------
def check(
    workspace: Where,
    ref: str,
    *,
    record: bool = True,
    metrics_file: Path | None = None,
    actor: str | None = None,
) -> Decision:
    """Evaluate every policy at RUN@STEP on the history up to it, and (unless `record` is
    False) record the decision: audit/decisions/, flags, a blocked checkpoint; one commit."""
    from . import gates

    reg = _open(workspace, actor)
    decision = gates.decide(reg, ref)
    if record:
        gates.record(reg, decision)
    if metrics_file is not None:
        from . import exports  # with the rollback code it loads: only when asked for

        exports.check_metrics(metrics_file, decision)
    return decision


def check_latest(
    workspace: Where = None,
    *,
    run: str | None = None,
    record: bool = True,
    metrics_file: Path | None = None,
    actor: str | None = None,
) -> Decision | None:
    """`check` at the latest checkpoint of `run`; without one, of the newest run forked (at any
    remove) from the only run or `main`: the run being trained, after restarts. None when that
    run has no checkpoint yet."""
    reg = _open(workspace, actor)
    own = reg.checkpoints(run if run is not None else reg.newest(reg.default_run()))
    if not own:
        if metrics_file is not None:
            from . import exports

            exports.check_metrics(metrics_file, None)
        return None
    return check(reg, own[-1].ref, record=record, metrics_file=metrics_file)


@dataclass(frozen=True)
class Promotion:
    checkpoint: str
    outcome: str  # the decision the promotion rests on
    digest: str
    override: str | None  # the reason, when forced
    commit: str | None


def promote(
    workspace: Where, ref: str, *, override_reason: str | None = None, actor: str | None = None
) -> Promotion:
    """Promote RUN@STEP after a recorded passing check of the same inputs; with
    `override_reason`, even though the policies say otherwise (recorded)."""
    from . import gates

    decision, commit = gates.promote(_open(workspace, actor), ref, override_reason=override_reason)
    return Promotion(ref, decision.outcome, decision.digest, override_reason, commit)


def flags_list(workspace: Where = None) -> list[Flag]:
    return _open(workspace).flags()


def flag_show(workspace: Where, environment: str) -> Flag:
    return _open(workspace).flag(environment)


def flag_ack(workspace: Where, environment: str, reason: str, *, actor: str | None = None) -> Flag:
    """Acknowledge a flag: it stays until a new environment version resolves it."""
    return _open(workspace, actor).acknowledge_flag(environment, reason)


# -- policies ---------------------------------------------------------------------------------
def _policy_folder(workspace: Where, folder: Path | None) -> tuple[Path, Path]:
    if folder is not None:
        return folder.resolve(), folder.resolve().parent
    ws = _open(workspace).ws
    return ws.policies, ws.root


@dataclass(frozen=True)
class Lint:
    folder: Path
    files: int
    findings: list[Finding]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.level == "error")


def policy_lint(workspace: Where = None, folder: Path | None = None) -> Lint:
    """Every problem of every policy file: schema errors, then what their numbers imply."""
    from .policy_tools import lint

    where, root = _policy_folder(workspace, folder)
    files = len([*where.glob("*.yaml"), *where.glob("*.yml")])
    findings = lint(where, root)
    if folder is None and not any(f.level == "error" for f in findings):
        from .gates import unregistered_judges
        from .policies import load_policies

        registry = _open(workspace)
        findings += unregistered_judges(registry, load_policies(where, root))
    return Lint(where, files, findings)


def policy_explain(
    workspace: Where, name: str, ref: str, environment: str | None = None
) -> Explanation:
    """One policy's computation at a checkpoint, step by step: the policy, the history it
    reads, and for each series its counts, baseline, posterior and result."""
    from .policy_tools import explain

    return explain(_open(workspace), name, ref, environment)


def policy_test(workspace: Where = None, folder: Path | None = None) -> list[CaseResult]:
    """Run the policy test cases (the workspace's policies/tests/*.yaml, or `folder`)."""
    from .policies import load_policies
    from .policy_tools import run_tests

    policies, root = _policy_folder(workspace, None)
    tests = folder.resolve() if folder is not None else policies / "tests"
    return run_tests(tests, root, load_policies(policies, root))


def backtest(
    workspace: Where = None, *, run: str | None = None, alpha: float = DEFAULT_ALPHA
) -> Backtest:
    """Replay the policies at every checkpoint of a run, each seeing only its past."""
    from .backtest import backtest as replay

    reg = _open(workspace)
    return replay(reg, reg.default_run(run), alpha=alpha)


def backtest_counts(
    counts: Path | str, *, policies: Path | str | None = None, alpha: float = DEFAULT_ALPHA
) -> CountsBacktest:
    """Replay policies (a folder; the bundled defaults without one) over aggregated count
    records exported from any system, without a workspace: each run's checkpoints are its steps
    in order."""
    from .backtest import backtest_counts as replay

    return replay(Path(counts), None if policies is None else Path(policies), alpha=alpha)


# -- rollback ---------------------------------------------------------------------------------
def rollback_recommend(
    workspace: Where = None,
    *,
    run: str | None = None,
    alpha: float | None = None,
    record: bool = True,
    metrics_file: Path | None = None,
    actor: str | None = None,
) -> Recommendation:
    """The checkpoint to restart from, the environments to redesign, and the cost; recorded in
    the audit trail unless `record` is False."""
    from . import exports
    from .rollback import recommend, record_recommendation

    reg = _open(workspace, actor)
    rec = recommend(reg, reg.default_run(run), alpha=DEFAULT_ALPHA if alpha is None else alpha)
    if record:
        record_recommendation(reg, rec)
    if metrics_file is not None:
        exports.restore_metrics(metrics_file, rec)
    return rec


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback does (`applied` None: a dry run, nothing changed)."""

    recommendation: Recommendation
    target: Path
    applied: Applied | None


def rollback_apply(
    workspace: Where,
    to: Path,
    *,
    run: str | None = None,
    new_run: str | None = None,
    alpha: float | None = None,
    dry_run: bool = False,
    actor: str | None = None,
) -> RollbackPlan:
    """Fork a new run from the restore point, check its artifact out to `to`, and put the
    flagged environments in redesign (one commit); `dry_run` only says what it would do."""
    from .rollback import apply, check_target, recommend

    reg = _open(workspace, actor)
    name = reg.default_run(run)
    chosen = DEFAULT_ALPHA if alpha is None else alpha
    if dry_run:
        check_target(to)
        return RollbackPlan(recommend(reg, name, alpha=chosen), to, None)
    done = apply(reg, name, to=to, new_run=new_run, alpha=chosen)
    return RollbackPlan(done.recommendation, to, done)


# -- the audit trail --------------------------------------------------------------------------
def audit_log(
    workspace: Where = None,
    *,
    since: datetime | str | None = None,
    run: str | None = None,
    checkpoint: str | None = None,
    environment: str | None = None,
    kind: str | None = None,
) -> list[AuditEntry]:
    """Audit entries that match every filter, oldest first; `since` is a date, a time, or a
    span back from now (`7d`, `24h`, `2w`)."""
    from . import audit

    moment = audit.parse_since(since) if isinstance(since, str) else since
    return audit.log(
        _open(workspace).ws,
        since=moment,
        run=run,
        checkpoint=checkpoint,
        environment=environment,
        kind=kind,
    )


def audit_show(workspace: Where, entry: str) -> Shown:
    """One entry (by number, or by a prefix of its id) and what it references, as committed."""
    from . import audit

    return audit.show(_workspace(workspace), entry)


def audit_verify(workspace: Where = None, *, allowed_signers: Path | None = None) -> Verification:
    """Verify the hash chain and the heads git recorded, every entry against the commit that
    carries it, and the registry's statuses against the trail; raises TrailBroken naming the
    first bad entry."""
    from . import audit, calibration, counts
    from .models import CheckpointStatus, EnvironmentStatus

    reg = _open(workspace)
    done = audit.verify(reg.ws)
    if allowed_signers is not None and not allowed_signers.is_file():
        raise GovError(f"{allowed_signers}: no such allowed-signers file")
    audit.verify_commits(reg.ws, allowed_signers)
    audit.verify_anchors(reg.ws)
    try:  # the ledger against the ingests the trail recorded
        counts.check_against_trail(reg.ws)
    except GovError as exc:
        raise TrailBroken(exc.message) from None
    every = reg.checkpoints()
    audit.verify_statuses(
        reg.ws,
        [c.ref for c in every if c.status == CheckpointStatus.PROMOTED],
        [(f.environment, f.checkpoint) for f in reg.flags()],
        [c.ref for c in every if c.status == CheckpointStatus.BLOCKED],
        [e.id for e in reg.environments() if e.status == EnvironmentStatus.IN_REDESIGN],
        [c.ref for c in every if c.status == CheckpointStatus.QUARANTINED],
        [(c.judge, c.version, c.labels_sha256) for c in calibration.every(reg.ws)],
        [e.id for e in reg.environments() if e.status == EnvironmentStatus.RETIRED],
        {c.ref: c.status.value for c in every},
        {e.id: e.status.value for e in reg.environments()},
    )
    return done


def audit_anchor(workspace: Where = None, *, remote: str | None = None) -> Anchor:
    """Record the verified head of the trail as a tag, pushed to `remote` if given."""
    from . import audit

    return audit.anchor(_open(workspace).ws, remote)


@dataclass(frozen=True)
class Pressure:
    """Interventions made on monitor evidence, per environment and kind, and the environments
    redesigned more often than the monitor-pressure policy allows."""

    counts: dict[str, dict[str, int]]
    limit: int
    heavy: list[str]


def audit_pressure(workspace: Where = None) -> Pressure:
    from . import audit
    from .policies import load_policies, pressure_limit

    ws = _open(workspace).ws
    found = audit.pressure(ws)
    limit = pressure_limit(load_policies(ws.policies, ws.root))
    heavy = sorted(env for env, c in found.items() if c["redesign"] > limit)
    return Pressure(found, limit, heavy)


# -- the review page and the example ----------------------------------------------------------
def report(
    workspace: Where = None, output: Path | str | None = None, *, run: str | None = None
) -> ReportResult:
    """Write the self-contained HTML review page of a run and its lineage to `output`
    (default: `report.html` in the workspace's top folder)."""
    from .review import PAGE, build_report

    reg = _open(workspace)
    return build_report(reg, Path(output) if output is not None else reg.ws.root / PAGE, run)


def example(
    directory: Path | None = None, *, seed: int | None = None, remote: Path | None = None
) -> ExampleResult:
    """Build the bundled example workspace and run gov's main job on it."""
    from .example import build_example

    return build_example(directory, seed=seed, remote=remote)


# -- the vocabularies the commands offer ------------------------------------------------------
CHECKPOINT_STATUSES = [s.value for s in CheckpointStatus]
METRIC_NAMES = list(METRICS)
AUDIT_KINDS = list(KINDS)
