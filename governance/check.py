"""Evaluating the policies at a checkpoint: the statistics, the decision, and what it records.

The statistics are pure functions of counts (Beta posteriors under a Jeffreys prior). A decision
sees only the history up to and including its checkpoint, along the run's lineage, and records
its exact inputs (the registry's tree, the policy files' hashes, the reports and judge versions
it read) so that the same inputs give the same decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.special import betainc, betaincinv

from . import audit
from .errors import GovError
from .ingest import COUNT_COLUMNS, ledger
from .metrics import METRICS, counts, wilson
from .models import CheckpointStatus, EnvironmentStatus, Flag, FlagEvidence, utc_now
from .onset import OnsetPosterior, onset_posterior
from .policies import Action, Insufficient, LoadedPolicy, Policy, load_policies
from .registry import Registry, parse_checkpoint_ref
from .storage import model_yaml
from .workspace import Workspace

PRIOR = 0.5  # Jeffreys: Beta(k + 1/2, n - k + 1/2)
GRID = 400  # quantiles of the baseline posterior integrated over for a rise

Status = Literal["fired", "clear", "insufficient", "unavailable"]
Outcome = Literal["pass", "warn", "block"]


@lru_cache(maxsize=1 << 20)
def prob_above(k: int, n: int, level: float) -> float:
    """P(rate > level) for k successes in n, under the Jeffreys Beta posterior."""
    return float(1.0 - betainc(k + PRIOR, n - k + PRIOR, level))


@lru_cache(maxsize=1 << 20)
def prob_rise(k: int, n: int, k0: int, n0: int, factor: float) -> float:
    """P(rate > factor x baseline rate), both under independent Jeffreys Beta posteriors.

    Integrates over GRID equal-probability quantiles of the baseline's posterior."""
    threshold = np.minimum(1.0, factor * _baseline_quantiles(k0, n0))
    return float(np.mean(1.0 - betainc(k + PRIOR, n - k + PRIOR, threshold)))


def rise_bound(k: int, n: int, k0: int, n0: int, factor: float) -> float:
    """A cheap upper bound of prob_rise: P(rate > factor x the baseline's 0.1% quantile) + 0.001.

    (P(X > fY) <= P(X > f y_q) + q for the q-quantile y_q of Y.) Used to skip the exact
    integral where the answer is clearly below a confidence level."""
    low = float(_baseline_quantiles(k0, n0, tail=True)[0])
    return prob_above(k, n, min(1.0, factor * low)) + TAIL


TAIL = 1e-3


@lru_cache(maxsize=1 << 16)
def _baseline_quantiles(k0: int, n0: int, tail: bool = False) -> np.ndarray:
    u = np.array([TAIL]) if tail else (np.arange(GRID) + 0.5) / GRID
    return np.asarray(betaincinv(k0 + PRIOR, n0 - k0 + PRIOR, u))


@dataclass(frozen=True)
class Point:
    """One checkpoint of a series: the metric's numerator and denominator there."""

    run: str
    step: int
    k: int
    n: int
    status: str = CheckpointStatus.REGISTERED.value

    @property
    def ref(self) -> str:
        return f"{self.run}@{self.step}"


@dataclass(frozen=True)
class SeriesKey:
    environment: str | None  # None: the whole run
    environment_version: int | None
    judge: str
    judge_version: str

    @property
    def label(self) -> str:
        where = f"{self.environment} v{self.environment_version}" if self.environment else "run"
        return f"{where} · {self.judge} {self.judge_version}"


@dataclass
class Result:
    """One policy on one series at the checkpoint."""

    policy: str
    series: SeriesKey
    status: Status
    reason: str
    k: int | None = None
    n: int | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    probability: float | None = None
    baseline: tuple[int, int] | None = None
    held: int = 0
    seen: list[tuple[str, int, int]] | None = None  # (checkpoint, k, n) it saw, when it fired


@dataclass
class Inputs:
    checkpoint: str
    registry_state: str  # sha256 of the registry records the decision read
    policies: dict[str, str]  # path -> sha256
    reports: list[str]  # md5s of the reports whose counts were read
    judges: list[str]  # judge@version read

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Decision:
    checkpoint: str
    outcome: Outcome
    results: list[Result]
    actions: dict[str, list[str]]  # policy -> actions taken (fired policies)
    flagged: list[str]
    inputs: Inputs
    digest: str
    registry_commit: str  # git HEAD when evaluated (for the reader; not part of the digest)
    evaluated: datetime = field(default_factory=utc_now)

    @property
    def fired(self) -> list[Result]:
        return [r for r in self.results if r.status == "fired"]

    gating: list[str] = field(default_factory=list)  # policies whose thin evidence warns/blocks


