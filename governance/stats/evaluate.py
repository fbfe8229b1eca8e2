"""One policy on one series at one checkpoint: fired, clear, or too little evidence to say.

A pure function of the policy and the series' points (no registry, no files), used alike by
`gov check`, the backtest, `gov policy explain` and the policy test cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import astuple, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from ..errors import EvidenceError
from ..policies import Policy
from .calibration import ErrorRates, corrected
from .calibration import prob_above as corrected_above
from .onset import OnsetPosterior, OnsetPrior, onset_posterior
from .posteriors import PRIOR, prob_above, prob_rise, rise_bound
from .result import Contributor, Result
from .runwide import DEFAULT_RUN_PRIOR, Contribution, RunOnsetPosterior, run_onset
from .screen import rise_odds
from .series import Matrix, Point, SeriesKey, columns


def evaluate(
    policy: Policy,
    key: SeriesKey,
    points: Sequence[Point],
    at: tuple[str, int],
    index: int = -1,
    *,
    bounded: bool = False,
    peers: int = 1,
    errors: ErrorRates | str | None = None,
) -> Result:
    """The policy's verdict at checkpoint `at`, seeing `points[: index + 1]` only (the last
    point by default): the point at `index` should be that checkpoint's.

    `errors`: the series' judge version's calibration (or why it has none), for a policy with
    `corrected: true`: its level is then compared with the rate corrected for the judge's error.

    `bounded`: a result that is clearly clear may leave its probability unset (backtests).
    `peers`: how many environments the run had judged by then (series.peers): an onset
    policy's prior chance of a rise in any one of them is shared out among them.
    A probability that is not a number never becomes a verdict: EvidenceError instead."""
    result = _evaluate(policy, key, points, at, index, bounded=bounded, peers=peers, errors=errors)
    note = getattr(points, "note", None)
    if note:
        result.reason = f"{result.reason} ({note})"
    if result.probability is not None and not math.isfinite(result.probability):
        raise EvidenceError(
            f"{policy.name} on {key.label} at {at[0]}@{at[1]}: the analysis gave no number "
            f"(P = {result.probability}); the counts are out of range for it"
        )
    return result


def _evaluate(
    policy: Policy,
    key: SeriesKey,
    points: Sequence[Point],
    at: tuple[str, int],
    index: int,
    *,
    bounded: bool,
    peers: int,
    errors: ErrorRates | str | None = None,
) -> Result:
    ref = f"{at[0]}@{at[1]}"
    result = Result(policy.name, key, "insufficient", "", metric=policy.metric)
    index = index if index >= 0 else len(points) - 1
    if index < 0 or (points[index].run, points[index].step) != at:
        if policy.condition.unjudged is not None:
            return not_judged(result, ref)
        result.reason = f"no judgments at {ref}: no evidence"
        return result
    here = points[index]
    result.k, result.n = here.k, here.n
    if here.n:
        result.value = here.value
        result.low, result.high = here.low, here.high
    if policy.condition.onset is not None:
        return _onset_result(policy, result, points, index, peers)
    if policy.condition.unjudged is not None:
        if not here.n:
            return not_judged(result, ref)
        result.status = "clear"
        result.reason = f"judged: n = {here.n} at {ref}"
        return result
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
    uncorrected = ""
    if policy.corrected:
        if not isinstance(errors, ErrorRates):
            uncorrected = f" (uncorrected: {errors or _uncalibrated(key)})"
            errors = None
        else:
            noisy = _too_noisy(policy, here, errors)
            if noisy:
                result.reason = noisy
                return result
    else:
        errors = None
    held = 0
    probability: float | None = None
    need = _confidence(policy)
    for point in reversed(points[max(0, index - policy.sustained + 1) : index + 1]):
        if point.n < minimum:
            break
        if bounded and baseline is not None and policy.condition.rise is not None:
            factor = policy.condition.rise.factor
            if rise_bound(point.k, point.n, baseline[0], baseline[1], factor) < need:
                break  # clearly below: the exact integral is not needed
        p = _probability(policy, point, baseline, errors)
        probability = p if probability is None else probability
        if p < need:
            break
        held += 1
        if held == policy.sustained:
            break
    result.probability, result.held = probability, held
    claim = _claim(policy, baseline, errors)
    if held >= policy.sustained:
        result.status = "fired"
        result.reason = f"{claim}: P = {probability:.3f} >= {need}" + (
            f", held {held} checkpoints running" if policy.sustained > 1 else ""
        )
    else:
        result.status = "clear"
        if held:
            result.reason = f"held {held} of the {policy.sustained} checkpoints running it needs"
        elif probability is None:
            result.reason = f"{claim}: P < {need} (bounded)"
        else:
            result.reason = f"{claim}: P = {probability:.3f} < {need}"
    result.reason += uncorrected
    return result


def _onset_result(
    policy: Policy, result: Result, points: Sequence[Point], index: int, peers: int
) -> Result:
    """The onset condition: a rise that began no later than the last judged checkpoint but one
    (so a single bad checkpoint is not enough, even when the checkpoint after it was not judged),
    with the stated probability; with `sustained: K`, so at each of the last K judged
    checkpoints, each seeing only its own past."""
    assert policy.condition.onset is not None
    need = policy.condition.onset.probability
    seen = points[: index + 1]
    ks, ns = columns(seen)
    judged = np.flatnonzero(ns).tolist()
    if int(ns.sum()) < policy.min_evidence.n or len(judged) < 3:
        result.reason = _young(
            result.series,
            seen[judged[0]].ref if judged else None,
            len(judged),
            int(ns.sum()),
            policy.min_evidence.n,
        )
        return result
    claim = "P(a rise began before this checkpoint)"
    odds = float(rise_odds(ks, ns, last=True)[0])
    prior = prior_odds(peers)
    if odds < screen_odds(need) - prior:
        result.status = "clear"
        result.reason = f"{claim} far below {need}: no rise on the screen (log odds {odds:.1f})"
        return result
    probability, posterior = _onset_probability(seen, judged[-2], prior, need)
    result.probability = probability
    if posterior is None:
        result.status = "clear"
        result.reason = f"{claim} ~ {probability:.3f} on the coarse grid, far below {need}"
        return result
    if probability < need:
        result.status = "clear"
        result.reason = f"{claim} = {probability:.3f} < {need}"
        return result
    held = 1
    for before in reversed(judged[-policy.sustained : -1] if policy.sustained > 1 else []):
        earlier = [i for i in judged if i <= before]
        if len(earlier) < 3:
            break
        if _onset_probability(seen[: before + 1], earlier[-2], prior, need)[0] < need:
            break
        held += 1
    result.held = held
    if held < policy.sustained:
        result.status = "clear"
        result.reason = (
            f"{claim} = {probability:.3f} >= {need}, but held {held} of the "
            f"{policy.sustained} judged checkpoints running it needs"
        )
        return result
    result.status = "fired"
    onset = seen[posterior.estimate()].ref
    result.reason = f"{claim} = {probability:.3f} >= {need}; onset ~ {onset}" + (
        f", held {held} judged checkpoints running" if policy.sustained > 1 else ""
    )
    return result


def _young(key: SeriesKey, began: str | None, judged: int, episodes: int, minimum: int) -> str:
    """Why a series is too young for an onset analysis, and how long until a rise can show: it
    needs three judged checkpoints (a level, then a rise covering two) and `minimum` episodes."""
    more = max(0, 3 - judged)
    return (
        f"the series of judge {key.judge} version {key.judge_version} is young"
        + (f" (from {began})" if began else "")
        + f": {judged} judged checkpoint{'' if judged == 1 else 's'} and {episodes} judged "
        f"episodes, where an onset analysis needs 3 and {minimum}"
        + (
            f"; a rise can show {more} judged checkpoint{'' if more == 1 else 's'} from now at "
            "the earliest"
            if more
            else ""
        )
        + " (a new judge version starts a series of its own): insufficient evidence"
    )


def _onset_probability(
    seen: Sequence[Point], held: int, prior: float = 0.0, need: float = 0.95
) -> tuple[float, OnsetPosterior | None]:
    """P(a rise with its onset at or before position `held`), and the full posterior, the
    model's even odds of a rise shifted by `prior` (log odds); the coarse screen's value and
    None where that is far too low to need the full grid."""
    k, n = columns(seen)
    ks, ns = tuple(k.tolist()), tuple(n.tolist())
    rough = _onset(ks, ns, SCREEN_PRIOR)
    probability = _shifted(rough.p_rise, prior) * rough.p_onset_by(held)
    if probability < coarse_bar(need):
        return probability, None
    posterior = _onset(ks, ns, ALARM_PRIOR)
    return _shifted(posterior.p_rise, prior) * posterior.p_onset_by(held), posterior


def prior_odds(peers: int) -> float:
    """The log prior odds of a rise in one environment when the run has `peers` of them: even
    odds that any one of them rises, shared out (1 - 0.5 ** (1 / peers) each), so a run of 300
    steady environments is no more likely to raise a false alarm than a run of one. 0 for one."""
    if peers <= 1:
        return 0.0
    each = -math.expm1(math.log(0.5) / peers)
    return math.log(each / (1 - each))


def _shifted(p_rise: float, prior: float) -> float:
    """P(a rise) at even prior odds, moved to prior log odds `prior`."""
    if prior == 0.0 or p_rise <= 0.0:
        return p_rise
    if p_rise >= 1.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(-(math.log(p_rise / (1 - p_rise)) + prior)))


def evaluate_run(
    policy: Policy,
    key: SeriesKey,
    matrix: Matrix,
    at: tuple[str, int],
    index: int = -1,
    *,
    details: bool = True,
) -> Result:
    """A run-wide policy's verdict at checkpoint `at`, seeing columns 0..index of the run's
    matrix (the last by default): P(a rise across the run began before this checkpoint), with
    the environments that contribute most (without `details`, only when it fires), or too
    little evidence to say."""
    assert policy.run_wide and policy.condition.onset is not None
    ref = f"{at[0]}@{at[1]}"
    result = Result(policy.name, key, "insufficient", "", metric=policy.metric)
    index = index if index >= 0 else len(matrix) - 1
    if index < 0 or tuple(matrix.order[index][:2]) != at:
        result.reason = f"no judgments at {ref}: no evidence"
        return result
    seen = matrix.upto(index)
    column = seen.ns.sum(axis=0)
    result.k, result.n = int(seen.ks[:, -1].sum()), int(column[-1])
    if not column[-1]:
        result.reason = f"no judgments at {ref}: no evidence"
        return result
    judged = np.flatnonzero(column).tolist()
    environments = int((seen.ns.sum(axis=1) > 0).sum())
    if environments < 2:
        result.reason = (
            "one environment in the run: a run-wide analysis needs two or more (the "
            "environment's own policies cover it): insufficient evidence"
        )
        return result
    if int(column.sum()) < policy.min_evidence.n or len(judged) < 3:
        first = seen.order[judged[0]]
        result.reason = _young(
            key, f"{first[0]}@{first[1]}", len(judged), int(column.sum()), policy.min_evidence.n
        )
        return result
    need = policy.condition.onset.probability
    posterior = run_posterior(seen, details=False)
    probability = posterior.p_rise * posterior.p_onset_by(judged[-2])
    if details or probability >= need:
        posterior = run_posterior(seen)
    result.probability = probability
    claim = "P(a rise across the run began before this checkpoint)"
    result.contributors = [
        Contributor(
            *seen.environments[c.index],
            round(c.p_affected, 4),
            round(c.effect, 3),
            round(c.evidence, 3),
        )
        for c in posterior.leading(count=5, at_least=0.5)
    ]
    if probability < need:
        result.status = "clear"
        result.reason = f"{claim} = {probability:.3f} < {need}"
        return result
    alone = _carried_by_one(seen, posterior, judged[-2])
    if alone is not None:
        result.status = "clear"
        result.reason = (
            f"{claim} = {probability:.3f}, but without {alone} a rise is no longer even the "
            "likelier: the evidence is one environment's, which its own policies judge"
        )
        return result
    result.status = "fired"
    result.onset = seen.order[posterior.estimate()][0] + f"@{seen.order[posterior.estimate()][1]}"
    leading = ", ".join(
        f"{c.environment} v{c.environment_version} x{c.effect:.2f} (P {c.p_affected:.2f})"
        for c in result.contributors
    )
    result.reason = (
        f"{claim} = {probability:.3f} >= {need}; onset ~ {result.onset}; about "
        f"{posterior.share:.0%} of {environments} environments rose, typically "
        f"x{posterior.effect:.2f}" + (f"; most evidence from {leading}" if leading else "")
    )
    return result


def _carried_by_one(seen: Matrix, posterior: RunOnsetPosterior, held: int) -> str | None:
    """The environment that alone carries a run-wide rise (None: without the one that
    contributes most, a rise is still the likelier, so it is shared). A rise across the run is a
    claim about many environments; one environment's rise is its own policies' to judge."""
    if not posterior.contributions:
        return None
    top = max(posterior.contributions, key=lambda c: (c.evidence, -c.index))
    rest = np.ones(len(seen.environments), dtype=bool)
    rest[top.index] = False
    if int((seen.ns[rest].sum(axis=1) > 0).sum()) < 2:
        return seen.label(top.index)
    assert posterior.without_top == top.index  # worked out with the contributions
    if posterior.p_without_top_by(held) < 0.5:
        return seen.label(top.index)
    return None


class Memo(Protocol):
    """Where the posteriors of earlier processes are kept, by a key naming their inputs whole
    (the application's: gov keeps them in the workspace's local state). A posterior is a pure
    function of its counts and prior, so one found there is the one this process would compute:
    each check computes the newest checkpoint's, and finds the ones before it (a policy that
    must hold for several checkpoints asks for them again) where the last check left them."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


