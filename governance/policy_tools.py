"""Policy tooling: lint (schema and meaning), explain (a computation step by step), test cases.

Test cases are YAML beside the policies (`policies/tests/*.yaml`): a small series of (k, n)
counts and the result expected at its last checkpoint, like `opa test` for Rego policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import calibration, counts, yamlio
from .errors import GovError, PolicyError
from .policies import (
    UNREAD,
    Finding,
    LoadedPolicy,
    Policy,
    load_policies,
    parse_policy,
    shown,
    unread_policy_files,
)
from .registry import Registry, parse_checkpoint_ref
from .stats.evaluate import evaluate, evaluate_run
from .stats.intervals import wilson
from .stats.posteriors import prob_above, prob_rise
from .stats.result import Result
from .stats.series import Point, SeriesKey, for_policy, matrices, peers


def lint(folder: Path, root: Path) -> list[Finding]:
    """Every problem of every policy file: schema errors, then what the numbers imply."""
    findings: list[Finding] = []
    names: dict[str, str] = {}
    for path in unread_policy_files(folder):
        display = shown(path, root)
        findings.append(Finding(display, "error", UNREAD))
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        display = shown(path, root)
        if not path.is_file():  # a folder or a broken link named like a policy
            why = "a folder" if path.is_dir() else "no such file (a broken link?)"
            findings.append(Finding(display, "error", f"cannot be read as a policy file ({why})"))
            continue
        try:
            policy = parse_policy(path.read_text(encoding="utf-8"), display)
        except (PolicyError, UnicodeDecodeError) as exc:
            where, _, message = str(exc).partition(": ")
            findings.append(
                Finding(where if where.startswith(display) else display, "error", message)
            )
            continue
        if policy.name in names:
            findings.append(
                Finding(
                    display,
                    "error",
                    f"policy name {policy.name!r} is also used by {names[policy.name]}",
                )
            )
        names[policy.name] = display
        findings += [Finding(display, level, m) for level, m in _meaning(policy)]
    return findings


def _meaning(policy: Policy) -> list[tuple[Literal["error", "warning"], str]]:
    found: list[tuple[Literal["error", "warning"], str]] = []
    n = policy.min_evidence.n
    condition = policy.condition
    if condition.above is not None:
        level, need = condition.above.level, condition.above.confidence
        smallest = _fewest_events(n, level, need)
        if smallest is None:
            found.append(
                (
                    "error",
                    f"can never fire at the minimum evidence n = {n}: even {n}/{n} gives "
                    f"P(rate > {level:g}) = {prob_above(n, n, level):.3f} < {need}",
                )
            )
        elif smallest / n > 0.5:
            found.append(
                (
                    "warning",
                    f"at n = {n} it fires only from {smallest}/{n} = {smallest / n:.0%}: "
                    "raise min_evidence or lower the confidence",
                )
            )
    if condition.rise is not None:
        rise = condition.rise
        first = rise.baseline.first or 1
        # The most favourable case: a baseline with no events at all, and every episode now.
        best = prob_rise(n, n, 0, first * n, rise.factor)
        if best < rise.confidence:
            found.append(
                (
                    "error",
                    f"can never fire at the minimum evidence n = {n}: even {n}/{n} against a "
                    f"baseline of 0/{first * n} gives P = {best:.3f} < {rise.confidence}",
                )
            )
        if rise.baseline.first is not None and rise.baseline.first < 3:
            found.append(("warning", "a baseline of fewer than 3 checkpoints is mostly noise"))
    if policy.sustained > 1 and "block" not in policy.actions and "warn" not in policy.actions:
        found.append(("warning", "it neither blocks nor warns: its result only shows in reports"))
    return found


def _fewest_events(n: int, level: float, need: float) -> int | None:
    """The fewest events of n with P(rate > level) >= need (None: not even n). The chance
    grows with the events, so halving finds it in log2(n) steps (n may be up to 10^12)."""
    if prob_above(n, n, level) < need:
        return None
    low, high = 0, n  # prob_above(high) >= need; every k below low falls short
    while low < high:
        mid = (low + high) // 2
        if prob_above(mid, n, level) >= need:
            high = mid
        else:
            low = mid + 1
    return low


# -- explain ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesStep:
    """One series' part of an explanation: the result at the checkpoint and what it rests on."""

    series: str  # its label: environment version and judge version
    status: str
    reason: str
    at: tuple[int, int] | None  # (k, n) at the checkpoint, when it has judgments there
    interval: tuple[float, float] | None  # 95% Wilson interval of that rate
    baseline: tuple[int, int] | None  # (k, n) of the baseline, for the policies that have one


@dataclass(frozen=True)
class Explanation:
    """The computation of one policy at one checkpoint."""

    policy: str
    path: str
    sha256: str
    description: str
    metric: str
    scope: str
    judge: str
    run: str
    checkpoint: str
    min_evidence: int
    series: list[SeriesStep]


def _step(result: Result) -> SeriesStep:
    """A result read whole, with the counts it reports (a pair's or a run's)."""
    counted = result.n is not None and result.n > 0
    return SeriesStep(
        series=result.series.label,
        status=result.status,
        reason=result.reason,
        at=(result.k or 0, result.n or 0) if counted else None,
        interval=wilson(result.k or 0, result.n or 0) if counted else None,
        baseline=None,
    )