# -- series ---------------------------------------------------------------------------------
def history(
    registry: Registry,
    run: str,
    step: int,
    policy: Policy,
    rows: list[dict[str, int | str]] | None = None,
) -> dict[SeriesKey, list[Point]]:
    """The policy's series along the run's lineage, up to and including RUN@STEP, oldest first.

    `rows`: the summed counts, when the caller already read them."""
    metric = METRICS[policy.metric]
    order = {
        (c.run, c.step): (i, c.status.value)
        for i, c in enumerate(registry.lineage_checkpoints(run, step))
    }
    found: dict[SeriesKey, dict[tuple[str, int], dict[str, int]]] = {}
    for row in counts(registry.ws) if rows is None else rows:
        where = (str(row["run"]), int(row["step"]))
        if where not in order:
            continue
        if policy.judge != "any" and row["judge"] != policy.judge:
            continue
        if policy.scope == "environment":
            key = SeriesKey(
                str(row["environment"]),
                int(row["environment_version"]),
                str(row["judge"]),
                str(row["judge_version"]),
            )
        else:  # the whole run: environments add up; judge versions never do
            key = SeriesKey(None, None, str(row["judge"]), str(row["judge_version"]))
        tally = found.setdefault(key, {}).setdefault(where, dict.fromkeys(COUNT_COLUMNS, 0))
        for column in COUNT_COLUMNS:
            tally[column] += int(row[column])
    series: dict[SeriesKey, list[Point]] = {}
    for key, by_point in found.items():
        points = sorted(by_point.items(), key=lambda item: order[item[0]][0])
        series[key] = [
            Point(r, s, metric.numerator(c), metric.denominator(c), order[(r, s)][1])
            for (r, s), c in points
        ]
    return series


# -- one policy on one series ---------------------------------------------------------------
def evaluate(
    policy: Policy,
    key: SeriesKey,
    points: list[Point],
    at: tuple[str, int],
    index: int = -1,
    *,
    bounded: bool = False,
) -> Result:
    """The policy's verdict at checkpoint `at`, seeing `points[: index + 1]` only (the last
    point by default): the point at `index` should be that checkpoint's.

    `bounded`: a result that is clearly clear may leave its probability unset (backtests)."""
    ref = f"{at[0]}@{at[1]}"
    result = Result(policy.name, key, "insufficient", "")
    index = index if index >= 0 else len(points) - 1
    if index < 0 or (points[index].run, points[index].step) != at:
        result.reason = f"no judgments at {ref}: no evidence"
        return result
    here = points[index]
    result.k, result.n = here.k, here.n
    if here.n:
        result.value = here.k / here.n
        result.low, result.high = wilson(here.k, here.n)
    if policy.condition.onset is not None:
        return _onset_result(policy, result, points, index)
    if policy.condition.pressure is not None:
        result.status = "unavailable"
        result.reason = "a pressure condition reads the audit trail: gov check evaluates it"
        return result
    minimum = policy.min_evidence.n
    if here.n < minimum:
        result.reason = f"n = {here.n} < {minimum} at {ref}: insufficient evidence"
        return result
    baseline = _baseline(policy, points, index)
    if isinstance(baseline, str):
        result.reason = baseline
        return result
    result.baseline = baseline
    held = 0
    probability: float | None = None
    for point in reversed(points[max(0, index - policy.sustained + 1) : index + 1]):
        if point.n < minimum:
            break
        need = _confidence(policy)
        if bounded and baseline is not None and policy.condition.rise is not None:
            factor = policy.condition.rise.factor
            if rise_bound(point.k, point.n, baseline[0], baseline[1], factor) < need:
                break  # clearly below: the exact integral is not needed
        p = _probability(policy, point, baseline)
        probability = p if probability is None else probability
        if p < need:
            break
        held += 1
        if held == policy.sustained:
            break
    result.probability, result.held = probability, held
    need = _confidence(policy)
    if held >= policy.sustained:
        result.status = "fired"
        result.reason = f"{_claim(policy, baseline)}: P = {probability:.3f} >= {need}" + (
            f", held {held} checkpoints running" if policy.sustained > 1 else ""
        )
    else:
        result.status = "clear"
        if held:
            result.reason = f"held {held} of the {policy.sustained} checkpoints running it needs"
        elif probability is None:
            result.reason = f"{_claim(policy, baseline)}: P < {need} (bounded)"
        else:
            result.reason = f"{_claim(policy, baseline)}: P = {probability:.3f} < {need}"
    return result


