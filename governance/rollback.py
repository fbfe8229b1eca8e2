"""The restore point: the checkpoint to restart training from, before the problem arose.

Each flagged environment's flag names the series that raised it: a metric, an environment
version and a judge version. The onset posterior of each such series along the run's lineage
says how likely each checkpoint is to be after the onset; the restore point is the latest
checkpoint whose chance of being contaminated is at most alpha on every one of them (so the
earliest series' restore wins), whose artifact can still be had (DVC cache or remote), and that
is not quarantined. `apply` forks the new run from it and puts the flagged environments in
redesign.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import artifacts, audit, counts, memo, objectstore, parallel
from .errors import GovError
from .metrics import DEFAULT_METRIC
from .models import Checkpoint, CheckpointStatus, EnvironmentStatus, Run, utc_now
from .policies import Action, load_policies
from .records import DEFAULT_ALPHA, RestoreEvidence, Rollback
from .registry import Registry
from .stats.evaluate import evaluate_run, run_posterior
from .stats.restore import Placed, Target, place_each, restore_point
from .stats.runwide import RunOnsetPosterior
from .stats.series import Matrix, Order, SeriesKey, Table, matrices
from .storage import model_json


@dataclass(frozen=True)
class FlaggedSeries:
    """What a flag says to place the restore point on; None matches any version."""

    environment: str
    environment_version: int | None
    judge: str | None
    judge_version: str | None
    metric: str | None  # None: the rationalization rate (flags of older releases)


@dataclass
class Recommendation:
    run: str
    alpha: float
    restore: str | None  # RUN@STEP, None when no checkpoint is safe enough
    flagged: list[RestoreEvidence]
    fine: list[str]
    p_contaminated: float  # the largest over the flagged series
    checkpoints_lost: int
    steps_lost: int
    skipped: list[str] = field(default_factory=list)  # safer checkpoints not restorable, why
    reason: str = ""
    set_by: str | None = None  # the metric (and series) whose restore was the earliest
    known_clean: bool = True  # False: the restore point's cleanliness is assumed, not measured
    # Why the restore point lies before the likely onset's interval, where it does
    far_back: str = ""

    @property
    def environments(self) -> list[str]:
        """The environments to redesign (a run-wide rise names none to redesign)."""
        return sorted({e.environment for e in self.flagged if e.scope == "environment"})


def flagged_series(registry: Registry) -> list[FlaggedSeries]:
    """The series each open flag was raised on (by the policies that flag environments), and
    the rationalization rate of environments flagged or in redesign without a flag file."""
    found: list[FlaggedSeries] = []
    flagged = set()
    for flag in registry.flags():
        if flag.status == "resolved":
            continue
        flagged.add(flag.environment)
        raising = [e for e in flag.evidence if e.raises_flag and e.metric]
        for e in raising:
            found.append(
                FlaggedSeries(
                    flag.environment, e.environment_version, e.judge, e.judge_version, e.metric
                )
            )
        if not raising:
            found.append(FlaggedSeries(flag.environment, flag.version, None, None, None))
    for env in registry.environments():
        if env.id not in flagged and env.status in (
            EnvironmentStatus.FLAGGED,
            EnvironmentStatus.IN_REDESIGN,
        ):
            found.append(FlaggedSeries(env.id, None, None, None, None))
    return sorted(set(found), key=lambda f: (f.environment, str(f)))


def check_alpha(alpha: float) -> None:
    """The restore point's alpha is a small probability; anything else is refused."""
    if not 0 < alpha < 0.5:
        raise GovError(f"alpha {alpha} is out of range: a small probability such as 0.02")


def flagged_environments(registry: Registry) -> list[str]:
    return sorted({f.environment for f in flagged_series(registry)})