MEMO: Memo | None = None


@lru_cache(maxsize=1)
def model_digest() -> bytes:
    """What the posteriors are computed by: the statistics' own source, hashed. A memo kept by
    an earlier gov whose model differed (an upgrade, a change in development) is then never
    read: its keys name another model."""
    digest = hashlib.sha256()
    sources = sorted(Path(__file__).parent.glob("*.py"))
    for path in sources:
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        except OSError:  # unreadable source: no memo can be trusted to match it
            return secrets.token_bytes(32)
    if not sources:  # installed without its sources: the same
        return secrets.token_bytes(32)
    return digest.digest()


def _key(kind: str, *parts: bytes | str) -> str:
    digest = hashlib.sha256(kind.encode() + model_digest())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little") + data)
    return f"{kind}-{digest.hexdigest()}"


P = TypeVar("P", OnsetPosterior, RunOnsetPosterior)


def _memoized(key: str, kind: type[P], compute: Callable[[], P]) -> P:
    """The posterior `key` names: from MEMO where it was kept (a record that does not read back
    whole is computed again), else computed and kept there."""
    if MEMO is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            raw = MEMO.get(key)
            if raw is not None:
                return _posterior_of(kind, json.loads(raw))
    post = compute()
    if MEMO is not None:
        record = {f.name: getattr(post, f.name) for f in fields(post)}
        record["onset"] = post.onset.tolist()
        if isinstance(post, RunOnsetPosterior):
            record["contributions"] = [astuple(c) for c in post.contributions]
            record["onset_without_top"] = post.onset_without_top.tolist()
        with contextlib.suppress(OSError):
            MEMO.put(key, json.dumps(record).encode())
    return post