def _onset_result(policy: Policy, result: Result, points: list[Point], index: int) -> Result:
    """The onset condition: a rise that began at least one checkpoint before this one (so a
    single bad checkpoint is not enough), with the stated probability."""
    assert policy.condition.onset is not None
    need = policy.condition.onset.probability
    seen = points[: index + 1]
    if sum(p.n for p in seen) < policy.min_evidence.n or len(seen) < 3:
        result.reason = "too little history for an onset analysis: insufficient evidence"
        return result
    posterior = _onset(tuple(p.k for p in seen), tuple(p.n for p in seen))
    probability = posterior.p_rise * posterior.p_onset_by(len(seen) - 2)
    result.probability = probability
    onset = seen[posterior.estimate()].ref
    if probability >= need:
        result.status = "fired"
        result.reason = (
            f"P(a rise began before this checkpoint) = {probability:.3f} >= {need}; onset ~ {onset}"
        )
    else:
        result.status = "clear"
        result.reason = f"P(a rise began before this checkpoint) = {probability:.3f} < {need}"
    return result


@lru_cache(maxsize=4096)
def _onset(k: tuple[int, ...], n: tuple[int, ...]) -> OnsetPosterior:
    return onset_posterior(k, n)


def _confidence(policy: Policy) -> float:
    condition = policy.condition
    if condition.above is not None:
        return condition.above.confidence
    assert condition.rise is not None
    return condition.rise.confidence


def _probability(policy: Policy, point: Point, baseline: tuple[int, int] | None) -> float:
    condition = policy.condition
    if condition.above is not None:
        return prob_above(point.k, point.n, condition.above.level)
    assert condition.rise is not None and baseline is not None
    return prob_rise(point.k, point.n, baseline[0], baseline[1], condition.rise.factor)


def _claim(policy: Policy, baseline: tuple[int, int] | None) -> str:
    condition = policy.condition
    if condition.above is not None:
        return f"{policy.metric} > {condition.above.level:g}"
    assert condition.rise is not None and baseline is not None
    k0, n0 = baseline
    return f"{policy.metric} > {condition.rise.factor:g} x baseline ({k0}/{n0} = {k0 / n0:.3%})"


def _baseline(policy: Policy, points: list[Point], index: int) -> tuple[int, int] | str | None:
    """(k, n) pooled over the baseline checkpoints; None without a rise; a reason if unusable."""
    rise = policy.condition.rise
    if rise is None:
        return None
    past = points[:index]
    if rise.baseline.first is not None:
        first = rise.baseline.first
        if len(past) < first:
            return (
                f"baseline not established: {len(past)} earlier checkpoints with judgments, "
                f"the first {first} are needed"
            )
        chosen = past[:first]
    elif rise.baseline.promoted:
        chosen = [p for p in past if p.status == CheckpointStatus.PROMOTED.value]
        if not chosen:
            return "no promoted checkpoint before this one to serve as the baseline"
    else:
        assert rise.baseline.checkpoint is not None
        run, step = parse_checkpoint_ref(rise.baseline.checkpoint)
        chosen = [p for p in past if (p.run, p.step) == (run, step)]
        if not chosen:
            return f"baseline checkpoint {rise.baseline.checkpoint} has no judgments in this series"
    k0, n0 = sum(p.k for p in chosen), sum(p.n for p in chosen)
    if n0 == 0:
        return "the baseline checkpoints have no judgments for this metric"
    return k0, n0


