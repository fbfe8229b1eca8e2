"""Replaying policies over count rows: at every checkpoint, each seeing only its past.

Pure: the rows, the checkpoint order and the policies in, the first alarm of each policy on
each series (with the restore point the rollback rule names at that moment) and what a check
would have decided at each checkpoint out. `gov backtest` runs it on a workspace and on
exported counts alike, so both give the same alarms for the same counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..metrics import CountRow
from ..policies import Action, Insufficient, Policy, with_unjudged
from .evaluate import candidates, evaluate
from .restore import Target, place, restore_point
from .result import Outcome, worse
from .series import Order, SeriesKey, Table, for_policy


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
) -> Replay:
    """Every policy at every checkpoint of `order` (oldest first), each seeing its past only.

    `unusable(position)` says why a checkpoint cannot be restored to (None: it can).
    `first_only`: stop each series at its first alarm (the outcomes are then incomplete).

    An onset policy's alarm stands on its series from its first checkpoint on: a rise that
    began does not un-begin, and a posterior at every later checkpoint of a long run would cost
    minutes. Elsewhere cheap bounds (`evaluate.candidates`) spare the evaluation at the
    checkpoints where the policy could not fire."""
    refs = [f"{r}@{s}" for r, s, _ in order]
    table = rows if isinstance(rows, Table) else Table.of(rows)  # once, for every policy
    result = Replay(outcomes=["pass"] * len(order))
    outcomes = result.outcomes
    for policy in with_unjudged(policies):
        if policy.condition.pressure is not None:
            continue  # it reads the audit trail as it is now, not as it was then
        series = for_policy(policy, table, order)
        if policy.condition.unjudged is not None:  # checkpoints nobody judged: the policy's effect
            judged = np.zeros(len(order), dtype=np.int64)
            for points in series.values():
                judged[points.positions] += points.ns
            unjudged: Outcome = "block" if Action.BLOCK in policy.actions else "warn"
            for where in np.flatnonzero(judged == 0).tolist():
                outcomes[where] = worse(outcomes[where], unjudged)
            continue
        gate_thin = policy.insufficient != Insufficient.PASS
        thin_outcome: Outcome = policy.insufficient.value
        effect: Outcome = "block" if Action.BLOCK in policy.actions else "warn"
        onset = policy.condition.onset is not None
        covered = np.zeros(len(order), dtype=np.int64)
        for key, points in sorted(series.items(), key=lambda kv: kv[0].label):
            first: Alarm | None = None
            positions = points.positions
            covered[positions] += 1
            todo, thin = candidates(policy, points)
            if gate_thin:
                for where in positions[thin].tolist():
                    outcomes[where] = worse(outcomes[where], thin_outcome)
            for index in np.flatnonzero(todo).tolist():
                where = int(positions[index])
                run, step, _ = order[where]
                verdict = evaluate(policy, key, points, (run, step), index, bounded=True)
                if verdict.status == "fired":
                    outcomes[where] = worse(outcomes[where], effect)
                    if first is None:
                        first = Alarm(
                            policy.name,
                            key,
                            policy.metric,
                            where,
                            refs[where],
                            effect,
                            [a.value for a in policy.actions],
                            verdict.reason,
                        )
                        _restore(first, table, order, alpha, unusable)
                        if Action.FLAG_ENVIRONMENT in policy.actions and key.environment:
                            known = result.flagged.get(key.environment, where)
                            result.flagged[key.environment] = min(known, where)
                    first.fired_at += 1
                    if first_only:
                        break
                    if onset:  # a rise that began does not un-begin: it stands from here on
                        for later in positions[index + 1 :].tolist():
                            outcomes[later] = worse(outcomes[later], effect)
                            first.fired_at += 1
                        break
                elif verdict.status == "insufficient" and gate_thin:
                    outcomes[where] = worse(outcomes[where], thin_outcome)
            if first is not None:
                result.alarms.append(first)
        if gate_thin:  # a checkpoint where a series has no judgments at all is thin evidence too
            for where, seen in enumerate(covered.tolist()):
                if seen < len(series) or not series:
                    outcomes[where] = worse(outcomes[where], thin_outcome)
    result.alarms.sort(key=lambda a: (a.index, a.policy, a.series.label))
    return result


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
