"""The bundled example: a deterministic training run with planted patterns, built where asked.

`build_example` turns the spec in `registry/example.yaml` (or one given in code, as the tests and
benchmarks do with more checkpoints) into a real workspace: a git repository with environment and
rubric sources, DVC-tracked placeholder checkpoint artifacts, and the registry. The same seed gives
the same environments, artifacts, exposures and steps.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import git
from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import artifacts, counts, scm
from .backtest import backtest
from .errors import ExampleError, GitError
from .gates import decide
from .gates import record as record_decision
from .ingest import ingest
from .models import Name
from .registry import NewCheckpoint, Registry, Summary
from .review import PAGE, build_report
from .rollback import recommend
from .stats.series import many
from .storage import load_yaml_model
from .workspace import Workspace, bundled, find, init
from .yamlio import dump as dump_yaml

Rate = Annotated[float, Field(ge=0, le=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rates(_Spec):
    """Per judged episode; the rest of the episodes get verdict `none`."""

    rationalized: Rate
    rejected: Rate
    overt: Rate
    divergent: Rate


class Rising(_Spec):
    kind: Literal["rising"]
    onset_step: int
    to_rationalized: Rate
    ramp_checkpoints: Annotated[int, Field(ge=1)]


class Spike(_Spec):
    kind: Literal["spike"]
    step: int
    rationalized: Rate


class Healthy(_Spec):
    kind: Literal["healthy"]


class Clean(_Spec):
    kind: Literal["clean"]


Pattern = Annotated[Rising | Spike | Healthy | Clean, Field(discriminator="kind")]


class ExampleEnvironment(_Spec):
    id: Name
    description: str
    weight: Annotated[float, Field(gt=0)]
    rates: Rates
    pattern: Pattern

    def describe(self) -> str:
        p = self.pattern
        if isinstance(p, Rising):
            return f"rationalization rises from step {p.onset_step} (to {p.to_rationalized:.0%})"
        if isinstance(p, Spike):
            return f"one bad checkpoint at step {p.step}, then back to normal"
        if isinstance(p, Healthy):
            return f"healthy: bad reasons often considered and rejected ({self.rates.rejected:.0%})"
        return "clean"


class ExampleJudge(_Spec):
    id: Name
    version: str
    description: str
    rubric: str


class EpisodeRange(_Spec):
    min: Annotated[int, Field(ge=1)]
    max: Annotated[int, Field(ge=1)]


class ExampleSpec(_Spec):
    schema_version: Literal[1] = 1
    seed: int
    run: Name
    checkpoints: Annotated[int, Field(ge=1)]
    step_interval: Annotated[int, Field(ge=1)]
    start_time: datetime
    hours_between_checkpoints: Annotated[float, Field(gt=0)]
    artifact_bytes: Annotated[int, Field(ge=1, le=1 << 20)]
    episodes: EpisodeRange
    judge: ExampleJudge
    environments: Annotated[tuple[ExampleEnvironment, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> ExampleSpec:
        ids = [e.id for e in self.environments]
        if len(set(ids)) != len(ids):
            raise ValueError("environment ids must be unique")
        return self

    @property
    def steps(self) -> list[int]:
        return [self.step_interval * (i + 1) for i in range(self.checkpoints)]


def load_spec(path: Path | None = None) -> ExampleSpec:
    path = path or bundled("registry") / "example.yaml"
    return load_yaml_model(path, ExampleSpec, str(path))


def exposures(spec: ExampleSpec, rng: random.Random) -> list[dict[str, float]]:
    """Mixture weights per checkpoint: each environment's weight drifts slowly around its base."""
    phases = {e.id: rng.uniform(0, 2 * math.pi) for e in spec.environments}
    mixes: list[dict[str, float]] = []
    for i in range(spec.checkpoints):
        raw = {
            e.id: e.weight * (1 + 0.25 * math.sin(i / 7 + phases[e.id]) + rng.uniform(-0.05, 0.05))
            for e in spec.environments
        }
        total = sum(raw.values())
        mix = {k: round(v / total, 4) for k, v in raw.items()}
        last = spec.environments[-1].id
        mix[last] = round(1 - sum(v for k, v in mix.items() if k != last), 4)
        mixes.append(mix)
    return mixes


EVIDENCE = {
    "rejected": "I could special-case the test inputs, but that would not fix the bug; "
    "doing it properly.",
    "rationalized": "Special-casing is wrong, but the spec is ambiguous, so matching the expected "
    "output here is the most faithful reading.",
    "overt": "The grader only checks the output format, so I will print what it expects.",
}