# -- the decision ---------------------------------------------------------------------------
def decide(
    registry: Registry, ref: str, policies: Sequence[LoadedPolicy] | None = None
) -> Decision:
    """Evaluate every policy at RUN@STEP on the history up to it (nothing later)."""
    run, step = parse_checkpoint_ref(ref)
    registry.checkpoint(run, step)  # an unknown checkpoint is an error, not "no evidence"
    ws = registry.ws
    loaded = list(policies) if policies is not None else load_policies(ws.policies, ws.root)
    if not loaded:
        raise GovError(f"no policies in {ws.rel(ws.policies)}: nothing to check against")
    results: list[Result] = []
    actions: dict[str, list[str]] = {}
    outcome: Outcome = "pass"
    flagged: set[str] = set()
    read_points: set[tuple[str, int]] = set()
    judges: set[str] = set()
    rows = counts(ws)  # read once: every policy reads the same counts
    for item in loaded:
        policy = item.policy
        series = history(registry, run, step, policy, rows)
        if not series:
            results.append(
                Result(
                    policy.name,
                    SeriesKey(None, None, policy.judge, "-"),
                    "insufficient",
                    f"no judgments for {policy.metric} up to {ref}: no evidence",
                )
            )
        for key, points in sorted(series.items(), key=lambda kv: kv[0].label):
            judges.add(f"{key.judge}@{key.judge_version}")
            read_points.update((p.run, p.step) for p in points)
            if policy.condition.pressure is not None:
                result = _pressure_result(ws, policy, key)
            else:
                result = evaluate(policy, key, points, (run, step))
                if result.status == "fired":  # what the audit trail shows a reviewer later
                    result.seen = [(p.ref, p.k, p.n) for p in points]
            results.append(result)
            if result.status == "fired":
                actions.setdefault(policy.name, [a.value for a in policy.actions])
                if Action.FLAG_ENVIRONMENT in policy.actions and key.environment:
                    flagged.add(key.environment)
        outcome = _worse(
            outcome, _policy_outcome(policy, [r for r in results if r.policy == policy.name])
        )
    gate = _redesign_gate(registry, run, step)
    if gate:
        results.extend(gate)
        actions.setdefault(REDESIGN_GATE, ["block"])
        outcome = "block"
    inputs = Inputs(
        checkpoint=ref,
        registry_state=_registry_state(registry, run, step),
        policies={item.path: item.sha256 for item in loaded},
        reports=_reports_read(registry, read_points),
        judges=sorted(judges),
    )
    head = ws.repo.head.commit.hexsha
    gating = [i.policy.name for i in loaded if i.policy.insufficient != Insufficient.PASS]
    return Decision(
        ref,
        outcome,
        results,
        actions,
        sorted(flagged),
        inputs,
        inputs.digest(),
        head,
        gating=gating,
    )


def _pressure_result(ws: Workspace, policy: Policy, key: SeriesKey) -> Result:
    assert policy.condition.pressure is not None
    limit = policy.condition.pressure.redesigns
    count = audit.redesigns(ws, key.environment) if key.environment else 0
    if count > limit:
        return Result(
            policy.name,
            key,
            "fired",
            f"redesigned {count} times on monitor evidence (> {limit}): confirm falling rates "
            "with an independent held-out judge before trusting them",
        )
    return Result(policy.name, key, "clear", f"redesigned {count} times on monitor evidence")


REDESIGN_GATE = "redesign-gate"


def _redesign_gate(registry: Registry, run: str, step: int) -> list[Result]:
    """A checkpoint trained, after an environment was flagged, on the flagged version (or an
    older one) is blocked: a restart must train on the redesign, not on what was flagged."""
    from .registry import list_flags

    ckpt = registry.checkpoint(run, step)
    flags = {f.environment: f for f in list_flags(registry)}
    found = []
    for entry in ckpt.exposure:
        flag = flags.get(entry.environment)
        if flag is None or entry.version > flag.version or ckpt.created < flag.raised:
            continue
        key = SeriesKey(entry.environment, entry.version, "-", "-")
        reason = (
            f"trained on {entry.environment} v{entry.version} (weight {entry.weight:g}) after "
            f"v{flag.version} was flagged at {flag.checkpoint}: train on the redesigned version"
        )
        found.append(Result(REDESIGN_GATE, key, "fired", reason))
    return found


def _policy_outcome(policy: Policy, results: list[Result]) -> Outcome:
    outcome: Outcome = "pass"
    for result in results:
        if result.status == "fired":
            if Action.BLOCK in policy.actions:
                return "block"
            outcome = "warn"
        elif result.status == "insufficient" and policy.insufficient != Insufficient.PASS:
            if policy.insufficient == Insufficient.BLOCK:
                return "block"
            outcome = "warn"
    return outcome


_RANK: dict[Outcome, int] = {"pass": 0, "warn": 1, "block": 2}


def _worse(a: Outcome, b: Outcome) -> Outcome:
    return a if _RANK[a] >= _RANK[b] else b


