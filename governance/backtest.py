"""Replaying the policies over a past run, or over counts exported from another system: at
every checkpoint, each seeing only its past.

Shows, per policy and series, the first checkpoint that would have warned, blocked or flagged,
and the restore point the rollback would have named then; records nothing. Both forms run the
one replay (`governance.stats.replay`) that `gov check` evaluates with, so the same counts give
the same alarms with or without a workspace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import calibration, counts, parallel
from .errors import GovError
from .gates import loaded_policies, unknown_environments, unknown_judges, unregistered_judges
from .ingest.formats import detect_kind, sniff
from .ingest.join import FreeJoin
from .ingest.scan import scan_aggregated
from .metrics import CountRow
from .policies import LoadedPolicy, load_policies
from .records import DEFAULT_ALPHA
from .registry import Registry
from .rollback import check_alpha, not_restorable
from .stats.calibration import ErrorRates
from .stats.replay import Alarm, replay
from .stats.result import Outcome
from .stats.series import Order, Table


@dataclass
class Backtest:
    run: str
    checkpoints: int
    alarms: list[Alarm]
    outcomes: dict[str, Outcome]  # checkpoint -> what `gov check` would have decided then
    blocked_promotions: list[str]  # promoted checkpoints the policies would have blocked
    flagged: dict[str, str]  # environment -> first checkpoint that would have flagged it
    alpha: float = DEFAULT_ALPHA

    def document(self) -> dict[str, Any]:
        """What `--format json` prints."""
        return {
            "run": self.run,
            "checkpoints": self.checkpoints,
            "alpha": self.alpha,
            "alarms": [alarm_document(self.run, a) for a in self.alarms],
            "outcomes": self.outcomes,
            "blocked_promotions": self.blocked_promotions,
            "flagged": self.flagged,
        }


@dataclass
class CountsBacktest:
    """A replay of exported counts: every run on its own, its checkpoints its steps in order."""

    source: str
    runs: list[Backtest]
    alpha: float

    @property
    def alarms(self) -> list[tuple[str, Alarm]]:
        return [(b.run, a) for b in self.runs for a in b.alarms]

    @property
    def blocked(self) -> bool:
        return any(a.outcome == "block" for b in self.runs for a in b.alarms)

    def document(self) -> dict[str, Any]:
        """What `--format json` prints: every run's first alarms in one list."""
        return {
            "counts": self.source,
            "alpha": self.alpha,
            "runs": {b.run: b.checkpoints for b in self.runs},
            "alarms": [alarm_document(run, a) for run, a in self.alarms],
        }


def alarm_document(run: str, alarm: Alarm) -> dict[str, Any]:
    """One first alarm as JSON: where, which policy and series, and the restore point then.
    `run` is the run of the alarm's checkpoint (a parent's, along a lineage), `replayed` the
    run whose lineage was replayed."""
    at_run, _, step = alarm.checkpoint.rpartition("@")
    restore_run, _, restore_step = (alarm.restore or "").rpartition("@")
    return {
        "run": at_run,
        "replayed": run,
        "policy": alarm.policy,
        "metric": alarm.metric,
        "environment": alarm.series.environment,
        "environment_version": alarm.series.environment_version,
        "judge": alarm.series.judge,
        "judge_version": alarm.series.judge_version,
        "checkpoint": alarm.checkpoint,
        "step": int(step),
        "outcome": alarm.outcome,
        "actions": alarm.actions,
        "checkpoints_fired": alarm.fired_at,  # how many it fired at in all, this one on
        "reason": alarm.reason,
        "restore": alarm.restore,
        "restore_run": restore_run or None,
        "restore_step": int(restore_step) if alarm.restore else None,
        "restore_known_clean": alarm.known_clean,
    }