def recommend(
    registry: Registry,
    run: str,
    *,
    alpha: float = DEFAULT_ALPHA,
    at: int | None = None,
    flagged: list[FlaggedSeries] | None = None,
) -> Recommendation:
    """The restore point of RUN (seeing its history up to step `at`, all of it by default), for
    the flagged series (or the ones given)."""
    check_alpha(alpha)
    registry.lineage(run)  # an unknown run, or a cycle in hand-edited files, is an error first
    memo.install(registry.ws)
    targets = flagged_series(registry) if flagged is None else flagged
    envs = sorted({e.id for e in registry.environments()})
    names = sorted({t.environment for t in targets})
    lineage = registry.lineage_checkpoints(run, at)
    order = [(c.run, c.step, c.status.value) for c in lineage]
    counts.check_against_trail(registry.ws)  # no report's counts hidden, none added by hand
    rows = counts.table(registry.ws)  # read once for every flagged series
    wide = _run_wide(registry, order, rows) if flagged is None and len(lineage) >= 2 else []
    if not targets and not wide:
        return Recommendation(
            run,
            alpha,
            None,
            [],
            envs,
            0.0,
            0,
            0,
            reason=(
                "no environment is flagged (a recorded `gov check` raises flags: check after "
                "each ingest) and no run-wide rise: no rollback is recommended"
            ),
        )
    if len(lineage) < 2:
        raise GovError(
            f"run {run!r} has {len(lineage)} checkpoint(s): too few for an onset analysis "
            "(it needs a baseline before the rise)"
        )
    placed: dict[tuple[str, SeriesKey], Placed] = {(p.metric, p.key): p for p in wide}
    named = [
        Target(
            t.environment,
            t.environment_version,
            t.judge,
            t.judge_version,
            t.metric or DEFAULT_METRIC,
        )
        for t in targets
    ]
    # Each flagged series' posterior costs up to a second at 2,000 checkpoints: side by side.
    worth_it = len(order) * len(named) >= 2_000
    found = place_each(
        rows, order, named, each=lambda job, ids: parallel.run_each(job, ids, worth_it=worth_it)
    )
    for target, mine in zip(named, found, strict=True):
        if not mine:
            raise GovError(
                f"environment {target.environment!r} is flagged but has no judgments of "
                f"{target.metric} in run {run!r}'s history: nothing to place its onset with"
            )
        placed.update(((p.metric, p.key), p) for p in mine)
    point = restore_point(
        list(placed.values()), alpha, lambda i: not_restorable(registry, lineage[i])
    )
    skipped = [f"{lineage[i].ref}: {why}" for i, why in point.skipped]
    latest = lineage[-1]
    restore = point.index
    evidence = []
    for item in placed.values():
        post = item.posterior
        lo, hi = post.interval(0.9)
        safe = item.restore(alpha)
        leading = (
            [f"{e} x{r:.2f}" for e, r in _leading(item)] if item.key.environment is None else None
        )
        evidence.append(
            RestoreEvidence(
                environment=item.key.environment or "run",
                scope="environment" if item.key.environment else "run",
                leading=leading,
                environment_version=item.key.environment_version,
                judge=f"{item.key.judge}@{item.key.judge_version}",
                metric=item.metric,
                p_rise=post.p_rise,
                onset=item.ref(order, post.estimate()),
                onset_interval=(item.ref(order, lo), item.ref(order, hi)),
                p_contaminated=item.p_contaminated(restore) if restore is not None else 1.0,
                known_clean=restore is not None and item.known_clean(restore),
                restore=lineage[safe].ref if safe >= 0 else None,
            )
        )
    set_by = f"{point.set_by.metric} on {point.set_by.key.label}"
    fine = [e for e in envs if e not in names]
    if restore is None:
        return Recommendation(
            run,
            alpha,
            None,
            evidence,
            fine,
            1.0,
            len(lineage),
            latest.step,
            skipped,
            reason=f"no restorable checkpoint has P(contaminated) <= {alpha}",
            set_by=set_by,
        )
    chosen = lineage[restore]
    far_back = _far_back(point.set_by, restore, order, alpha)
    reason = ""
    if not point.known_clean:
        reason = (
            f"no checkpoint in the lineage is known to be clean: {chosen.ref} is the first "
            "with judgments, so nothing before it shows its rate was normal (it may have been "
            "high from the start); compare its rate with another run or judge before trusting it"
        )
    return Recommendation(
        run,
        alpha,
        chosen.ref,
        evidence,
        fine,
        max(e.p_contaminated for e in evidence),
        len(lineage) - 1 - restore,
        latest.step - chosen.step,
        skipped,
        reason=reason,
        set_by=set_by,
        known_clean=point.known_clean,
        far_back=far_back,
    )