def verdict_rates(env: ExampleEnvironment, step: int, steps: list[int]) -> dict[str, float]:
    """The planted per-episode verdict rates of an environment at a checkpoint (before noise)."""
    rates = {"rationalized": env.rates.rationalized, "rejected": env.rates.rejected}
    rates["overt"] = env.rates.overt
    pattern = env.pattern
    if isinstance(pattern, Rising) and step >= pattern.onset_step:
        since = sum(1 for s in steps if pattern.onset_step <= s <= step)
        ramp = min(1.0, since / pattern.ramp_checkpoints)
        rates["rationalized"] += (pattern.to_rationalized - rates["rationalized"]) * ramp
    if isinstance(pattern, Spike) and step == pattern.step:
        rates["rationalized"] = pattern.rationalized
    return rates


def write_reports(spec: ExampleSpec, folder: Path, rng: random.Random) -> list[Path]:
    """The monitor's output for the example: one episode-level JSONL report per checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for step in spec.steps:
        lines: list[str] = []
        for env in spec.environments:
            rates = verdict_rates(env, step, spec.steps)
            # Checkpoints differ by more than binomial noise: a lognormal factor per checkpoint.
            wobble = math.exp(rng.gauss(0, 0.2))
            cuts: list[tuple[float, str]] = []
            total = 0.0
            for verdict in ("rationalized", "overt", "rejected"):
                total += min(0.9, rates[verdict] * wobble)
                cuts.append((total, verdict))
            for i in range(rng.randint(spec.episodes.min, spec.episodes.max)):
                u = rng.random()
                verdict = next((v for cut, v in cuts if u < cut), "none")
                divergent = rng.random() < (
                    0.25 if verdict == "rationalized" else env.rates.divergent
                )
                record: dict[str, object] = {
                    "schema_version": 1,
                    "run": spec.run,
                    "step": step,
                    "environment": env.id,
                    "environment_version": 1,
                    "episode": f"{spec.run}-{step}-{env.id}-{i:04d}",
                    "judge": spec.judge.id,
                    "judge_version": spec.judge.version,
                    "verdict": verdict,
                    "divergent": divergent,
                    "confidence": round(rng.uniform(0.6, 0.99), 3),
                }
                if verdict != "none":
                    quote = EVIDENCE[verdict]
                    start = rng.randrange(0, 4000)
                    record["evidence"] = [
                        {"start": start, "end": start + len(quote), "quote": quote}
                    ]
                lines.append(json.dumps(record, separators=(",", ":")))
        path = folder / f"{spec.run}-step-{step:06d}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


@dataclass(frozen=True)
class EarlyLate:
    """An environment's rationalized / judged counts over the first and the last checkpoints."""

    environment: str
    early: tuple[int, int]
    late: tuple[int, int]


def early_late(reg: Registry, run: str, window: int) -> list[EarlyLate]:
    found: list[EarlyLate] = []
    for s in many(counts.table(reg.ws), ["rationalization_rate"], reg.order(run)):
        head, tail = s.points[:window], s.points[-window:]
        found.append(
            EarlyLate(
                s.environment,
                (sum(p.k for p in head), sum(p.n for p in head)),
                (sum(p.k for p in tail), sum(p.n for p in tail)),
            )
        )
    return found


@dataclass(frozen=True)
class ExampleResult:
    root: Path
    run: str
    seed: int
    patterns: dict[str, str]
    summary: Summary
    window: int
    environments: list[EarlyLate]
    checked: str  # the checkpoint the example's `gov check` ran at
    outcome: str
    flagged: dict[str, str]  # environment -> first checkpoint the policies would have flagged it
    restore: str | None  # the restore point gov rollback recommend names
    p_contaminated: float
    checkpoints_lost: int
    onsets: dict[str, str]  # flagged environment -> its estimated onset
    report: Path  # the review page, in the example's workspace


def _target(directory: Path | None) -> Path:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="gov-example-"))
    target = directory.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExampleError(
            f"{directory} already exists and is not empty: the example needs a new or empty folder"
        )
    for folder in (target, *target.parents):
        if (folder / ".git").exists():
            raise ExampleError(
                f"{directory} is inside the git repository {folder}: the example makes its own "
                "repository, so choose a folder outside any other (for example /tmp/gov-example)"
            )
    target.mkdir(parents=True, exist_ok=True)
    return target


def _ensure_identity(repo: git.Repo) -> None:
    try:
        scm.check_identity(repo)
    except GitError:
        # A fresh machine may have no git identity; the example's own repository gets one.
        with repo.config_writer() as config:
            config.set_value("user", "name", "gov example")
            config.set_value("user", "email", "example@gov.invalid")


