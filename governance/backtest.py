"""Replaying the policies over a past run: at every checkpoint, each seeing only its past.

Shows, per policy and series, the first checkpoint that would have warned, blocked or flagged,
and the restore point the rollback would have named then; records nothing. It uses the same
evaluation as `gov check`, on series built once for the whole run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import counts
from .errors import GovError
from .gates import loaded_policies, policy_series
from .policies import Action, Insufficient, LoadedPolicy
from .registry import Registry, parse_checkpoint_ref
from .stats.evaluate import evaluate
from .stats.result import Outcome, worse
from .stats.series import SeriesKey


@dataclass
class FirstAlarm:
    policy: str
    series: SeriesKey
    checkpoint: str  # the first checkpoint at which the policy fired on this series
    actions: list[str]
    fired_at: int  # how many checkpoints it fired at in all
    reason: str
    metric: str | None = None
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
    """Replay every policy at every checkpoint of the run's lineage, each seeing only its past."""
    ws = registry.ws
    loaded = loaded_policies(ws, policies)
    own = registry.checkpoints(run)
    if not own:
        raise GovError(f"run {run!r} has no checkpoints to replay")
    order = registry.order(run, own[-1].step)
    status = {f"{r}@{s}": st for r, s, st in order}
    position = {(r, s): i for i, (r, s, _) in enumerate(order)}
    outcomes: dict[str, Outcome] = {f"{r}@{s}": "pass" for r, s, _ in order}
    alarms: list[FirstAlarm] = []
    flagged: dict[str, str] = {}
    rows = counts.rows(ws)
    for item in loaded:
        policy = item.policy
        if policy.condition.pressure is not None:
            continue  # it reads the audit trail as it is now, not as it was then
        series = policy_series(policy, rows, order)
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
                    outcomes[ref] = worse(outcomes[ref], effect)
                    if first is None:
                        first = FirstAlarm(
                            policy.name,
                            key,
                            ref,
                            [a.value for a in policy.actions],
                            0,
                            result.reason,
                            policy.metric,
                        )
                        if Action.FLAG_ENVIRONMENT in policy.actions and key.environment:
                            known = flagged.get(key.environment)
                            if known is None or position[_split(known)] > position[_split(ref)]:
                                flagged[key.environment] = ref
                    first.fired_at += 1
                elif result.status == "insufficient" and gate_thin:
                    outcomes[ref] = worse(outcomes[ref], policy.insufficient.value)
            if first is not None:
                alarms.append(first)
        if gate_thin:  # a checkpoint where a series has no judgments at all is thin evidence too
            for r, s, _ in order:
                if len(seen_at.get((r, s), ())) < len(series) or not series:
                    ref = f"{r}@{s}"
                    outcomes[ref] = worse(outcomes[ref], policy.insufficient.value)
    for alarm in alarms:
        if alarm.series.environment and "recommend_rollback" in alarm.actions:
            alarm.restore = _restore_then(registry, alarm)
    blocked = [ref for ref, st in status.items() if st == "promoted" and outcomes[ref] == "block"]
    alarms.sort(key=lambda a: (position[_split(a.checkpoint)], a.policy, a.series.label))
    return Backtest(run, len(order), alarms, outcomes, blocked, flagged)


def _restore_then(registry: Registry, alarm: FirstAlarm) -> str | None:
    """The restore point the rollback would have named at the alarm, from its past alone, on
    the series and metric that raised it."""
    from .rollback import FlaggedSeries, recommend

    run, step = _split(alarm.checkpoint)
    key = alarm.series
    assert key.environment is not None
    target = FlaggedSeries(
        key.environment, key.environment_version, key.judge, key.judge_version, alarm.metric
    )
    try:
        rec = recommend(registry, run, at=step, flagged=[target])
    except GovError:
        return None
    return rec.restore


def _split(ref: str) -> tuple[str, int]:
    run, step = parse_checkpoint_ref(ref)
    return run, step