def _far_back(placed: Placed, restore: int, order: Order, alpha: float) -> str:
    """Why `restore` lies more than one checkpoint before the 90% credible interval of the onset
    that placed it ("" where it does not): the interval leaves 5% of the onset's probability
    before it, a restore point at most alpha, and the rest of that tail reaches further back."""
    lo, _ = placed.posterior.interval(0.9)
    start = placed.offset + lo
    if restore >= start - 1:
        return ""
    between = start - 1 - restore
    return (
        f"the onset is likely no earlier than {placed.ref(order, lo)} (90% credible interval), "
        f"but that leaves {placed.posterior.p_onset_by(lo - 1):.1%} of its probability before "
        f"it and a restore point may leave at most {alpha:.1%}: the rest of that tail, earlier "
        f"or smaller rises the counts cannot rule out, reaches {between} checkpoint"
        f"{'' if between == 1 else 's'} further back"
    )


def _run_wide(registry: Registry, order: Order, rows: Table) -> list[Placed]:
    """The run-wide policies that recommend a rollback and fire at the lineage's last judged
    checkpoint: each judge version's run-wide posterior, to place the restore point on too."""
    import numpy as np

    ws = registry.ws
    found: list[Placed] = []
    for item in load_policies(ws.policies, ws.root):
        policy = item.policy
        if not policy.run_wide or Action.RECOMMEND_ROLLBACK not in policy.actions:
            continue
        for key, matrix in sorted(matrices(policy, rows, order).items()):
            last = int(np.flatnonzero(matrix.ns.sum(axis=0))[-1])
            run, step, _ = matrix.order[last]
            if evaluate_run(policy, key, matrix, (run, step), last).status != "fired":
                continue
            posterior = run_posterior(matrix.upto(last))
            found.append(_RunPlaced(policy.metric, key, posterior, matrix.offset, matrix))
    return found


@dataclass(frozen=True)
class _RunPlaced(Placed):
    """A run-wide posterior placed along the lineage, with the matrix it read."""

    matrix: Matrix | None = None


def _leading(item: Placed) -> list[tuple[str, float]]:
    """The environments that carry a run-wide rise's evidence, with each one's rise."""
    if not isinstance(item, _RunPlaced) or item.matrix is None:
        return []
    assert isinstance(item.posterior, RunOnsetPosterior)
    return [(item.matrix.label(c.index), c.effect) for c in item.posterior.leading(5)]


