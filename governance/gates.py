"""The gates: a decision at a checkpoint, and what it records (flags, a blocked checkpoint),
and promotion, which only a recorded passing decision of the very same inputs (or a recorded
override) allows.

A decision sees only the history up to and including its checkpoint, along the run's lineage,
and records its exact inputs (the registry's records it read, the policy files' hashes, the
reports and judge versions) so that the same inputs give the same decision.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import audit, calibration, counts, memo, parallel, scm
from .errors import Blocked, GovError
from .models import CheckpointStatus, EnvironmentStatus, ExposureEntry, Flag, FlagEvidence, utc_now
from .policies import (
    Action,
    Finding,
    Insufficient,
    LoadedPolicy,
    Policy,
    load_policies,
    with_unjudged,
)
from .records import QUARANTINE_HOLD, Decision, Inputs, Override
from .registry import Registry, parse_checkpoint_ref
from .stats.calibration import ErrorRates
from .stats.evaluate import evaluate, evaluate_run, not_judged
from .stats.obfuscation import METRIC, watch
from .stats.result import Outcome, Result, policy_outcome, worse
from .stats.series import (
    Order,
    Points,
    SeriesKey,
    Table,
    build,
    for_policy,
    judged_at,
    matrices,
    peers,
)
from .storage import model_json
from .workspace import Change, Workspace

REDESIGN_GATE = "redesign-gate"
JUDGE_SWITCH = "judge-switch-unmeasured"


def loaded_policies(ws: Workspace, policies: Sequence[LoadedPolicy] | None) -> list[LoadedPolicy]:
    loaded = list(policies) if policies is not None else load_policies(ws.policies, ws.root)
    if not loaded:
        raise GovError(f"no policies in {ws.rel(ws.policies)}: nothing to check against")
    return loaded


def unregistered_judges(registry: Registry, loaded: Sequence[LoadedPolicy]) -> list[Finding]:
    """The judges and environments policies name that are not registered: one misspelt would
    read no series, find no evidence and pass, so the gate would be off without a word."""
    known = {j.id for j in registry.judges()}
    return [
        *unknown_judges(known, loaded, "registered", "fix the name or register the judge"),
        *unknown_environments(
            {e.id for e in registry.environments()}, loaded, "registered", "fix the name"
        ),
    ]


def _some(names: set[str], shown: int = 12) -> str:
    """Up to `shown` of the names, sorted, and how many more (a run may have hundreds)."""
    ordered = sorted(names)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return (", ".join(ordered[:shown]) or "none") + more


def unknown_environments(
    known: set[str], loaded: Sequence[LoadedPolicy], where: str, fix: str
) -> list[Finding]:
    """The environments policies name (`environments:`) that are not among `known`, one
    finding each: a misspelt one would be watched by nobody, and the policy read less."""
    found = []
    for item in loaded:
        for name in dict.fromkeys(item.policy.environments or ()):
            if name not in known:
                found.append(
                    Finding(
                        item.path,
                        "error",
                        f"environments: {name!r} is not {where} ({where}: {_some(known)}): "
                        f"the policy would never read it; {fix}",
                    )
                )
    return found


def unknown_judges(
    known: set[str], loaded: Sequence[LoadedPolicy], where: str, fix: str
) -> list[Finding]:
    """The judges policies name that are not among `known` (`where`: what knows them, e.g.
    "registered"; `fix`: what to do), one finding each."""
    found = []
    for item in loaded:
        policy = item.policy
        named = [] if policy.judge == "any" else [policy.judge]
        if policy.pair is not None:
            named += [policy.pair.cot.partition("@")[0], policy.pair.action.partition("@")[0]]
        if policy.judge_bridge is not None:
            named += [policy.judge_bridge.source.partition("@")[0]]
        for judge in dict.fromkeys(named):
            if judge not in known:
                found.append(
                    Finding(
                        item.path,
                        "error",
                        f"judge {judge!r} is not {where} ({where}: {_some(known)}): the policy "
                        f"would read nothing and pass; {fix}",
                    )
                )
    return found


# -- the decision ---------------------------------------------------------------------------
def decide(
    registry: Registry, ref: str, policies: Sequence[LoadedPolicy] | None = None
) -> Decision:
    """Evaluate every policy at RUN@STEP on the history up to it (nothing later)."""
    run, step = parse_checkpoint_ref(ref)
    ref = f"{run}@{step}"  # one spelling of each checkpoint in what is recorded
    checkpoint = registry.checkpoint(run, step)  # unknown: an error, not "no evidence"
    ws = registry.ws
    memo.install(ws)  # the posteriors the previous check computed, found again
    loaded = loaded_policies(ws, policies)
    if unknown := unregistered_judges(registry, loaded):
        raise GovError(f"{unknown[0].path}: {unknown[0].message}")
    results: list[Result] = []
    actions: dict[str, list[str]] = {}
    outcome: Outcome = "pass"
    flagged: dict[str, int] = {}  # environment -> the newest version whose evidence fired
    judges: set[str] = set()
    counts.check_against_trail(ws)  # no report's counts hidden, none added by hand
    rows = counts.table(ws)  # read once: every policy reads the same counts
    # the checkpoint's training and the counts' environments and judges, still registered
    registry.check_references(checkpoint, rows.keys)
    errors = calibration.all_errors(ws)  # what a corrected policy corrects for
    order = registry.order(run, step)
    read = np.zeros(len(order), dtype=bool)  # the checkpoints whose counts were read
    everything = with_unjudged([item.policy for item in loaded])
    # The counts alone decide these policies: side by side on the machine's cores. An onset
    # policy (one series per environment, costly where a series rose) goes in three parts per
    # core, so that the cores finish together; the costliest kinds of job are handed out first.
    cores = parallel.workers()
    parts = {i: _parts(p, cores) for i, p in enumerate(everything) if _pure(p)}
    jobs = sorted(
        ((i, part, of) for i, of in parts.items() for part in range(of)),
        key=lambda job: (not everything[job[0]].run_wide, job[2] == 1),
    )

    # A policy in parts reads its series, built once here: every worker starts with them.
    built = {i: _series(everything[i], rows, order) for i, of in parts.items() if of > 1}

    def job(j: int) -> list[tuple[Result, np.ndarray | None]]:
        i, part, of = jobs[j]
        policy = everything[i]
        if policy.run_wide:
            return list(_run_wide(policy, rows, order, (run, step), ref))
        series, others = built[i] if i in built else _series(policy, rows, order)
        return _results(policy, series, others, (run, step), ref, errors, (part, of))

    # Forking workers costs tens of milliseconds: a small workspace (under 20,000 cells of
    # series, say 200 checkpoints of 100 environments) decides in one process.
    cells = len(order) * len(rows.keys)
    done = parallel.run_each(job, range(len(jobs)), worth_it=cells >= 20_000)
    computed: dict[int, list[tuple[Result, np.ndarray | None]]] = {}
    for j, (i, _, _) in sorted(enumerate(jobs), key=lambda item: item[1]):  # parts in order
        computed.setdefault(i, []).extend(done[j])
    for i, policy in enumerate(everything):
        if i in computed:
            found = computed[i]
            for result, positions in found:
                results.append(result)
                if positions is None:  # no series at all: no judge was read
                    continue
                judges.add(f"{result.series.judge}@{result.series.judge_version}")
                read[positions] = True
                if result.status != "fired":
                    continue
                actions.setdefault(policy.name, [a.value for a in policy.actions])
                if not policy.run_wide:
                    _flag(flagged, policy, result.series)
            outcome = worse(outcome, policy_outcome(policy, [r for r, _ in found]))
            continue
        if policy.condition.obfuscation is not None:
            watched = obfuscation(registry, policy, order, (run, step), errors)
            results += watched
            if any(r.status == "fired" for r in watched):
                actions.setdefault(policy.name, [a.value for a in policy.actions])
            outcome = worse(outcome, policy_outcome(policy, watched))
            continue
        series = for_policy(policy, rows, order)
        if policy.condition.unjudged is not None:
            own = _judged_per_environment(rows, (run, step), policy.judge)
            result = _unjudged_result(policy, series, order, checkpoint.exposure, own)
            results.append(result)
            if result.status == "fired":
                actions.setdefault(policy.name, [a.value for a in policy.actions])
            outcome = worse(outcome, policy_outcome(policy, [result]))
            continue
        if not series:
            results.append(_no_judgments(policy, ref))
        pressure = audit.pressure(ws)  # monitor pressure, read from the trail once
        for key in sorted(series, key=lambda k: k.label):
            judges.add(f"{key.judge}@{key.judge_version}")
            read[series[key].positions] = True
            result = _pressure_result(pressure, policy, key)
            results.append(result)
            if result.status == "fired":
                actions.setdefault(policy.name, [a.value for a in policy.actions])
                _flag(flagged, policy, key)
        outcome = worse(
            outcome, policy_outcome(policy, [r for r in results if r.policy == policy.name])
        )
    switched = _judge_switch_gate(rows, order, [item.policy for item in loaded])
    if switched:
        results.extend(switched)
        actions.setdefault(JUDGE_SWITCH, ["block"])
        outcome = "block"
    gate = _redesign_gate(registry, run, step)
    if gate:
        results.extend(gate)
        actions.setdefault(REDESIGN_GATE, ["block"])
        outcome = "block"
    if checkpoint.status == CheckpointStatus.QUARANTINED:
        reason = (
            f"{ref} is quarantined: held out of promotion whatever its evidence says, until "
            f"`gov checkpoint release {ref} --reason ...`"
        )
        results.append(Result(QUARANTINE_HOLD, SeriesKey(None, None, "-", "-"), "fired", reason))
        actions.setdefault(QUARANTINE_HOLD, ["block"])
        outcome = "block"
    inputs = Inputs(
        checkpoint=ref,
        registry_state=_registry_state(registry, run, step),
        policies={item.path: item.sha256 for item in loaded},
        reports=counts.reports_for(ws, {order[i][:2] for i in np.flatnonzero(read)}),
        judges=sorted(judges),
    )
    gating = [i.policy.name for i in loaded if i.policy.insufficient != Insufficient.PASS]
    return Decision(
        checkpoint=ref,
        outcome=outcome,
        results=results,
        actions=actions,
        flagged=_current(registry, flagged),
        inputs=inputs,
        digest=inputs.digest(),
        registry_commit=ws.repo.head.commit.hexsha,
        gating=gating,
    )


def _flag(flagged: dict[str, int], policy: Policy, key: SeriesKey) -> None:
    """Note the environment version a fired result of a flagging policy is about."""
    if Action.FLAG_ENVIRONMENT in policy.actions and key.environment:
        version = key.environment_version or 0
        flagged[key.environment] = max(flagged.get(key.environment, 0), version)


def _parts(policy: Policy, workers: int) -> int:
    """In how many parts to evaluate a policy whose counts alone decide it."""
    return 1 if policy.run_wide or policy.condition.onset is None else 3 * workers


def _pure(policy: Policy) -> bool:
    """Whether the counts alone decide the policy (not the trail, the registry or judge pairs)."""
    condition = policy.condition
    return policy.run_wide or (
        condition.obfuscation is None and condition.unjudged is None and condition.pressure is None
    )


def _series(
    policy: Policy, rows: Table, order: Order
) -> tuple[list[tuple[SeriesKey, Points]], dict[SeriesKey, np.ndarray]]:
    """A policy's series in the order of their labels, and each one's peers (onset policies)."""
    series = for_policy(policy, rows, order)
    others = peers(series) if policy.condition.onset is not None else {}
    return sorted(series.items(), key=lambda kv: kv[0].label), others


def _results(
    policy: Policy,
    series: list[tuple[SeriesKey, Points]],
    others: dict[SeriesKey, np.ndarray],
    at: tuple[str, int],
    ref: str,
    errors: dict[tuple[str, str], ErrorRates | str],
    part: tuple[int, int] = (0, 1),
) -> list[tuple[Result, np.ndarray | None]]:
    """A policy's result on each of its series, with the positions each read (None: the policy
    had no series at all); `part` (i, m): only the i-th of m nearly equal runs of the series."""
    out: list[tuple[Result, np.ndarray | None]] = []
    if not series and part[0] == 0:
        out.append((_no_judgments(policy, ref), None))
    index, count = part
    for key, points in series[index * len(series) // count : (index + 1) * len(series) // count]:
        around = int(others[key][-1]) if key in others and len(points) else 1
        result = evaluate(
            policy,
            key,
            points,
            at,
            peers=around,
            errors=errors.get((key.judge, key.judge_version)),
        )
        if result.status == "fired":  # what the audit trail shows a reviewer later
            result.seen = points.seen()
        out.append((result, points.positions))
    return out


def _run_wide(
    policy: Policy, rows: Table, order: Order, at: tuple[str, int], ref: str
) -> list[tuple[Result, np.ndarray]]:
    """A run-wide policy's result on each judge version's matrix, and the positions it read."""
    found = matrices(policy, rows, order)
    if not found:
        return [(_no_judgments(policy, ref), np.zeros(0, dtype=np.int64))]
    out = []
    for key, matrix in sorted(found.items(), key=lambda kv: kv[0].label):
        # Each environment's part is worked out only for a rise that fires (its message names
        # the environments carrying it): at 300 environments it is nine tenths of the cost.
        result = evaluate_run(policy, key, matrix, at, details=False)
        if result.status == "fired":
            result.seen = [
                (f"{r}@{s}", int(k), int(n))
                for (r, s, _), k, n in zip(
                    matrix.order, matrix.ks.sum(axis=0), matrix.ns.sum(axis=0), strict=True
                )
            ]
        positions = matrix.offset + np.flatnonzero(matrix.ns.sum(axis=0))
        out.append((result, positions))
    return out


def _no_judgments(policy: Policy, ref: str) -> Result:
    return Result(
        policy.name,
        SeriesKey(None, None, policy.judge, "-"),
        "insufficient",
        f"no judgments for {policy.metric} up to {ref}: no evidence",
        metric=policy.metric,
    )


def _current(registry: Registry, flagged: dict[str, int]) -> list[str]:
    """The environments to flag: those whose evidence is about their current version. Evidence
    about a version already redesigned still blocks the checkpoint trained on it, but flags
    nothing: the flag was raised, and resolved, on that version."""
    current = {e.id: e.current.number for e in registry.environments()}
    return sorted(env for env, version in flagged.items() if version >= current.get(env, 0))


def _judged_per_environment(rows: Table, at: tuple[str, int], judge: str) -> dict[str, int]:
    """Judged episodes of each environment at checkpoint `at` (of `judge`, or any)."""
    if at not in rows.checkpoints:
        return {}
    here = rows.checkpoints.index(at)
    own: dict[str, int] = {}
    for i in np.flatnonzero(rows.checkpoint == here).tolist():
        env, _, by, _ = rows.keys[int(rows.key[i])]
        if judge in ("any", by):
            own[env] = own.get(env, 0) + int(rows.columns["n"][i])
    return own


# Below this chance of an environment's judgments being absent by luck alone, they are missing.
MISSING_BY_CHANCE = 0.001


def _unjudged_result(
    policy: Policy,
    series: dict[SeriesKey, Points],
    order: Order,
    exposure: Sequence[ExposureEntry] = (),
    own: dict[str, int] | None = None,
) -> Result:
    """Whether the checkpoint (the last of `order`) has judged episodes of its own, in any of
    the policy's series (any environment, any judge version), and (`each_environment`) from
    every environment it trained on at a weight where none by chance is implausible."""
    last = len(order) - 1
    n = int(judged_at(series, len(order))[last])
    run, step, _ = order[last]
    ref = f"{run}@{step}"
    result = Result(policy.name, SeriesKey(None, None, policy.judge, "-"), "clear", "")
    result.metric, result.n = policy.metric, n
    if not n:
        return not_judged(result, ref)
    assert policy.condition.unjudged is not None
    missing = []
    if policy.condition.unjudged.each_environment and own is not None:
        for entry in exposure:
            chance = math.exp(n * math.log1p(-entry.weight)) if entry.weight < 1 else 0.0
            if not own.get(entry.environment) and chance < MISSING_BY_CHANCE:
                missing.append(
                    f"{entry.environment} (weight {entry.weight:g}: none of {n} by chance "
                    f"{'under 1 in 10^9' if chance < 1e-9 else f'{chance:.1e}'})"
                )
    if missing:
        result.status = "fired"
        result.reason = (
            f"not judged yet in {', '.join(missing)}: {ref} trained on it, but none of its "
            "judged episodes are from it (its judgments are missing: ingest them, then check "
            "again)"
        )
        return result
    result.reason = f"judged: n = {n} at {ref}"
    return result


def obfuscation(
    registry: Registry,
    policy: Policy,
    order: Order,
    at: tuple[str, int],
    errors: dict[tuple[str, str], ErrorRates | str],
) -> list[Result]:
    """An obfuscation watch on every pair of channels (the policy's `pair`, else each
    action-view judge version with every other version that judged the same episodes), per
    environment version, up to checkpoint `at`."""
    ws = registry.ws
    none = SeriesKey(None, None, policy.judge, "-")
    if policy.pair is not None:
        cot, action = policy.pair.versions()
        for name, version in (cot, action):
            if version not in [v.version for v in registry.judge(name).versions]:
                raise GovError(
                    f"policy {policy.name}: pair: judge {name!r} has no version {version!r}"
                )
        actions, cots = {action}, {cot}
    else:
        actions = {
            (j.id, v.version) for j in registry.judges() for v in j.versions if v.view == "action"
        }
        cots = None
    if not actions:
        return [
            Result(
                policy.name,
                none,
                "insufficient",
                "no action-view judge to hold the CoT judge to: register one (gov judge add NAME "
                "--view action) or name a pair in the policy",
                metric=METRIC,
            )
        ]
    # only a watched pair reads the episode tables (and the ingest code that builds them)
    from . import pairs

    found = pairs.paired(ws, actions, cots)
    if policy.judge != "any":
        found = {k: v for k, v in found.items() if k.cot[0] == policy.judge}
    if policy.environments is not None:
        found = {k: v for k, v in found.items() if k.environment in policy.environments}
    if not found:
        if policy.pair is not None:
            raise GovError(
                f"policy {policy.name}: {policy.pair.cot} and {policy.pair.action} never judged "
                "the same episodes (same run, step, environment version and episode id): no pair"
            )
        return [
            Result(
                policy.name,
                none,
                "insufficient",
                "no episodes judged by both an action-view judge and a CoT judge: no evidence",
                metric=METRIC,
            )
        ]
    position = {(r, s): i for i, (r, s, _) in enumerate(order)}
    peers: dict[tuple[tuple[str, str], tuple[str, str]], int] = {}
    for key in found:
        peers[(key.cot, key.action)] = peers.get((key.cot, key.action), 0) + 1
    results = []
    for key, rows in sorted(found.items(), key=lambda kv: (kv[0].environment, kv[0].cot)):
        channels = sorted(
            (r for r in rows if (r.run, r.step) in position), key=lambda r: position[r.run, r.step]
        )
        calibrated = errors.get(key.action)
        series = SeriesKey(key.environment, key.environment_version, *key.cot)
        results.append(
            watch(
                policy,
                series,
                key.action,
                channels,
                at,
                peers=peers[(key.cot, key.action)],
                false_flags=calibrated.false_alarm.mean
                if isinstance(calibrated, ErrorRates)
                else None,
            )
        )
    return results


def _pressure_result(pressure: dict[str, dict[str, int]], policy: Policy, key: SeriesKey) -> Result:
    """The pressure condition on one environment, from the trail's interventions per
    environment and kind (audit.pressure)."""
    assert policy.condition.pressure is not None
    limit = policy.condition.pressure.redesigns
    count = pressure.get(key.environment, {}).get("redesign", 0) if key.environment else 0
    if count > limit:
        return Result(
            policy.name,
            key,
            "fired",
            f"redesigned {count} times on monitor evidence (> {limit}): confirm falling rates "
            "with an independent held-out judge before trusting them",
        )
    return Result(policy.name, key, "clear", f"redesigned {count} times on monitor evidence")


def _redesign_gate(registry: Registry, run: str, step: int) -> list[Result]:
    """A checkpoint trained, after an environment was flagged, on the flagged version (or an
    older one) is blocked: a restart must train on the redesign, not on what was flagged."""
    ckpt = registry.checkpoint(run, step)
    flags = {f.environment: f for f in registry.flags()}
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


def _judge_switch_gate(rows: Table, order: Order, policies: Sequence[Policy]) -> list[Result]:
    """An environment whose judge changed version with no checkpoint judged by both versions is
    blocked. Each version is a series of its own (a new judge's higher rates are no rise), so a
    rise that came with the change shows in neither series, and nothing measures whether the
    rate moved there: a 5x rise at the switch passed every policy. Judging a few checkpoints
    from before the switch with the new version measures it and clears this (`gov judge
    compare` then reads the two versions side by side). Only judges a policy reads are asked."""
    watched = {
        p.judge
        for p in policies
        if p.scope == "environment"
        and (p.condition.onset or p.condition.rise or p.condition.above) is not None
    }
    kinds = [(e, v, j) for e, v, j, _ in rows.keys]
    if not watched or len(set(kinds)) == len(kinds):  # no judge with two versions anywhere
        return []
    judged: dict[tuple[str, int, str], dict[str, set[int]]] = {}
    for key, points in build(rows, "rationalization_rate", order).items():
        if key.environment is None or key.environment_version is None:
            continue
        if "any" not in watched and key.judge not in watched:
            continue
        where = {int(i) for i in points.positions[points.ns > 0]}
        if where:
            group = (key.environment, key.environment_version, key.judge)
            judged.setdefault(group, {})[key.judge_version] = where
    found = []
    for (env, version, judge), versions in sorted(judged.items()):
        newest = max(versions, key=lambda v: (min(versions[v]), v))
        began = min(versions[newest])
        older = [v for v in versions if min(versions[v]) < began]
        if not older or any(versions[v] & versions[newest] for v in older):
            continue
        before = max(older, key=lambda v: max(versions[v]))
        run, step = order[began][:2]
        reason = (
            f"judge {judge} changed from version {before} to {newest} at {run}@{step} with no "
            f"checkpoint judged by both: each version is a series of its own, so a rise that "
            f"came with the change shows in neither; judge a few checkpoints from before "
            f"{run}@{step} with version {newest} to measure it"
        )
        found.append(Result(JUDGE_SWITCH, SeriesKey(env, version, judge, newest), "fired", reason))
    return found


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
    if registry.checkpoint(run, step).status == CheckpointStatus.QUARANTINED:
        state["quarantined"] = True  # set by a person, not by a decision: a check under it differs
    state["environments"] = [
        (e.id, [(v.number, v.hash) for v in e.versions]) for e in registry.environments()
    ]
    state["judges"] = [
        (j.id, [(v.version, v.rubric_hash) for v in j.versions]) for j in registry.judges()
    ]
    views = [(j.id, v.version) for j in registry.judges() for v in j.versions if v.view]
    if views:  # which versions are action channels: what an obfuscation watch pairs
        state["views"] = views
    calibrated = calibration.every(registry.ws)
    if calibrated:  # what a corrected policy corrects for
        state["calibrations"] = [(c.judge, c.version, c.labels_sha256) for c in calibrated]
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# -- recording it ---------------------------------------------------------------------------
def decision_path(ws: Workspace, decision: Decision) -> Path:
    """Where a decision is recorded: one file per checkpoint and inputs digest."""
    run, step = parse_checkpoint_ref(decision.checkpoint)
    return ws.audit / "decisions" / f"{run}@{step}.{decision.digest[:16]}.json"


def recorded(ws: Workspace, decision: Decision) -> bool:
    return decision_path(ws, decision).exists()


def recorded_decisions(ws: Workspace, refs: set[str]) -> list[tuple[str, Decision]]:
    """(file, decision) of every recorded decision at one of `refs`, oldest first."""
    folder = ws.audit / "decisions"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        decision = Decision.model_validate_json(path.read_bytes())
        if decision.checkpoint in refs:
            found.append((ws.rel(path), decision))
    return sorted(found, key=lambda item: item[1].evaluated)


# What a recorded decision is made from, as the trail names it (relative to the workspace).
DECIDED_FROM = ("policies", "registry", "gov.yaml")


def check_committed(ws: Workspace, action: str) -> None:
    """A decision is recorded, and a checkpoint promoted, only on committed policies and
    registry: the trail names their hashes, and a review must find them in the history. An
    edit not committed (or a new file not added) is refused, naming it."""
    listed = scm.output(
        ws.root,
        "status",
        "--porcelain",
        "--untracked-files=all",
        "--",
        *(str(ws.root / rel) for rel in DECIDED_FROM),
    )
    changed = [line[3:] for line in (listed or "").splitlines() if line.strip()]
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise GovError(
            f"{changed[0]}{more}: changes not committed; {action} from committed policies and "
            "registry only (the audit trail names their hashes): commit them first (`gov check "
            "--dry-run` shows the outcome without recording it)"
        )


def record(registry: Registry, decision: Decision) -> str | None:
    """Write the decision to audit/decisions/, flag environments, mark a blocked checkpoint;
    one commit. Returns the commit, or None when this very decision was recorded before."""
    ws = registry.ws
    check_committed(ws, "a decision is recorded")
    run, step = parse_checkpoint_ref(decision.checkpoint)
    path = decision_path(ws, decision)
    if path.exists():
        return None
    summary = f"check {decision.checkpoint}: {decision.outcome}"
    if decision.flagged:
        summary += f" (flags {', '.join(decision.flagged)})"
    recorded_bytes = model_json(decision)
    with ws.change(summary) as change:
        change.write(path, recorded_bytes)
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
            inputs=decision.inputs.model_dump(),
            refs={
                "decision": ws.rel(path),
                # the decision file's own bytes: `gov audit verify` finds one edited afterwards
                "decision_sha256": hashlib.sha256(recorded_bytes).hexdigest(),
                "digest": decision.digest,
                "fired": sorted({r.policy for r in decision.fired}),
                "flagged": decision.flagged,
            },
        )
        for env in decision.flagged:
            _raise_flag(registry, change, decision, run, env)
        _warn_obfuscation(change, decision, run)
        if decision.outcome == "block" and (
            registry.checkpoint(run, step).status != CheckpointStatus.QUARANTINED
        ):  # a quarantine stands until it is released; the block is in the trail meanwhile
            registry.write_status(change, run, step, CheckpointStatus.BLOCKED)
        change.body = "\n".join(
            f"{r.policy} on {r.series.label}: {r.reason}" for r in decision.fired
        )
    return change.sha


def _warn_obfuscation(change: Change, decision: Decision, run: str) -> None:
    """An obfuscation watch that fired is recorded once per environment and CoT judge version
    (an entry of its own, which counts as monitor pressure on the environment)."""
    fired = [r for r in decision.fired if r.metric == METRIC and r.series.environment]
    if not fired:
        return
    known = {
        (e["subject"].get("environment"), e["subject"].get("judge"))
        for _, e in audit.read(change.ws)
        if e.get("kind") == "obfuscation_warning"
    }
    for r in fired:
        judge = f"{r.series.judge}@{r.series.judge_version}"
        if (r.series.environment, judge) in known:
            continue
        known.add((r.series.environment, judge))
        audit.append(
            change,
            "obfuscation_warning",
            subject={
                "run": run,
                "checkpoint": decision.checkpoint,
                "environment": r.series.environment,
                "judge": judge,
            },
            outcome="warn",
            inputs={"digest": decision.digest},
            reason=r.reason,
        )


def _raise_flag(registry: Registry, change: Change, decision: Decision, run: str, env: str) -> None:
    current = registry.environment(env)
    if current.status != EnvironmentStatus.ACTIVE:
        return
    evidence = [r for r in decision.fired if r.series.environment == env]
    raising = {name for name, acts in decision.actions.items() if "flag_environment" in acts}
    fired = [r.series.environment_version for r in evidence if r.policy in raising]
    flag = Flag(
        environment=env,
        version=max((v for v in fired if v), default=current.current.number),
        checkpoint=decision.checkpoint,
        decision=decision.digest,
        raised=utc_now(),
        evidence=tuple(
            FlagEvidence(
                policy=r.policy,
                series=r.series.label,
                reason=r.reason,
                metric=r.metric,
                environment_version=r.series.environment_version,
                judge=r.series.judge,
                judge_version=r.series.judge_version,
                raises_flag=r.policy in raising,
            )
            for r in evidence
        ),
    )
    registry.write_flag(change, flag)
    audit.append(
        change,
        "flag_raised",
        subject={"run": run, "checkpoint": decision.checkpoint, "environment": env},
        outcome="open",
        inputs={"digest": decision.digest, "version": flag.version},
        reason="; ".join(f"{e.policy}: {e.reason}" for e in flag.evidence),
    )
    registry.write_environment_status(change, env, EnvironmentStatus.FLAGGED)


# -- promotion --------------------------------------------------------------------------------
def promote(
    registry: Registry, ref: str, *, override_reason: str | None = None
) -> tuple[Decision, str | None]:
    """Promote RUN@STEP; returns the decision it rests on and the commit. Without an override,
    the policies evaluated now must pass (or only warn) and that very evaluation must have been
    recorded by a check."""
    run, step = parse_checkpoint_ref(ref)
    current = registry.checkpoint(run, step)
    if current.status == CheckpointStatus.PROMOTED:
        raise GovError(f"checkpoint {ref} is already promoted")
    if current.status == CheckpointStatus.QUARANTINED and override_reason is None:
        raise Blocked(
            f"checkpoint {ref} is quarantined: only a recorded override can promote it",
            remedy="override",
        )
    if override_reason is not None and not override_reason.strip():
        raise GovError("an override needs a reason: say why the policies are overruled")
    check_committed(registry.ws, "a checkpoint is promoted")
    decision = decide(registry, ref)
    if override_reason is None:
        if decision.outcome == "block":
            fired = ", ".join(sorted({r.policy for r in decision.fired})) or "insufficient evidence"
            raise Blocked(
                f"checkpoint {ref} is blocked ({fired}): see `gov check {ref}`; only a "
                "recorded override can promote it",
                remedy="override",
            )
        if not recorded(registry.ws, decision):
            raise GovError(
                f"no recorded check of {ref} with the current inputs (registry, policies, "
                f"reports): run `gov check {ref}` first"
            )
    ws = registry.ws
    summary = f"promote {ref}" + (" (override)" if override_reason is not None else "")
    with ws.change(summary) as change:
        registry.write_status(change, run, step, CheckpointStatus.PROMOTED)
        audit.append(
            change,
            "override" if override_reason is not None else "promotion",
            subject={"run": run, "checkpoint": ref},
            outcome="promoted",
            inputs=decision.inputs.model_dump(),
            reason=override_reason,
            refs={"decision_outcome": decision.outcome, "digest": decision.digest},
        )
        if override_reason is not None:
            override = Override(
                checkpoint=ref,
                actor=audit.actor_of(ws),
                reason=override_reason,
                decision_outcome=decision.outcome,
                decision_digest=decision.digest,
                fired=sorted({r.policy for r in decision.fired}),
            )
            path = ws.audit / "overrides" / f"{run}@{step}.{decision.digest[:16]}.json"
            change.write(path, model_json(override))
            change.body = f"Override by {override.actor}: {override_reason}"
        else:
            change.body = f"Check {decision.outcome}, inputs {decision.digest}"
    return decision, change.sha
