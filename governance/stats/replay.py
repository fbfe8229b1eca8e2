"""Replaying policies over count rows: at every checkpoint, each seeing only its past.

Pure: the rows, the checkpoint order and the policies in, the first alarm of each policy on
each series (with the restore point the rollback rule names at that moment) and what a check
would have decided at each checkpoint out. `gov backtest` runs it on a workspace and on
exported counts alike, so both give the same alarms for the same counts.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..metrics import CountRow
from ..policies import Action, Insufficient, Policy, with_unjudged
from .calibration import ErrorRates
from .evaluate import candidates, evaluate, evaluate_run, run_posterior
from .restore import Target, place, restore_point
from .result import Outcome, Result, worse
from .series import (
    Matrix,
    Order,
    Points,
    SeriesKey,
    Table,
    for_policy,
    judged_at,
    matrices,
    peers,
)


@dataclass
class Alarm:
    """The first checkpoint at which a policy fired on a series."""

    policy: str
    series: SeriesKey
    metric: str
    index: int  # its position in the order
    checkpoint: str
    outcome: Outcome  # block or warn
    actions: list[str]
    reason: str
    fired_at: int = 0  # how many checkpoints it fired at in all
    restore_index: int | None = None  # what the rollback would have named then (position)
    restore: str | None = None
    known_clean: bool | None = None  # False: the restore point is assumed clean, not measured


@dataclass
class Replay:
    alarms: list[Alarm] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # per position in the order
    flagged: dict[str, int] = field(default_factory=dict)  # environment -> first flagging position


def replay(
    rows: Sequence[CountRow] | Table,
    order: Order,
    policies: Sequence[Policy],
    alpha: float,
    unusable: Callable[[int], str | None] = lambda _: None,
    *,
    first_only: bool = False,
    errors: Mapping[tuple[str, str], ErrorRates | str] | None = None,
) -> Replay:
    """Every policy at every checkpoint of `order` (oldest first), each seeing its past only.

    `unusable(position)` says why a checkpoint cannot be restored to (None: it can).
    `first_only`: stop each series at its first alarm (the outcomes are then incomplete).
    `errors`: the calibrated judge versions' error rates, for policies with `corrected: true`.

    An onset policy's alarm stands on its series from its first checkpoint on: a rise that
    began does not un-begin, and a posterior at every later checkpoint of a long run would cost
    minutes. Elsewhere cheap bounds (`evaluate.candidates`) spare the evaluation at the
    checkpoints where the policy could not fire."""
    table = rows if isinstance(rows, Table) else Table.of(rows)  # once, for every policy
    result = Replay(outcomes=["pass"] * len(order))
    outcomes = result.outcomes
    jobs: list[_Job | _MatrixJob] = []
    for policy in with_unjudged(policies):
        if policy.condition.pressure is not None:
            continue  # it reads the audit trail as it is now, not as it was then
        if policy.condition.obfuscation is not None:
            continue  # it reads pairs of episode verdicts, not counts: gov check evaluates it
        if policy.run_wide:
            wide = sorted(matrices(policy, table, order).items())
            jobs[:0] = [(policy, key, matrix) for key, matrix in wide]  # the longest first
            continue
        series = for_policy(policy, table, order)
        if policy.condition.unjudged is not None:  # checkpoints nobody judged: the policy's effect
            judged = judged_at(series, len(order))
            unjudged: Outcome = "block" if Action.BLOCK in policy.actions else "warn"
            for where in np.flatnonzero(judged == 0).tolist():
                outcomes[where] = worse(outcomes[where], unjudged)
            continue
        if policy.insufficient != Insufficient.PASS:
            # a checkpoint where a series has no judgments at all is thin evidence too
            covered = np.zeros(len(order), dtype=np.int64)
            for points in series.values():
                covered[points.positions] += 1
            for where in np.flatnonzero(covered < max(1, len(series))).tolist():
                outcomes[where] = worse(outcomes[where], _thin(policy))
        others = peers(series) if policy.condition.onset is not None else {}
        jobs += [
            (policy, key, series[key], others.get(key))
            for key in sorted(series, key=lambda k: k.label)
        ]
    shared = _Shared(table, order, alpha, unusable, first_only, dict(errors or {}))
    for found in _run(shared, jobs):
        for where, outcome in found.outcomes:
            outcomes[where] = worse(outcomes[where], outcome)
        if found.alarm is not None:
            alarm = found.alarm
            result.alarms.append(alarm)
            if "flag_environment" in alarm.actions and alarm.series.environment:
                env = alarm.series.environment
                result.flagged[env] = min(result.flagged.get(env, alarm.index), alarm.index)
    result.alarms.sort(key=lambda a: (a.index, a.policy, a.series.label))
    return result


@dataclass
class _Shared:
    """What every series' replay reads."""

    table: Table
    order: Order
    alpha: float
    unusable: Callable[[int], str | None]
    first_only: bool
    errors: dict[tuple[str, str], ErrorRates | str] = field(default_factory=dict)