def not_restorable(registry: Registry, checkpoint: Checkpoint) -> str | None:
    if checkpoint.status == CheckpointStatus.QUARANTINED:
        return "quarantined"
    if objectstore.is_uri(checkpoint.artifact):  # pinned by version (or ETag): still there?
        try:
            return objectstore.problem(registry.objects(checkpoint))
        except GovError as exc:
            return exc.message
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
    name = new_run or next_run_name(registry, run)
    if any(r.id == name for r in registry.runs()):
        raise GovError(f"run {name!r} already exists: name the new run otherwise", remedy="name")
    check_target(to)
    target = to.resolve()
    ws = registry.ws
    # a retired environment is trained no more: the restart needs no redesign of it
    redesign = [
        e for e in rec.environments if registry.environment(e).status != EnvironmentStatus.RETIRED
    ]
    with ws.change(f"roll back {run} to {rec.restore}: new run {name}") as change:
        record = Run(
            id=name,
            created=utc_now(),
            parent_run=source_run,
            forked_from_step=int(step),
            note=f"rollback of {run} to {rec.restore}; redesign: "
            + (", ".join(redesign) or "none"),
        )
        registry.write_run(change, record)
        for env in redesign:
            if registry.environment(env).status != EnvironmentStatus.IN_REDESIGN:
                registry.write_environment_status(change, env, EnvironmentStatus.IN_REDESIGN)
        document = Rollback(
            run=run,
            restore=rec.restore,
            new_run=name,
            alpha=alpha,
            p_contaminated=rec.p_contaminated,
            checkpoints_lost=rec.checkpoints_lost,
            steps_lost=rec.steps_lost,
            redesign=redesign,
            evidence=rec.flagged,
            set_by=rec.set_by,
        )
        path = ws.audit / "rollbacks" / f"{name}.json"
        change.write(path, model_json(document))
        audit.append(
            change,
            "rollback_applied",
            subject={"run": run, "checkpoint": rec.restore, "environments": ",".join(redesign)},
            outcome=f"new run {name}",
            inputs={"alpha": alpha, "p_contaminated": rec.p_contaminated},
            refs={"rollback": ws.rel(path)},
        )
        change.body = (
            f"Restore point {rec.restore} (P(contaminated) = {rec.p_contaminated:.4f} <= {alpha}); "
            f"{rec.checkpoints_lost} checkpoints ({rec.steps_lost} steps) of training given up. "
            f"In redesign: {', '.join(redesign) or 'none (a run-wide rise names no one)'}."
        )
        if objectstore.is_uri(checkpoint.artifact):
            objectstore.download(registry.objects(checkpoint), target)
        else:
            artifacts.checkout(ws.root, checkpoint.artifact, checkpoint.artifact_md5, target)
    return Applied(rec, name, target, redesign, change.sha)


def recommendation_digest(registry: Registry, rec: Recommendation) -> str:
    """What a recommendation was made from: the run's lineage and its checkpoints' statuses,
    the flags, the counts ingested, alpha, and what it recommends."""
    ws = registry.ws
    ledger = counts.ledger_path(ws)
    state = {
        "run": rec.run,
        "alpha": rec.alpha,
        "lineage": [(c.ref, c.status.value) for c in registry.lineage_checkpoints(rec.run)],
        "flags": sorted(
            (f.environment, f.version, f.status, f.checkpoint) for f in registry.flags()
        ),
        "counts": hashlib.sha256(ledger.read_bytes()).hexdigest() if ledger.is_file() else None,
        "restore": rec.restore,
        "environments": rec.environments,
    }
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def record_recommendation(registry: Registry, rec: Recommendation) -> str | None:
    """Append the recommendation to the audit trail (one commit); None when this very
    recommendation, from the same inputs, is recorded already."""
    digest = recommendation_digest(registry, rec)
    if audit.recommended(registry.ws, digest):
        return None
    with registry.ws.change(
        f"rollback recommended for {rec.run}: {rec.restore or 'none'}"
    ) as change:
        audit.append(
            change,
            "rollback_recommended",
            subject={
                "run": rec.run,
                "checkpoint": rec.restore,
                "environments": ",".join(rec.environments),
            },
            outcome=rec.restore or "none",
            inputs={"alpha": rec.alpha, "p_contaminated": rec.p_contaminated},
            reason=rec.reason or None,
            refs={
                "checkpoints_lost": rec.checkpoints_lost,
                "steps_lost": rec.steps_lost,
                "set_by": rec.set_by,
                "digest": digest,
            },
        )
    return change.sha


def check_target(to: Path) -> None:
    """Where a rollback puts the restored checkpoint: a new path in a folder that exists (the
    dry run checks it too, so that the real run does not fail on it)."""
    target = to.resolve()
    if target.exists():
        raise GovError(f"{to} already exists: give a new path for the restored checkpoint")
    if not target.parent.is_dir():
        raise GovError(f"{target.parent} does not exist: create it first")


_RESTART = re.compile(r"(?P<base>.+)-r(?P<number>\d+)")


def next_run_name(registry: Registry, run: str) -> str:
    """`main` -> `main-r1`, `main-r1` -> `main-r2`: only a trailing `-rN` is a restart count."""
    match = _RESTART.fullmatch(run)
    base = match.group("base") if match else run
    taken = {r.id for r in registry.runs()}
    number = 1
    while f"{base}-r{number}" in taken:
        number += 1
    return f"{base}-r{number}"