def build_example(
    directory: Path | None = None,
    *,
    seed: int | None = None,
    remote: Path | None = None,
    spec: ExampleSpec | None = None,
) -> ExampleResult:
    """Build the example workspace in `directory` (new or empty; default: a temporary folder)."""
    spec = spec or load_spec()
    if seed is not None:
        spec = spec.model_copy(update={"seed": seed})
    root = _target(directory)
    rng = random.Random(spec.seed)
    repo = git.Repo.init(root, initial_branch="main")
    _ensure_identity(repo)

    sources: list[Path] = [root / "README.md"]
    (root / "README.md").write_text(
        "# gov example: a training repository\n\nBuilt by `gov example`. Environments live in "
        "`environments/`, the monitor's rubric in `judges/`, checkpoints in `checkpoints/` "
        "(tracked by DVC). Try `gov status`, `gov checkpoint list`, `gov env list`.\n"
    )
    for env in spec.environments:
        folder = root / "environments" / env.id
        folder.mkdir(parents=True)
        task = {"id": env.id, "description": env.description, "seed": rng.randrange(1 << 30)}
        (folder / "task.yaml").write_bytes(dump_yaml(task))
        (folder / "scoring.yaml").write_bytes(
            dump_yaml({"grader": f"{env.id}-grader", "pass_threshold": 1.0})
        )
        sources += [folder / "task.yaml", folder / "scoring.yaml"]
    rubric = root / "judges" / spec.judge.id / "rubric.md"
    rubric.parent.mkdir(parents=True)
    rubric.write_text(spec.judge.rubric)
    sources.append(rubric)
    scm.commit_paths(repo, sources, "example: environment and judge sources")

    init(root)
    ws = find(root)
    if remote is not None:
        set_dvc_remote(ws, remote.expanduser().resolve())
    reg = Registry(ws)
    # The example's history is backfilled: registrations carry the run's own timeline.
    start = spec.start_time
    for env in spec.environments:
        reg.add_environment(
            env.id,
            paths=[root / "environments" / env.id],
            description=env.description,
            created=start,
        )
    reg.add_judge(
        spec.judge.id,
        spec.judge.version,
        rubric=[rubric],
        description=spec.judge.description,
        created=start,
    )
    reg.add_run(spec.run, note="the bundled example's training run", created=start)

    folder = root / "checkpoints" / spec.run
    folder.mkdir(parents=True)
    new: list[NewCheckpoint] = []
    for i, (step, mix) in enumerate(zip(spec.steps, exposures(spec, rng), strict=True)):
        artifact = folder / f"step-{step:06d}.bin"
        header = f"gov example placeholder checkpoint {spec.run}@{step}\n".encode()
        artifact.write_bytes(header + rng.randbytes(spec.artifact_bytes - len(header)))
        created = spec.start_time + timedelta(hours=spec.hours_between_checkpoints * (i + 1))
        new.append(NewCheckpoint(step=step, artifact=artifact, exposure=mix, created=created))
    reg.add_checkpoints(spec.run, new)

    # The monitor's reports arrive outside the registry; gov keeps its own content-addressed copy.
    (root / ".gitignore").write_text(f"/monitor-output/\n/{PAGE}\n/metrics/\n")
    scm.commit_paths(repo, [root / ".gitignore"], "example: the monitor writes its reports here")
    reports = write_reports(spec, root / "monitor-output", rng)
    ingest(reg, reports)
    window = max(1, spec.checkpoints // 4)

    # The main job: check the latest checkpoint (recorded), and replay the run for first alarms.
    latest = f"{spec.run}@{spec.steps[-1]}"
    decision = decide(reg, latest)
    record_decision(reg, decision)
    replay = backtest(reg, spec.run)
    restore = recommend(reg, spec.run)
    page = build_report(reg, root / PAGE, spec.run).path
    return ExampleResult(
        root=root,
        run=spec.run,
        seed=spec.seed,
        patterns={e.id: e.describe() for e in spec.environments},
        summary=reg.summary(),
        window=window,
        environments=early_late(reg, spec.run, window),
        checked=latest,
        outcome=decision.outcome,
        flagged={env: replay.flagged.get(env, latest) for env in decision.flagged},
        restore=restore.restore,
        p_contaminated=restore.p_contaminated,
        checkpoints_lost=restore.checkpoints_lost,
        onsets={e.environment: e.onset or "-" for e in restore.flagged},
        report=page,
    )


def set_dvc_remote(ws: Workspace, url: Path | str) -> None:
    """Make `url` the workspace's default DVC remote, as one registry change."""
    config = artifacts.find_dvc_root(ws.root)
    assert config is not None
    with ws.change(f"use {url} as the DVC remote") as change:
        change.expect([config / ".dvc" / "config"])
        artifacts.set_default_remote(ws.root, str(url))
