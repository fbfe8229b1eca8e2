"""The restore point: the checkpoint to restart training from, before the problem arose.

For every flagged environment, the onset posterior of its rationalization rate along the run's
lineage says how likely each checkpoint is to be after the onset. The restore point is the
latest checkpoint whose chance of being contaminated is at most alpha for every flagged
environment, whose artifact can still be had (DVC cache or remote), and that is not
quarantined. `apply` forks the new run from it and puts the flagged environments in redesign.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import artifacts, audit
from .errors import GovError
from .ingest import COUNT_COLUMNS
from .metrics import METRICS, counts
from .models import Checkpoint, CheckpointStatus, EnvironmentStatus, Run, utc_now
from .onset import OnsetPosterior, onset_posterior
from .registry import Registry, list_flags
from .storage import model_yaml

DEFAULT_ALPHA = 0.02
METRIC = "rationalization_rate"


@dataclass
class EnvironmentEvidence:
    environment: str
    judge: str
    p_rise: float
    onset: str | None  # the median onset checkpoint
    onset_interval: tuple[str, str] | None  # 90% credible interval
    p_contaminated: float  # P(onset at or before the restore point | a rise)


@dataclass
class Recommendation:
    run: str
    alpha: float
    restore: str | None  # RUN@STEP, None when no checkpoint is safe enough
    flagged: list[EnvironmentEvidence]
    fine: list[str]
    p_contaminated: float  # the largest over the flagged environments
    checkpoints_lost: int
    steps_lost: int
    skipped: list[str] = field(default_factory=list)  # safer checkpoints not restorable, why
    reason: str = ""


def _series(
    rows: list[dict[str, int | str]], lineage: list[Checkpoint], env: str
) -> dict[str, list[tuple[int, int]]]:
    """Per judge version: (k, n) of the rationalization rate at each lineage checkpoint."""
    metric = METRICS[METRIC]
    index = {(c.run, c.step): i for i, c in enumerate(lineage)}
    found: dict[str, list[tuple[int, int]]] = {}
    for row in rows:
        where = (str(row["run"]), int(row["step"]))
        if row["environment"] != env or where not in index:
            continue
        judge = f"{row['judge']}@{row['judge_version']}"
        series = found.setdefault(judge, [(0, 0)] * len(lineage))
        c = {name: int(row[name]) for name in COUNT_COLUMNS}
        k0, n0 = series[index[where]]
        series[index[where]] = (k0 + metric.numerator(c), n0 + metric.denominator(c))
    return found


def flagged_environments(registry: Registry) -> list[str]:
    envs = {f.environment for f in list_flags(registry) if f.status != "resolved"}
    envs |= {
        e.id
        for e in registry.environments()
        if e.status in (EnvironmentStatus.FLAGGED, EnvironmentStatus.IN_REDESIGN)
    }
    return sorted(envs)


def recommend(
    registry: Registry,
    run: str,
    *,
    alpha: float = DEFAULT_ALPHA,
    at: int | None = None,
    environments: list[str] | None = None,
) -> Recommendation:
    """The restore point of RUN (seeing its history up to step `at`, all of it by default), for
    the flagged environments (or the ones given)."""
    if not 0 < alpha < 0.5:
        raise GovError(f"alpha {alpha} is out of range: a small probability such as 0.02")
    flagged = flagged_environments(registry) if environments is None else sorted(environments)
    envs = sorted({e.id for e in registry.environments()})
    if not flagged:
        return Recommendation(
            run,
            alpha,
            None,
            [],
            envs,
            0.0,
            0,
            0,
            reason="no environment is flagged: no rollback is recommended",
        )
    lineage = registry.lineage_checkpoints(run, at)
    if len(lineage) < 2:
        raise GovError(
            f"run {run!r} has {len(lineage)} checkpoint(s): too few for an onset analysis "
            "(it needs a baseline before the rise)"
        )
    rows = counts(registry.ws)  # read once for every flagged environment
    posteriors: dict[tuple[str, str], OnsetPosterior] = {}
    for env in flagged:
        series = _series(rows, lineage, env)
        if not series:
            raise GovError(
                f"environment {env!r} is flagged but has no judgments in run {run!r}'s history: "
                "nothing to place its onset with"
            )
        for judge, points in series.items():
            posteriors[(env, judge)] = onset_posterior(
                [p[0] for p in points], [p[1] for p in points]
            )
    safe = min(p.restore_index(alpha) for p in posteriors.values())
    skipped: list[str] = []
    restore = None
    for index in range(safe, -1, -1):
        candidate = lineage[index]
        why = _not_restorable(registry, candidate)
        if why is None:
            restore = index
            break
        skipped.append(f"{candidate.ref}: {why}")
    latest = lineage[-1]
    evidence = []
    for (env, judge), post in sorted(posteriors.items()):
        lo, hi = post.interval(0.9)
        evidence.append(
            EnvironmentEvidence(
                env,
                judge,
                post.p_rise,
                lineage[post.estimate()].ref,
                (lineage[lo].ref, lineage[hi].ref),
                post.p_onset_by(restore) if restore is not None else 1.0,
            )
        )
    if restore is None:
        return Recommendation(
            run,
            alpha,
            None,
            evidence,
            [e for e in envs if e not in flagged],
            1.0,
            len(lineage),
            latest.step,
            skipped,
            reason=f"no restorable checkpoint has P(contaminated) <= {alpha}",
        )
    point = lineage[restore]
    return Recommendation(
        run,
        alpha,
        point.ref,
        evidence,
        [e for e in envs if e not in flagged],
        max(e.p_contaminated for e in evidence),
        len(lineage) - 1 - restore,
        latest.step - point.step,
        skipped,
    )


def _not_restorable(registry: Registry, checkpoint: Checkpoint) -> str | None:
    if checkpoint.status == CheckpointStatus.QUARANTINED:
        return "quarantined"
    where = artifacts.locate(registry.ws.root, checkpoint.artifact_md5)
    if where is None:
        return "artifact gone from the DVC cache and the remote"
    return None


@dataclass
class Applied:
    recommendation: Recommendation
    new_run: str
    artifact: Path
    redesign: list[str]
    commit: str | None


def apply(
    registry: Registry,
    run: str,
    *,
    to: Path,
    new_run: str | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> Applied:
    """Fork a new run from the restore point, check its artifact out to `to`, and put the
    flagged environments in redesign; one commit."""
    rec = recommend(registry, run, alpha=alpha)
    if rec.restore is None:
        raise GovError(f"nothing to apply: {rec.reason}")
    source_run, step = rec.restore.split("@")
    checkpoint = registry.checkpoint(source_run, int(step))
    name = new_run or _next_run_name(registry, run)
    if (registry.ws.registry / "runs" / f"{name}.yaml").exists():
        raise GovError(f"run {name!r} already exists: pass another --name")
    target = to.resolve()
    if target.exists():
        raise GovError(f"{to} already exists: give a new path for the restored checkpoint")
    if not target.parent.is_dir():
        raise GovError(f"{target.parent} does not exist: create it first")
    ws = registry.ws
    with ws.change(f"roll back {run} to {rec.restore}: new run {name}") as change:
        record = Run(
            id=name,
            created=utc_now(),
            parent_run=source_run,
            forked_from_step=int(step),
            note=f"rollback of {run} to {rec.restore}; redesign: "
            + ", ".join(sorted({e.environment for e in rec.flagged})),
        )
        change.write(ws.registry / "runs" / f"{name}.yaml", model_yaml(record))
        redesign = sorted({e.environment for e in rec.flagged})
        for env in redesign:
            current = registry.environment(env)
            if current.status != EnvironmentStatus.IN_REDESIGN:
                updated = current.model_copy(update={"status": EnvironmentStatus.IN_REDESIGN})
                change.write(ws.registry / "environments" / f"{env}.yaml", model_yaml(updated))
        entry = {
            "kind": "rollback",
            "run": run,
            "restore": rec.restore,
            "new_run": name,
            "alpha": alpha,
            "p_contaminated": rec.p_contaminated,
            "checkpoints_lost": rec.checkpoints_lost,
            "steps_lost": rec.steps_lost,
            "redesign": redesign,
            "evidence": [e.__dict__ for e in rec.flagged],
            "time": utc_now().isoformat(),
        }
        change.write(
            ws.audit / "rollbacks" / f"{name}.json",
            (json.dumps(entry, indent=2, default=list) + "\n").encode(),
        )
        audit.append(
            change,
            "rollback_applied",
            subject={"run": run, "checkpoint": rec.restore, "environments": ",".join(redesign)},
            outcome=f"new run {name}",
            inputs={"alpha": alpha, "p_contaminated": rec.p_contaminated},
            refs={"rollback": ws.rel(ws.audit / "rollbacks" / f"{name}.json")},
        )
        change.body = (
            f"Restore point {rec.restore} (P(contaminated) = {rec.p_contaminated:.4f} <= {alpha}); "
            f"{rec.checkpoints_lost} checkpoints ({rec.steps_lost} steps) of training given up. "
            f"In redesign: {', '.join(redesign)}."
        )
        artifacts.checkout(ws.root, checkpoint.artifact, checkpoint.artifact_md5, target)
    return Applied(rec, name, target, redesign, change.sha)


def record_recommendation(registry: Registry, rec: Recommendation) -> str | None:
    """Append the recommendation to the audit trail (one commit)."""
    with registry.ws.change(
        f"rollback recommended for {rec.run}: {rec.restore or 'none'}"
    ) as change:
        audit.append(
            change,
            "rollback_recommended",
            subject={
                "run": rec.run,
                "checkpoint": rec.restore,
                "environments": ",".join(e.environment for e in rec.flagged),
            },
            outcome=rec.restore or "none",
            inputs={"alpha": rec.alpha, "p_contaminated": rec.p_contaminated},
            reason=rec.reason or None,
            refs={"checkpoints_lost": rec.checkpoints_lost, "steps_lost": rec.steps_lost},
        )
    return change.sha


def _next_run_name(registry: Registry, run: str) -> str:
    base = run.split("-r")[0] if "-r" in run else run
    number = 1
    while (registry.ws.registry / "runs" / f"{base}-r{number}.yaml").exists():
        number += 1
    return f"{base}-r{number}"