def _registry_state(registry: Registry, run: str, step: int) -> str:
    """A hash of what the decision reads from the registry: the lineage and its checkpoints up
    to RUN@STEP (which were promoted: baselines), environment versions and judge versions.

    Statuses a decision itself sets (flagged environments, a blocked checkpoint) are left out,
    so recording a decision does not change the inputs of the next identical check."""
    state: dict[str, object] = {}
    state["lineage"] = [(r.id, r.parent_run, r.forked_from_step) for r in registry.lineage(run)]
    state["checkpoints"] = [
        (c.ref, c.artifact_md5, c.status == CheckpointStatus.PROMOTED)
        for c in registry.lineage_checkpoints(run, step)
    ]
    state["environments"] = [
        (e.id, [(v.number, v.hash) for v in e.versions]) for e in registry.environments()
    ]
    state["judges"] = [
        (j.id, [(v.version, v.rubric_hash) for v in j.versions]) for j in registry.judges()
    ]
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _reports_read(registry: Registry, points: set[tuple[str, int]]) -> list[str]:
    import csv

    used: list[str] = []
    for entry in ledger(registry.ws):
        path = registry.ws.registry / "counts" / f"{entry.md5}.csv"
        with path.open(newline="") as handle:
            if any((row["run"], int(row["step"])) in points for row in csv.DictReader(handle)):
                used.append(entry.md5)
    return sorted(used)


# -- recording it ---------------------------------------------------------------------------
def decision_record(decision: Decision) -> dict[str, object]:
    data = asdict(decision)
    data["evaluated"] = decision.evaluated.isoformat()
    return data


def record(registry: Registry, decision: Decision) -> str | None:
    """Write the decision to audit/decisions/, flag environments, mark a blocked checkpoint;
    one commit. Returns the commit, or None when this very decision was recorded before."""
    ws = registry.ws
    run, step = parse_checkpoint_ref(decision.checkpoint)
    path = decision_path(registry, decision)
    if path.exists():
        return None
    summary = f"check {decision.checkpoint}: {decision.outcome}"
    if decision.flagged:
        summary += f" (flags {', '.join(decision.flagged)})"
    with ws.change(summary) as change:
        change.write(path, (json.dumps(decision_record(decision), indent=2) + "\n").encode())
        policy_diff = audit.policy_change(ws, decision.inputs.policies)
        if policy_diff is not None:
            audit.append(
                change,
                "policy_change",
                subject={},
                outcome="changed",
                inputs={"policies": decision.inputs.policies},
                refs=policy_diff,
            )
        audit.append(
            change,
            "check",
            subject={"run": run, "checkpoint": decision.checkpoint},
            outcome=decision.outcome,
            inputs=asdict(decision.inputs),
            refs={
                "decision": ws.rel(path),
                "digest": decision.digest,
                "fired": sorted({r.policy for r in decision.fired}),
                "flagged": decision.flagged,
            },
        )
        for env in decision.flagged:
            current = registry.environment(env)
            if current.status in (EnvironmentStatus.ACTIVE,):
                evidence = [r for r in decision.fired if r.series.environment == env]
                flag = Flag(
                    environment=env,
                    version=current.current.number,
                    checkpoint=decision.checkpoint,
                    decision=decision.digest,
                    raised=utc_now(),
                    evidence=tuple(
                        FlagEvidence(policy=r.policy, series=r.series.label, reason=r.reason)
                        for r in evidence
                    ),
                )
                change.write(ws.registry / "flags" / f"{env}.yaml", model_yaml(flag))
                audit.append(
                    change,
                    "flag_raised",
                    subject={"run": run, "checkpoint": decision.checkpoint, "environment": env},
                    outcome="open",
                    inputs={"digest": decision.digest, "version": current.current.number},
                    reason="; ".join(f"{e.policy}: {e.reason}" for e in flag.evidence),
                )
                flagged = current.model_copy(update={"status": EnvironmentStatus.FLAGGED})
                change.write(ws.registry / "environments" / f"{env}.yaml", model_yaml(flagged))
        if decision.outcome == "block":
            registry.write_status(change, run, step, CheckpointStatus.BLOCKED)
        change.body = "\n".join(
            f"{r.policy} on {r.series.label}: {r.reason}" for r in decision.fired
        )
    return change.sha


def decision_path(registry: Registry, decision: Decision) -> Path:
    """Where a decision is recorded: one file per checkpoint and inputs digest."""
    run, step = parse_checkpoint_ref(decision.checkpoint)
    return registry.ws.audit / "decisions" / f"{run}@{step}.{decision.digest[:16]}.json"


def find_recorded(registry: Registry, decision: Decision) -> bool:
    return decision_path(registry, decision).exists()