@dataclass
class _Found:
    """One series' replay: what it decided where, and its first alarm."""

    outcomes: list[tuple[int, Outcome]]
    alarm: Alarm | None


# A replay of at least this many (series x checkpoints) is shared out over the machine's cores.
PARALLEL_ABOVE = 200_000
_SHARED: _Shared | None = None  # the forked workers' view of the replay's inputs


# a policy, a series, its points, and how many environments the run had judged at each
_Job = tuple[Policy, SeriesKey, Points, np.ndarray | None]
_MatrixJob = tuple[Policy, SeriesKey, Matrix]  # a run-wide policy and a judge version's matrix


def _run(shared: _Shared, jobs: list[_Job | _MatrixJob]) -> list[_Found]:
    """Every series' replay, in the order of `jobs`: in this process, or for a large replay on
    the machine's cores (forked workers read the inputs without copying them)."""
    global _SHARED
    size = sum(len(job[2]) * (len(job[2].ks) if isinstance(job[2], Matrix) else 1) for job in jobs)
    cores = min(len(os.sched_getaffinity(0)), 8) if hasattr(os, "sched_getaffinity") else 1
    if size < PARALLEL_ABOVE or cores < 2 or "fork" not in mp.get_all_start_methods():
        return [_one(shared, job) for job in jobs]
    _SHARED = shared
    try:
        with ProcessPoolExecutor(cores, mp_context=mp.get_context("fork")) as pool:
            # many small chunks: the series that need posteriors are few and far between
            return list(pool.map(_job, jobs, chunksize=max(1, len(jobs) // (cores * 16))))
    finally:
        _SHARED = None


def _job(job: _Job | _MatrixJob) -> _Found:
    assert _SHARED is not None
    return _one(_SHARED, job)


def _one(shared: _Shared, job: _Job | _MatrixJob) -> _Found:
    if len(job) == 3:
        policy, key, matrix = job
        return _matrix(policy, key, matrix, shared.alpha, shared.unusable, shared.first_only)
    return _series(shared, *job)


def _series(
    shared: _Shared, policy: Policy, key: SeriesKey, points: Points, around: np.ndarray | None
) -> _Found:
    """One policy on one series at every checkpoint, each seeing its past only."""
    order = shared.order
    effect: Outcome = "block" if Action.BLOCK in policy.actions else "warn"
    gate_thin = policy.insufficient != Insufficient.PASS
    thin_outcome = _thin(policy)
    onset = policy.condition.onset is not None
    positions = points.positions
    found = _Found([], None)
    todo, thin = candidates(policy, points, 1 if around is None else around)
    if gate_thin:
        found.outcomes += [(where, thin_outcome) for where in positions[thin].tolist()]
    first: Alarm | None = None
    for index in np.flatnonzero(todo).tolist():
        where = int(positions[index])
        run, step, _ = order[where]
        count = 1 if around is None else int(around[index])
        verdict = evaluate(
            policy,
            key,
            points,
            (run, step),
            index,
            bounded=True,
            peers=count,
            errors=shared.errors.get((key.judge, key.judge_version)),
        )
        if verdict.status == "fired":
            found.outcomes.append((where, effect))
            if first is None:
                first = _alarm(policy, key, where, f"{run}@{step}", effect, verdict.reason)
                _restore(first, shared.table, order, shared.alpha, shared.unusable)
            first.fired_at += 1
            if shared.first_only:
                break
            if onset:  # a rise that began does not un-begin: it stands from here on
                later = positions[index + 1 :].tolist()
                found.outcomes += [(w, effect) for w in later]
                first.fired_at += len(later)
                break
        elif verdict.status == "insufficient" and gate_thin:
            found.outcomes.append((where, thin_outcome))
    found.alarm = first
    return found


def _matrix(
    policy: Policy,
    key: SeriesKey,
    matrix: Matrix,
    alpha: float,
    unusable: Callable[[int], str | None],
    first_only: bool,
) -> _Found:
    """A run-wide policy on one judge version's matrix at every checkpoint, each seeing its
    past only; its alarm stands from its first checkpoint on, as an onset policy's does."""
    effect: Outcome = "block" if Action.BLOCK in policy.actions else "warn"
    found = _Found([], None)
    for index, verdict in _run_verdicts(policy, key, matrix):
        run, step, _ = matrix.order[index]
        where = matrix.offset + index
        if verdict.status == "insufficient" and policy.insufficient != Insufficient.PASS:
            found.outcomes.append((where, _thin(policy)))
        if verdict.status != "fired":
            continue
        alarm = _alarm(policy, key, where, f"{run}@{step}", effect, verdict.reason)
        posterior = run_posterior(matrix.upto(index), details=False)
        safe = posterior.restore_index(alpha)
        for candidate in range(safe, -1, -1):
            if unusable(matrix.offset + candidate) is None:
                alarm.restore_index = matrix.offset + candidate
                r, s_, _ = matrix.order[candidate]
                alarm.restore = f"{r}@{s_}"
                alarm.known_clean = candidate >= 1
                break
        later = [matrix.offset + i for i in range(index, len(matrix))]
        found.outcomes += [(w, effect) for w in (later[:1] if first_only else later)]
        alarm.fired_at = len(later)
        found.alarm = alarm
        break
    return found


def _alarm(
    policy: Policy, key: SeriesKey, where: int, ref: str, effect: Outcome, reason: str
) -> Alarm:
    return Alarm(
        policy.name,
        key,
        policy.metric,
        where,
        ref,
        effect,
        [a.value for a in policy.actions],
        reason,
    )


# A run-wide policy is evaluated at every judged checkpoint of a run of up to this many; on a
# longer run at evenly spaced ones, this many in all, and where one fires, at every checkpoint
# since the last one evaluated, so that the first alarm found is the first in that stretch.
RUN_WIDE_EVERY = 250


def _run_verdicts(policy: Policy, key: SeriesKey, matrix: Matrix) -> Iterator[tuple[int, Result]]:
    """The run-wide policy's verdicts along the matrix, in order, each seeing its past only;
    on a long run at RUN_WIDE_EVERY evenly spaced checkpoints, filled in before a firing."""
    judged = np.flatnonzero(matrix.ns.sum(axis=0))[2:].tolist()
    stride = max(1, -(-len(judged) // RUN_WIDE_EVERY))
    last = -1
    for i in range(0, len(judged), stride):
        index = judged[i]
        run, step, _ = matrix.order[index]
        verdict = evaluate_run(policy, key, matrix, (run, step), index, details=False)
        if verdict.status == "fired" and stride > 1:
            for before in judged[last + 1 : i]:
                run, step, _ = matrix.order[before]
                earlier = evaluate_run(policy, key, matrix, (run, step), before, details=False)
                yield before, earlier
                if earlier.status == "fired":
                    return
        yield index, verdict
        if verdict.status == "fired":
            return
        last = i


_THIN: dict[Insufficient, Outcome] = {
    Insufficient.PASS: "pass",
    Insufficient.WARN: "warn",
    Insufficient.BLOCK: "block",
}


def _thin(policy: Policy) -> Outcome:
    """What thin evidence means for the gate under this policy."""
    return _THIN[policy.insufficient]


def _restore(
    alarm: Alarm,
    rows: Sequence[CountRow] | Table,
    order: Order,
    alpha: float,
    unusable: Callable[[int], str | None],
) -> None:
    """The restore point the rollback would have named at the alarm, from its past alone, on
    the series and metric that raised it."""
    key = alarm.series
    if key.environment is None:
        return  # a run-wide series names no environment to redesign or restore on
    past = order[: alarm.index + 1]
    target = Target(
        key.environment, key.environment_version, key.judge, key.judge_version, alarm.metric
    )
    placed = place(rows, past, [target])
    if len(past) < 2 or not placed:
        return
    point = restore_point(placed, alpha, unusable)
    if point.index is not None:
        alarm.restore_index = point.index
        run, step, _ = past[point.index]
        alarm.restore = f"{run}@{step}"
        alarm.known_clean = point.known_clean