def explain(registry: Registry, name: str, ref: str, environment: str | None = None) -> Explanation:
    """The computation of one policy at one checkpoint."""
    ws = registry.ws
    loaded = {p.policy.name: p for p in load_policies(ws.policies, ws.root)}
    if name not in loaded:
        raise GovError(
            f"no policy named {name!r} in {ws.rel(ws.policies)} "
            f"(known: {', '.join(sorted(loaded))})"
        )
    item: LoadedPolicy = loaded[name]
    policy = item.policy
    run, step = parse_checkpoint_ref(ref)
    registry.checkpoint(run, step)
    steps: list[SeriesStep] = []
    if policy.condition.obfuscation is not None:  # pairs of channels on the same episodes
        from .gates import obfuscation

        order = registry.order(run, step)
        errors = calibration.all_errors(ws)
        for result in obfuscation(registry, policy, order, (run, step), errors):
            if environment is not None and result.series.environment != environment:
                continue
            steps.append(_step(result))
        return _explanation(item, run, ref, steps)
    if policy.run_wide:  # one matrix of every environment per judge version
        table = counts.table(ws)
        for key, matrix in sorted(matrices(policy, table, registry.order(run, step)).items()):
            steps.append(_step(evaluate_run(policy, key, matrix, (run, step))))
        return _explanation(item, run, ref, steps)
    series = for_policy(policy, counts.table(ws), registry.order(run, step))
    others = peers(series) if policy.condition.onset is not None else {}
    if environment is not None:
        series = {k: v for k, v in series.items() if k.environment == environment}
    errors = calibration.all_errors(ws)
    for key, points in sorted(series.items(), key=lambda kv: kv[0].label):
        around = int(others[key][-1]) if key in others and len(points) else 1
        result = evaluate(
            policy,
            key,
            points,
            (run, step),
            peers=around,
            errors=errors.get((key.judge, key.judge_version)),
        )
        here = points[-1] if points and (points[-1].run, points[-1].step) == (run, step) else None
        counted = here is not None and here.n > 0
        steps.append(
            SeriesStep(
                series=key.label,
                status=result.status,
                reason=result.reason,
                at=(here.k, here.n) if here is not None and counted else None,
                interval=wilson(here.k, here.n) if here is not None and counted else None,
                baseline=result.baseline,
            )
        )
    return _explanation(item, run, ref, steps)


def _explanation(item: LoadedPolicy, run: str, ref: str, steps: list[SeriesStep]) -> Explanation:
    policy = item.policy
    return Explanation(
        policy=policy.name,
        path=str(item.path),
        sha256=item.sha256,
        description=policy.description,
        metric=policy.metric,
        scope=policy.scope,
        judge=policy.judge,
        run=run,
        checkpoint=ref,
        min_evidence=policy.min_evidence.n,
        series=steps,
    )


# -- tests ------------------------------------------------------------------------------------
class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    series: Annotated[list[tuple[int, int]], Field(min_length=1)]  # (k, n) per checkpoint
    expect: Literal["fired", "clear", "insufficient", "unavailable"]


class _Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str
    cases: Annotated[list[_Case], Field(min_length=1)]


@dataclass(frozen=True)
class CaseResult:
    file: str
    policy: str
    case: str
    expected: str
    got: str
    reason: str

    @property
    def passed(self) -> bool:
        return self.expected == self.got


def run_tests(folder: Path, root: Path, policies: list[LoadedPolicy]) -> list[CaseResult]:
    """Run every test file under `folder` against `policies`."""
    by_name = {p.policy.name: p.policy for p in policies}
    results: list[CaseResult] = []
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise GovError(f"no policy tests in {folder}: write cases in {folder}/*.yaml")
    for path in files:
        display = shown(path, root)
        text = path.read_text(encoding="utf-8")
        suite = yamlio.parse(
            text,
            _Suite,
            display,
            PolicyError,
            what="expected a policy test suite: a mapping with policy and cases",
        )
        if suite.policy not in by_name:
            raise PolicyError(f"{display}: no policy named {suite.policy!r}")
        policy = by_name[suite.policy]
        if policy.condition.obfuscation is not None:
            raise PolicyError(
                f"{display}: {suite.policy} watches pairs of judges on the same episodes: a test "
                "case is one series of counts; bench/obfuscation.py tests the watch"
            )
        if policy.run_wide:
            raise PolicyError(
                f"{display}: {suite.policy} is run-wide (every environment's matrix): a test "
                "case is one series; test it with gov backtest --counts instead"
            )
        key = SeriesKey("test", 1, "judge", "1")
        for case in suite.cases:
            for k, n in case.series:
                if not 0 <= k <= n:
                    raise PolicyError(
                        f"{display}: case {case.name!r}: ({k}, {n}) is not 0 <= k <= n"
                    )
            points = [Point("test", i + 1, k, n) for i, (k, n) in enumerate(case.series)]
            result = evaluate(policy, key, points, ("test", len(points)))
            results.append(
                CaseResult(
                    display, policy.name, case.name, case.expect, result.status, result.reason
                )
            )
    return results