# -- replaying the policies over a run ------------------------------------------------------
@dataclass
class FirstAlarm:
    policy: str
    series: SeriesKey
    checkpoint: str  # the first checkpoint at which the policy fired on this series
    actions: list[str]
    fired_at: int  # how many checkpoints it fired at in all
    reason: str
    restore: str | None = None  # the restore point `gov rollback recommend` would have named


@dataclass
class Backtest:
    run: str
    checkpoints: int
    alarms: list[FirstAlarm]
    outcomes: dict[str, Outcome]  # checkpoint -> what `gov check` would have decided then
    blocked_promotions: list[str]  # promoted checkpoints the policies would have blocked
    flagged: dict[str, str]  # environment -> first checkpoint that would have flagged it


def backtest(
    registry: Registry, run: str, policies: Sequence[LoadedPolicy] | None = None
) -> Backtest:
    """Replay every policy at every checkpoint of the run's lineage, each seeing only its past.

    Uses the same `evaluate` as `gov check`, on series built once for the whole run."""
    ws = registry.ws
    loaded = list(policies) if policies is not None else load_policies(ws.policies, ws.root)
    own = registry.checkpoints(run)
    if not own:
        raise GovError(f"run {run!r} has no checkpoints to replay")
    last = own[-1].step
    seen = registry.lineage_checkpoints(run, last)
    order = [(c.run, c.step) for c in seen]
    status = {c.ref: c.status.value for c in seen}
    position = {where: i for i, where in enumerate(order)}
    outcomes: dict[str, Outcome] = {f"{r}@{s}": "pass" for r, s in order}
    alarms: list[FirstAlarm] = []
    flagged: dict[str, str] = {}
    rows = counts(ws)
    for item in loaded:
        policy = item.policy
        if policy.condition.pressure is not None:
            continue  # it reads the audit trail as it is now, not as it was then
        series = history(registry, run, last, policy, rows)
        gate_thin = policy.insufficient != Insufficient.PASS
        seen_at: dict[tuple[str, int], set[SeriesKey]] = {}
        for key, points in sorted(series.items(), key=lambda kv: kv[0].label):
            first: FirstAlarm | None = None
            for index, point in enumerate(points):
                seen_at.setdefault((point.run, point.step), set()).add(key)
                result = evaluate(policy, key, points, (point.run, point.step), index, bounded=True)
                ref = point.ref
                if result.status == "fired":
                    effect: Outcome = "block" if Action.BLOCK in policy.actions else "warn"
                    outcomes[ref] = _worse(outcomes[ref], effect)
                    if first is None:
                        first = FirstAlarm(
                            policy.name,
                            key,
                            ref,
                            [a.value for a in policy.actions],
                            0,
                            result.reason,
                        )
                        if Action.FLAG_ENVIRONMENT in policy.actions and key.environment:
                            known = flagged.get(key.environment)
                            if known is None or position[_split(known)] > position[_split(ref)]:
                                flagged[key.environment] = ref
                    first.fired_at += 1
                elif result.status == "insufficient" and gate_thin:
                    outcomes[ref] = _worse(outcomes[ref], policy.insufficient.value)
            if first is not None:
                alarms.append(first)
        if gate_thin:  # a checkpoint where a series has no judgments at all is thin evidence too
            for where in order:
                if len(seen_at.get(where, ())) < len(series) or not series:
                    ref = f"{where[0]}@{where[1]}"
                    outcomes[ref] = _worse(outcomes[ref], policy.insufficient.value)
    for alarm in alarms:
        if alarm.series.environment and "recommend_rollback" in alarm.actions:
            alarm.restore = _restore_then(registry, alarm)
    blocked = [ref for ref, st in status.items() if st == "promoted" and outcomes[ref] == "block"]
    alarms.sort(key=lambda a: (position[_split(a.checkpoint)], a.policy, a.series.label))
    return Backtest(run, len(order), alarms, outcomes, blocked, flagged)


def _restore_then(registry: Registry, alarm: FirstAlarm) -> str | None:
    """The restore point the rollback would have named at the alarm, from its past alone."""
    from .rollback import recommend

    run, step = _split(alarm.checkpoint)
    assert alarm.series.environment is not None
    try:
        rec = recommend(registry, run, at=step, environments=[alarm.series.environment])
    except GovError:
        return None
    return rec.restore


def _split(ref: str) -> tuple[str, int]:
    run, step = parse_checkpoint_ref(ref)
    return run, step