def _posterior_of(kind: type[P], record: dict[str, Any]) -> P:
    """A posterior from its record in MEMO (every field, the arrays and parts as lists)."""
    values = {f.name: record[f.name] for f in fields(kind)}
    values["onset"] = np.asarray(values["onset"], dtype=float)
    if kind is RunOnsetPosterior:
        values["onset_without_top"] = np.asarray(values["onset_without_top"], dtype=float)
        values["contributions"] = [Contribution(*c) for c in values["contributions"]]
    return kind(**values)


# The run-wide posteriors computed in this process, by their key (a digest of the counts and the
# prior), the newest RUNS_KEPT: keyed by the counts themselves, as an lru_cache of their bytes
# was, a replay of 5,000 checkpoints x 1,000 environment versions held 64 matrices' worth (6.5
# GB at its peak).
_RUNS: dict[str, RunOnsetPosterior] = {}
RUNS_KEPT = 64


def run_posterior(matrix: Matrix, *, details: bool = True) -> RunOnsetPosterior:
    """The run-wide posterior of a matrix, once per distinct matrix (check, explain, the replay
    and the restore point share it); `details`: with each environment's part."""
    ks = np.ascontiguousarray(matrix.ks, dtype=np.int64)
    ns = np.ascontiguousarray(matrix.ns, dtype=np.int64)
    key = _key("run", ks.tobytes(), ns.tobytes(), repr(ks.shape), repr(details), repr(RUN_PRIOR))
    found = _RUNS.get(key)
    if found is None:
        found = _memoized(
            key, RunOnsetPosterior, lambda: run_onset(ks, ns, RUN_PRIOR, details=details)
        )
        if len(_RUNS) >= RUNS_KEPT:
            _RUNS.pop(next(iter(_RUNS)))
        _RUNS[key] = found
    return found