def backtest(
    registry: Registry,
    run: str,
    policies: Sequence[LoadedPolicy] | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> Backtest:
    """Replay every policy at every checkpoint of the run's lineage, each seeing only its past."""
    check_alpha(alpha)
    ws = registry.ws
    loaded = loaded_policies(ws, policies)
    if unknown := unregistered_judges(registry, loaded):
        raise GovError(f"{unknown[0].path}: {unknown[0].message}")
    lineage = registry.lineage_checkpoints(run)
    if not lineage:
        raise GovError(f"run {run!r} has no checkpoints to replay")
    order = [(c.run, c.step, c.status.value) for c in lineage]
    return _replay(
        run,
        counts.table(ws),
        order,
        loaded,
        alpha,
        lambda i: not_restorable(registry, lineage[i]),
        calibration.all_errors(ws),
    )


def backtest_counts(
    path: Path,
    policies: Path | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> CountsBacktest:
    """Replay the policies (a folder of them; the bundled defaults without one) over aggregated
    count records, the form `gov ingest` accepts, without a workspace."""
    check_alpha(alpha)
    folder = policies if policies is not None else bundled_policies()
    if not folder.is_dir():
        raise GovError(f"{folder}: no such folder of policies")
    loaded = load_policies(folder, folder.parent)
    if not loaded:
        raise GovError(f"no policies in {folder}: nothing to replay")
    rows = read_counts(path)
    # a misspelt judge would read none of the counts and replay as "nothing would have blocked"
    where = f"in {path.name}"
    unknown = [
        *unknown_judges({r.judge for r in rows}, loaded, where, "fix the name"),
        *unknown_environments({r.environment for r in rows}, loaded, where, "fix the name"),
    ]
    if unknown:
        raise GovError(f"{unknown[0].path}: {unknown[0].message}")
    by_run: dict[str, list[CountRow]] = {}
    for row in rows:
        by_run.setdefault(row.run, []).append(row)
    named = sorted(by_run)

    def one(index: int) -> Backtest:
        own = by_run[named[index]]
        order: Order = [(own[0].run, s, "registered") for s in sorted({r.step for r in own})]
        return _replay(own[0].run, own, order, loaded, alpha)

    # Runs are independent: an export of many runs is replayed over the cores (the same answers,
    # in the same order, as one after the other).
    done = parallel.run_each(one, range(len(named)), worth_it=len(rows) >= PARALLEL_FROM)
    return CountsBacktest(str(path), [done[i] for i in range(len(named))], alpha)


PARALLEL_FROM = 500  # count rows from which starting workers (about 0.1 s) pays


def read_counts(path: Path) -> list[CountRow]:
    """Aggregated count records, validated exactly as `gov ingest` validates them."""
    if not path.is_file():
        raise GovError(f"{path}: no such file")
    fmt = sniff(path)
    if detect_kind(path, fmt) != "aggregated":
        raise GovError(
            f"{path}: episode-level records; a backtest reads aggregated counts (n, none, "
            "rejected, rationalized, overt, divergent per run, step, environment version and "
            "judge version)"
        )
    _, tallies = scan_aggregated(path, fmt, FreeJoin(), refusal="refused, nothing replayed")
    return [counts.row_of(group, tally) for group, tally in sorted(tallies.items())]


def bundled_policies() -> Path:
    """The default policies as `gov init` installs them."""
    from .workspace import bundled

    return bundled("policies")


def _replay(
    run: str,
    rows: Sequence[CountRow] | Table,
    order: Order,
    loaded: Sequence[LoadedPolicy],
    alpha: float,
    unusable: Callable[[int], str | None] = lambda _: None,
    errors: Mapping[tuple[str, str], ErrorRates | str] | None = None,
) -> Backtest:
    done = replay(rows, order, [item.policy for item in loaded], alpha, unusable, errors=errors)
    refs = [f"{r}@{s}" for r, s, _ in order]
    outcomes = dict(zip(refs, done.outcomes, strict=True))
    blocked = [
        ref
        for ref, (_, _, status) in zip(refs, order, strict=True)
        if status == "promoted" and outcomes[ref] == "block"
    ]
    flagged = {env: refs[i] for env, i in done.flagged.items()}
    return Backtest(run, len(order), done.alarms, outcomes, blocked, flagged, alpha)