# The run-wide model's prior (governance.stats.runwide): its defaults.
RUN_PRIOR = DEFAULT_RUN_PRIOR


def not_judged(result: Result, ref: str) -> Result:
    """The unjudged condition's verdict at a checkpoint with no judged episodes."""
    result.status = "fired"
    result.reason = (
        f"not judged yet: {ref} has no judged episodes of its own (ingest its judge report, "
        "then check again)"
    )
    return result


def candidates(
    policy: Policy, points: Sequence[Point], peers: np.ndarray | int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """At every position of the series, for all at once: whether `evaluate` could fire there
    (elsewhere it finds the policy clear or the evidence thin), and whether the evidence is too
    thin. An onset policy's thin positions are those with too little history and its possible
    ones those the screen leaves to the posterior; a level policy's are those below its n and
    those whose own point is above the level with the confidence; any other is evaluated
    everywhere."""
    ks, ns = columns(points)
    condition = policy.condition
    if condition.onset is not None:
        thin = (np.cumsum(ns) < policy.min_evidence.n) | (np.cumsum(ns > 0) < 3)
        shift = np.vectorize(prior_odds, otypes=[float])(np.broadcast_to(peers, ks.shape))
        possible = rise_odds(ks, ns) >= screen_odds(condition.onset.probability) - shift
        return ~thin & possible, thin
    if condition.above is not None and policy.corrected:
        thin = ns < policy.min_evidence.n  # a corrected rate (or a noisy judge) needs the posterior
        return ~thin, thin
    if condition.above is not None:
        # scipy.special takes a quarter second to import: paid where it is used
        from scipy.special import betainc

        thin = ns < policy.min_evidence.n
        above = 1.0 - betainc(ks + PRIOR, ns - ks + PRIOR, condition.above.level)
        return ~thin & (above >= condition.above.confidence), thin
    return np.ones(len(ks), dtype=bool), np.zeros(len(ks), dtype=bool)


def screen_odds(need: float) -> float:
    """The screen's bar for a policy that needs P >= `need`: the log odds of `need`, less
    SCREEN_MARGIN."""
    return float(np.log(need / (1 - need))) - SCREEN_MARGIN


# Before any posterior, a conjugate screen of every split (governance.stats.screen): only where
# its log Bayes factor of a rise comes within SCREEN_MARGIN of the log odds the policy needs is
# the posterior computed. On 20,836 prefixes of bench/onset.py's families (seeds 5 and 9, 45
# series per family), at the 5,426 where the posterior reached 0.9, the screen was never more
# than 2.4 below the log odds of 0.9, 0.95 or 0.99 where the posterior reached that level; the
# margin leaves 1.6 more (a factor of 5 in the odds).
SCREEN_MARGIN = 4.0
# The alarm asks whether a rise began, not where its first stage was: the one-stage model answers
# that as well and far faster; the restore point (governance.stats.restore) reads both.
# It reads eight of the model's fifteen ramp lengths: a step (half the mass: a jump or a drift,
# even odds) and seven lengths of 2 to 15 checkpoints, each weighted by the lengths it stands
# for. With a step weighed as one ramp length in fifteen, a plain step paid for fourteen
# shapes the data had ruled out, and a rise at the third checkpoint (2 in 200 twice, then 10 in
# 200 for thirty checkpoints) stayed at P = 0.91 for ever; it now fires. bench/onset.py (seed
# 50, 100 series a family) and an independent generator (200 a family) found the same misses
# and delays, and fewer false alarms: a high last checkpoint is a step at it (not before it)
# rather than the end of a ramp that began earlier.
ALARM_PRIOR = OnsetPrior(
    two_stage=0.0,
    ramps=(1, 2, 3, 4, 6, 8, 11, 15),
    ramp_weights=(14, 1, 1, 1, 3, 2, 3, 3),
)
# A coarse grid of the same model, about eight times cheaper, screens every checkpoint first:
# only where it gives at least SCREEN_BELOW is the full grid computed. On 2,689 prefixes of
# rising, ramping and steady series (bases 0.3% to 15%, 8 to 1,000 episodes) the coarse value was
# never below 0.55 where the full one reached 0.95 (the defaults' level); the bar is a little lower.
SCREEN_PRIOR = OnsetPrior(
    two_stage=0.0,
    p0=tuple(1e-4 * (3000.0 ** (1 / 9)) ** np.arange(11)),  # to 73%, as the full grid
    ratio=tuple(np.geomspace(1.5, 1000.0, 9)),
    spread=(0.0, 0.4),
    ramps=(1, 3, 7, 15),
    ramp_weights=(3, 1, 1, 1),  # a step half the mass, as ALARM_PRIOR
    dense=7,
)
SCREEN_BELOW = 0.5


def coarse_bar(need: float) -> float:
    """Below what coarse value the full grid is not computed, for a policy that needs `need`:
    SCREEN_BELOW at 0.95 (where it was measured) and above, and as many log odds below `need`
    as SCREEN_BELOW is below 0.95 for a policy that needs less (0.17 at 0.8, 0.32 at 0.9)."""
    if need >= 0.95:
        return SCREEN_BELOW
    gap = math.log(0.95 / 0.05) - math.log(SCREEN_BELOW / (1 - SCREEN_BELOW))
    return 1 / (1 + math.exp(gap - math.log(need / (1 - need))))


@lru_cache(maxsize=4096)
def _onset(k: tuple[int, ...], n: tuple[int, ...], prior: OnsetPrior) -> OnsetPosterior:
    key = _key("onset", repr(k), repr(n), repr(prior))
    # where the onset lies does not matter here: no second, finer pass
    return _memoized(key, OnsetPosterior, lambda: onset_posterior(k, n, prior, zoom=False))


def onset_place(points: Sequence[Point]) -> int:
    """Where the alarm's posterior places the onset of a rise in `points` (its median, a
    position in `points`): for an onset policy that fired on them, its own posterior, found
    again in the cache."""
    k, n = columns(points)
    return _onset(tuple(k.tolist()), tuple(n.tolist()), ALARM_PRIOR).estimate()


def placed_posterior(k: np.ndarray, n: np.ndarray, prior: OnsetPrior) -> OnsetPosterior:
    """The onset posterior a restore point is read from (with the finer pass where the onset
    lies), once per distinct counts and prior: kept in MEMO as the alarms' posteriors are, so
    a second recommendation, or the review page after one, finds it."""
    ks, ns = tuple(np.asarray(k).tolist()), tuple(np.asarray(n).tolist())
    key = _key("placed", repr(ks), repr(ns), repr(prior))
    return _memoized(key, OnsetPosterior, lambda: onset_posterior(ks, ns, prior))


def _confidence(policy: Policy) -> float:
    condition = policy.condition
    if condition.above is not None:
        return condition.above.confidence
    assert condition.rise is not None
    return condition.rise.confidence


def _uncalibrated(key: SeriesKey) -> str:
    return f"judge {key.judge} version {key.judge_version} has no calibration"


def _too_noisy(policy: Policy, point: Point, errors: ErrorRates) -> str | None:
    """Why the judge cannot resolve the rate at the policy's level, if it cannot: it does not
    flag (b) clearly more than (a), or the corrected 95% interval runs from about 0 to well
    above the level (twice it), so neither alarm nor pass would be honest."""
    assert policy.condition.above is not None
    level = policy.condition.above.level
    se, fa = errors.sensitivity, errors.false_alarm
    rates = f"flags {se.count}/{se.total} of (b), {fa.count}/{fa.total} of (a)"
    if not errors.informative:
        return (
            f"judge too noisy for this rate: it does not flag (b) clearly more often than (a) "
            f"({rates}): insufficient evidence"
        )
    fixed = corrected(point.k, point.n, errors)
    if fixed.low <= level / 4 and fixed.high >= 2 * level:
        return (
            f"judge too noisy for this rate: corrected {policy.metric} {fixed.point:.2%} "
            f"(95%: {fixed.low:.2%} .. {fixed.high:.2%}) spans from about 0 to well above "
            f"{level:g} ({rates}): insufficient evidence"
        )
    return None


def _probability(
    policy: Policy, point: Point, baseline: tuple[int, int] | None, errors: ErrorRates | None
) -> float:
    condition = policy.condition
    if condition.above is not None:
        if errors is not None:
            return corrected_above(point.k, point.n, errors, condition.above.level)
        return prob_above(point.k, point.n, condition.above.level)
    assert condition.rise is not None and baseline is not None
    return prob_rise(point.k, point.n, baseline[0], baseline[1], condition.rise.factor)


def _claim(
    policy: Policy, baseline: tuple[int, int] | None, errors: ErrorRates | None = None
) -> str:
    condition = policy.condition
    if condition.above is not None:
        if errors is not None:
            return f"{policy.metric} corrected for the judge's error > {condition.above.level:g}"
        return f"{policy.metric} > {condition.above.level:g}"
    assert condition.rise is not None and baseline is not None
    k0, n0 = baseline
    return f"{policy.metric} > {condition.rise.factor:g} x baseline ({k0}/{n0} = {k0 / n0:.3%})"


def _baseline(policy: Policy, points: Sequence[Point], index: int) -> tuple[int, int] | str | None:
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
        chosen = list(past[:first])
    elif rise.baseline.promoted:
        chosen = [p for p in past if p.status == "promoted"]
        if not chosen:
            return "no promoted checkpoint before this one to serve as the baseline"
    else:
        assert rise.baseline.checkpoint is not None
        run, _, step = rise.baseline.checkpoint.rpartition("@")
        chosen = [p for p in past if p.run == run and step.isdigit() and p.step == int(step)]
        if not chosen:
            return f"baseline checkpoint {rise.baseline.checkpoint} has no judgments in this series"
    k0, n0 = sum(p.k for p in chosen), sum(p.n for p in chosen)
    if n0 == 0:
        return "the baseline checkpoints have no judgments for this metric"
    return k0, n0
