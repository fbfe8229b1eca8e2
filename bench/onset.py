"""Onset detection and restore points: the default policies, as `gov init` installs them, against
four anchors and a reference, on series with a known truth, per family.

gov's row is what a user gets: the bundled policies replayed by `governance.stats.replay` (the
code `gov backtest` runs, with and without a workspace), each checkpoint seeing only its past.
Its alarm is the first checkpoint at which a blocking policy fires; its restore point is what
the rollback rule names at that moment. (The warn-only policies are left out of the replay: they
cannot raise the alarm, so the figures are the same without paying for them.)

Families (seeded; base rates 0.3% to 5%, 40 to 1,000 judged episodes per checkpoint, a
log-normal wobble between checkpoints, 5% of checkpoints unjudged, runs of 30 to 100
checkpoints (two-stage: 45 to 100), unless said otherwise):
- none: no change; spike: one checkpoint 3x to 8x that goes away; decline: the rate falls to a
  half to a fifth, at once or over 3 to 15 checkpoints. None of these should alarm.
- step: a step of 2x to 8x; gradual: the same factor reached over 3 to 15 checkpoints;
- early: a step or a ramp beginning at the 2nd to 5th checkpoint (inside any fixed baseline);
- short-thin: 15 to 35 checkpoints of 8 to 16 episodes, the rise at the 4th to 8th checkpoint,
  from near zero (or a noisy judge's 5% to 15%) to over half;
- two-stage: about 2x, then 4x to 8x five to twelve checkpoints later; the onset is the first
  stage, and a restore point between the stages is contaminated.
Anchors: a 2x-over-baseline threshold, the same sustained over 2 checkpoints, a Bernoulli CUSUM,
and ruptures' PELT segmentation (baseline: the first 5 checkpoints). The reference runs gov's
onset rule with priors close to the generator's own (unknowable in practice): how much of the
delay and waste is in the data rather than in gov's model.

Printed per family and method: false alarms (on series without a lasting rise: any alarm; on
rising series: an alarm before the onset, counted apart), missed rises, detection delay (median,
p90, in checkpoints), contaminated restore points (at or after the true onset, or none named),
checkpoints wasted (between the restore point and the last clean checkpoint; median, p90).

The floor's row is a test no detector can run: it knows when each rise began and its shape,
tests that shape against a constant rate at every checkpoint, and alarms when it crosses a bar
set so that 2% of the family's no-rise twins (the same draws with the rate held at the base)
ever do. A detector held to 2% false alarms can miss little fewer rises, or alarm little
sooner, than it does: where a target is below the floor, the data cannot meet it.

Usage: python bench/onset.py [--series N] [--seed S] [--alpha A] [--methods gov,reference,...]
                            [--policies DIR] [--no-floor]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from governance.backtest import bundled_policies
from governance.metrics import CountRow
from governance.policies import Action, Policy, load_policies
from governance.stats.intervals import wilson
from governance.stats.onset import OnsetPrior, onset_posterior
from governance.stats.replay import replay

BASELINE = 5  # checkpoints the threshold and CUSUM anchors take their baseline from
QUIET = ("none", "spike", "decline")
RISING = ("step", "gradual", "early", "short-thin", "two-stage")
FAMILIES = QUIET + RISING


@dataclass(frozen=True)
class Series:
    family: str
    k: np.ndarray
    n: np.ndarray
    onset: int | None  # first checkpoint at a raised rate (None: no lasting rise)
    factor: float  # the rise's final factor (1: none)
    shape: np.ndarray  # the rate over the base rate at each checkpoint, before the wobble


def _one(rng: np.random.Generator, family: str, null: bool = False) -> Series:
    """One series of the family; `null`: its no-rise twin, drawn the same way with the rate
    held at the base (the rise it would have had is kept in `shape`, for the floor's test)."""
    thin = family == "short-thin"
    t = int(rng.integers(15, 36)) if thin else int(rng.integers(30, 101))
    if family == "two-stage":
        t = int(rng.integers(45, 101))  # room for both stages and a few checkpoints after
    if thin:
        n = rng.integers(8, 17, t)
        base = (
            math.exp(rng.uniform(math.log(0.002), math.log(0.02)))
            if rng.random() < 0.5
            else rng.uniform(0.05, 0.15)
        )
    else:
        n = np.exp(rng.uniform(math.log(40), math.log(1000), t)).astype(int)
        base = math.exp(rng.uniform(math.log(0.003), math.log(0.05)))
    n[rng.random(t) < 0.05] = 0  # checkpoints nobody judged
    rate = np.full(t, base)
    onset, factor = None, 1.0
    ramp = 1 if rng.random() < 0.5 else int(rng.integers(3, 16))
    if family == "spike":
        rate[int(rng.integers(BASELINE + 2, t))] *= rng.uniform(3, 8)
    elif family == "decline":
        start = int(rng.integers(BASELINE, t - 5))
        fall = rng.uniform(2, 5)
        steps = np.minimum(1.0, (np.arange(t - start) + 1) / ramp)
        rate[start:] = base / (1 + (fall - 1) * steps)
    elif family in ("step", "gradual", "early", "short-thin"):
        if family == "step":
            ramp = 1
        elif family == "gradual":
            ramp = int(rng.integers(3, 16))
        if family == "early":
            onset = int(rng.integers(1, 5))
        elif thin:
            onset = int(rng.integers(3, 8))
        else:
            onset = int(rng.integers(max(BASELINE + 3, t // 4), t - 10))
        factor = (
            rng.uniform(0.5, 0.85) / base
            if thin
            else math.exp(rng.uniform(math.log(2), math.log(8)))
        )
        steps = np.minimum(1.0, (np.arange(t - onset) + 1) / ramp)
        rate[onset:] = base * (1 + (factor - 1) * steps)
    elif family == "two-stage":
        onset = int(rng.integers(max(BASELINE + 3, t // 4), t - 25))
        second = onset + int(rng.integers(5, 13))
        first, factor = rng.uniform(1.7, 2.3), rng.uniform(4, 8)
        rate[onset:] = base * first
        rate[second:] = base * factor
    shape = rate / base
    if null:
        rate = np.full(t, base)
    wobble = 0.1 if thin else 0.25
    rate = np.clip(rate * np.exp(rng.normal(0, wobble, t)), 0, 0.95)
    return Series(family, rng.binomial(n, rate), n, onset, float(factor), shape)


def generate(count: int, seed: int) -> list[Series]:
    """`count` series per family (each family its own stream, so adding one changes no other)."""
    found = []
    for number, family in enumerate(FAMILIES):
        rng = np.random.default_rng([seed, number])
        found += [_one(rng, family) for _ in range(count)]
    return found


Result = tuple[int, int | None] | None  # (alarm, restore) positions; restore None: none named
Detector = Callable[[np.ndarray, np.ndarray, float], Result]


POLICIES: list[Path] = []  # a folder of policies to score instead of the bundled ones


@cache
def _blocking() -> tuple[Policy, ...]:
    folder = POLICIES[0] if POLICIES else bundled_policies()
    loaded = [p.policy for p in load_policies(folder, folder.parent)]
    return tuple(p for p in loaded if Action.BLOCK in p.actions)


def gov(k: np.ndarray, n: np.ndarray, alpha: float) -> Result:
    """The default blocking policies replayed as `gov backtest` replays them."""
    order = [("main", (i + 1) * 10, "registered") for i in range(len(k))]
    rows = [
        CountRow(
            "main",
            (i + 1) * 10,
            "env",
            1,
            "",
            "judge",
            "1",
            int(n[i]),
            int(n[i] - k[i]),
            0,
            int(k[i]),
            0,
            0,
        )
        for i in range(len(k))
        if n[i] > 0
    ]
    done = replay(rows, order, _blocking(), alpha, first_only=True)
    blocks = [a for a in done.alarms if a.outcome == "block"]
    if not blocks:
        return None
    first = min(blocks, key=lambda a: a.index)
    return first.index, first.restore_index


# Close to the generator's own assumptions: base rates 0.2% to 15%, factors 2x to 100x, the
# log-normal wobble, steps and ramps of 3 to 15 half and half, two stages for some.
GENERATOR_PRIOR = OnsetPrior(
    p0=tuple(np.geomspace(0.002, 0.15, 18)),
    ratio=tuple(np.geomspace(2.0, 100.0, 12)),
    spread=(0.1, 0.25),
    ramps=tuple(range(1, 16)),
    ramp_weights=(0.5, 0.0, *[0.5 / 13] * 13),
    two_stage=0.15,
    first_ratio=(1.7, 2.0, 2.3),
    first_ramps=(1,),
    second_ramps=(1,),
    second_gap=12,
)
_REFERENCE_ALARM = OnsetPrior(**{**GENERATOR_PRIOR.__dict__, "two_stage": 0.0})


def reference(k: np.ndarray, n: np.ndarray, alpha: float) -> Result:
    """gov's onset rule (P(a rise began before this checkpoint) >= 0.99), restore by the
    generator-like prior; no evidence floor, no screen."""
    for t in range(3, len(k) + 1):
        post = onset_posterior(k[:t], n[:t], _REFERENCE_ALARM)
        if post.p_rise * post.p_onset_by(t - 2) >= 0.99:
            index = onset_posterior(k[:t], n[:t], GENERATOR_PRIOR).restore_index(alpha)
            return t - 1, index if index >= 0 else None
    return None


def _baseline(k: np.ndarray, n: np.ndarray) -> float:
    return float(max(k[:BASELINE].sum(), 0.5) / max(n[:BASELINE].sum(), 1))


def threshold(k: np.ndarray, n: np.ndarray, _alpha: float, sustain: int = 1) -> Result:
    """Alarm when the rate exceeds 2x the first checkpoints' rate (sustain times running)."""
    base = _baseline(k, n)
    run = 0
    for i in range(BASELINE, len(k)):
        if n[i] == 0:
            continue
        run = run + 1 if k[i] / n[i] > 2 * base else 0
        if run >= sustain:
            return i, i - sustain  # restore to the checkpoint before the first exceedance
    return None


def sustained(k: np.ndarray, n: np.ndarray, alpha: float) -> Result:
    return threshold(k, n, alpha, sustain=2)


def cusum(k: np.ndarray, n: np.ndarray, _alpha: float, limit: float = 5.0) -> Result:
    """Bernoulli CUSUM for a doubling of the baseline rate; restore to before its last reset."""
    p0 = _baseline(k, n)
    p1 = min(0.99, 2 * p0)
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    score, last_zero = 0.0, BASELINE - 1
    for i in range(BASELINE, len(k)):
        score = max(0.0, score + k[i] * up + (n[i] - k[i]) * down)
        if score == 0.0:
            last_zero = i
        if score > limit:
            return i, last_zero
    return None


def pelt(k: np.ndarray, n: np.ndarray, _alpha: float) -> Result:
    """ruptures' PELT on the rate series: alarm when the last segment is 2x the first one."""
    import ruptures

    judged = n > 0
    rates = np.where(judged, k / np.maximum(n, 1), 0.0)
    for t in range(BASELINE + 2, len(k) + 1):
        signal = rates[:t][judged[:t]]
        if len(signal) < BASELINE + 2:
            continue
        scale = max(float(np.std(signal[:BASELINE])), 1e-4)
        breaks = ruptures.Pelt(model="l2", min_size=2).fit(signal / scale).predict(pen=10)
        if len(breaks) < 2:
            continue
        first, last = signal[: breaks[0]].mean(), signal[breaks[-2] :].mean()
        if last > 2 * max(first, 1e-6):
            positions = np.nonzero(judged[:t])[0]
            change = int(positions[breaks[-2]])
            return t - 1, change - 1
    return None


def _profile(k: np.ndarray, n: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """At each prefix: the log likelihood ratio of the rise's known shape (rate = p x shape)
    against a constant rate, each at its best base rate p (binomial, wobble ignored)."""
    grid = np.geomspace(1e-5, 0.95 / shape.max(), 400)[:, None]
    rate = np.clip(grid * shape[None, :], 1e-12, 1 - 1e-12)
    rise = np.cumsum(k * np.log(rate) + (n - k) * np.log1p(-rate), axis=1).max(axis=0)
    kk, nn = np.cumsum(k), np.cumsum(n)
    p0 = np.clip(kk / np.maximum(nn, 1), 1e-12, 1 - 1e-12)
    flat = kk * np.log(p0) + (nn - kk) * np.log1p(-p0)
    return np.asarray(np.maximum(rise - flat, 0.0))


def floor(series: list[Series], seed: int, twins: int = 400) -> dict[str, Tally]:
    """The floor: a test that knows when each rise began and its shape (unknowable in
    practice), run at every checkpoint on the counts so far, its bar set so that 2% of the
    family's no-rise twins (drawn the same way, the rate held at the base) ever cross it. No
    detector held to 2% false alarms can miss much less, or alarm much sooner, than this."""
    bars = {}
    for number, family in enumerate(RISING):
        rng = np.random.default_rng([seed, 1000 + number])
        peaks = []
        for _ in range(twins):
            twin = _one(rng, family, null=True)
            peaks.append(_profile(twin.k, twin.n, twin.shape).max())
        bars[family] = float(np.percentile(peaks, 98))
    tallies: dict[str, Tally] = {}
    for s in series:
        if s.onset is None:
            continue
        crossed = np.flatnonzero(_profile(s.k, s.n, s.shape) > bars[s.family])
        result = (int(crossed[0]), s.onset - 1) if len(crossed) else None
        for group in _groups(s):
            tallies.setdefault(group, Tally()).add(s, result)
    return tallies


METHODS: dict[str, tuple[str, Detector]] = {
    "gov": ("gov: the default policies", gov),
    "reference": ("reference: gov's rule, generator's priors", reference),
    "threshold": ("2x threshold", threshold),
    "sustained": ("2x threshold, 2 running", sustained),
    "cusum": ("Bernoulli CUSUM", cusum),
    "pelt": ("ruptures PELT", pelt),
}


# -- run-level families: one run of many environments, scored per run ---------------------------
RUN_QUIET = ("run-none", "run-judge")
RUN_RISING = ("run-shared", "run-single")
RUN_FAMILIES = RUN_QUIET + RUN_RISING


@dataclass(frozen=True)
class Run:
    family: str
    k: np.ndarray  # (environments, checkpoints)
    n: np.ndarray
    version: np.ndarray  # the judge version of each checkpoint ("1", then "2" after a change)
    onset: int | None


def _one_run(rng: np.random.Generator, family: str) -> Run:
    """20 to 40 environments, 30 to 80 checkpoints, 15 to 60 judged episodes per environment
    and checkpoint, base rates 0.5% to 8% (each environment its own), the log-normal wobble,
    5% of cells unjudged. run-none: no change, half of them with a shift of the mix (from some
    checkpoint on, the environments with the higher base rates get 3x the episodes and the
    others a third); run-judge: a new judge version at some checkpoint reports every rate 2x to
    3x higher; run-shared: half or more of the environments rise by 1.6x to 2.5x each, at once
    or over 3 to 10 checkpoints; run-single: one environment rises 3x to 8x."""
    e, t = int(rng.integers(20, 41)), int(rng.integers(30, 81))
    n = rng.integers(15, 61, (e, t))
    base = np.exp(rng.uniform(math.log(0.005), math.log(0.08), e))
    rate = np.repeat(base[:, None], t, axis=1)
    version = np.full(t, "1")
    onset = None
    at = int(rng.integers(max(BASELINE + 3, t // 4), t - 10))
    if family == "run-none" and rng.random() < 0.5:
        high = base > np.median(base)
        n[high, at:] *= 3
        n[~high, at:] = np.maximum(1, n[~high, at:] // 3)
    elif family == "run-judge":
        version[at:] = "2"
        rate[:, at:] *= rng.uniform(2, 3)
    elif family == "run-shared":
        onset = at
        chosen = rng.random(e) < rng.uniform(0.5, 1.0)
        ramp = 1 if rng.random() < 0.5 else int(rng.integers(3, 11))
        steps = np.minimum(1.0, (np.arange(t - at) + 1) / ramp)
        factor = np.exp(rng.uniform(math.log(1.6), math.log(2.5), e))
        rise = 1 + (factor[:, None] - 1) * steps[None, :]
        rate[chosen, at:] *= rise[chosen]
    elif family == "run-single":
        onset = at
        rate[int(rng.integers(e)), at:] *= rng.uniform(3, 8)
    rate = np.clip(rate * np.exp(rng.normal(0, 0.25, (e, t))), 0, 0.95)
    n[rng.random((e, t)) < 0.05] = 0
    return Run(family, rng.binomial(n, rate), n, version, onset)


def generate_runs(count: int, seed: int) -> list[Run]:
    found = []
    for number, family in enumerate(RUN_FAMILIES):
        rng = np.random.default_rng([seed, 500 + number])
        found += [_one_run(rng, family) for _ in range(count)]
    return found


def _run_rows(run: Run) -> list[CountRow]:
    e, t = run.k.shape
    return [
        CountRow(
            "main",
            (i + 1) * 10,
            f"env{j:02d}",
            1,
            "",
            "judge",
            str(run.version[i]),
            int(run.n[j, i]),
            int(run.n[j, i] - run.k[j, i]),
            0,
            int(run.k[j, i]),
            0,
            0,
        )
        for i in range(t)
        for j in range(e)
        if run.n[j, i] > 0
    ]


def _replayed(run: Run, policies: tuple[Policy, ...], alpha: float) -> Result:
    order = [("main", (i + 1) * 10, "registered") for i in range(run.k.shape[1])]
    done = replay(_run_rows(run), order, policies, alpha, first_only=True)
    blocks = [a for a in done.alarms if a.outcome == "block"]
    if not blocks:
        return None
    first = min(blocks, key=lambda a: a.index)
    return first.index, first.restore_index


def run_gov(run: Run, alpha: float) -> Result:
    """The default blocking policies, per-environment and run-wide, replayed over the run."""
    return _replayed(run, _blocking(), alpha)


def run_env(run: Run, alpha: float) -> Result:
    """The default per-environment blocking policies alone (the run-wide one left out)."""
    return _replayed(run, tuple(p for p in _blocking() if not p.run_wide), alpha)


def run_env_alone(run: Run, alpha: float) -> Result:
    """gov's per-environment policies on each environment replayed alone (its prior not shared
    with the run's other environments), the first alarm of any."""
    policies = tuple(p for p in _blocking() if not p.run_wide)
    order = [("main", (i + 1) * 10, "registered") for i in range(run.k.shape[1])]
    rows = _run_rows(run)
    found = []
    for env in sorted({r.environment for r in rows}):
        done = replay(
            [r for r in rows if r.environment == env], order, policies, alpha, first_only=True
        )
        found += [(a.index, a.restore_index) for a in done.alarms if a.outcome == "block"]
    return min(found, key=lambda f: f[0]) if found else None


def _totals_onset(k: np.ndarray, n: np.ndarray, alpha: float) -> Result:
    for t in range(3, len(k) + 1):
        post = onset_posterior(k[:t], n[:t], _TOTALS_ALARM)
        if post.p_rise * post.p_onset_by(t - 2) >= 0.95:
            index = onset_posterior(k[:t], n[:t]).restore_index(alpha)
            return t - 1, index if index >= 0 else None
    return None


_TOTALS_ALARM = OnsetPrior(two_stage=0.0, ramps=(1, 3, 6, 10))


def run_totals_onset(run: Run, alpha: float) -> Result:
    """The single-changepoint model (gov's per-environment one) on the run's totals, judge
    versions pooled."""
    return _totals_onset(run.k.sum(axis=0), run.n.sum(axis=0), alpha)


def run_totals_cusum(run: Run, alpha: float) -> Result:
    """A Bernoulli CUSUM on the run's totals, judge versions pooled."""
    return cusum(run.k.sum(axis=0), run.n.sum(axis=0), alpha)


def run_env_cusum(run: Run, alpha: float) -> Result:
    """A Bernoulli CUSUM on each environment, the first alarm of any."""
    found = [cusum(run.k[j], run.n[j], alpha) for j in range(len(run.k))]
    alarms = [f for f in found if f is not None]
    return min(alarms) if alarms else None


RUN_METHODS: dict[str, tuple[str, Callable[[Run, float], Result]]] = {
    "gov": ("gov: the default policies (per environment and run-wide)", run_gov),
    "gov-env": ("gov's per-environment policies alone", run_env),
    "env-alone": (
        "gov's per-environment policies on each environment alone, first alarm of any",
        run_env_alone,
    ),
    "totals-onset": ("gov's single-changepoint model on the run's totals", run_totals_onset),
    "totals-cusum": ("Bernoulli CUSUM on the run's totals", run_totals_cusum),
    "env-cusum": ("Bernoulli CUSUM on each environment, first alarm of any", run_env_cusum),
}


def score_run(args: tuple[str, Run, float]) -> Result:
    name, run, alpha = args
    return RUN_METHODS[name][1](run, alpha)


def score(args: tuple[str, Series, float]) -> Result:
    name, series, alpha = args
    return METHODS[name][1](series.k, series.n, alpha)


@dataclass
class Tally:
    quiet: int = 0
    false_alarms: int = 0
    rising: int = 0
    early: int = 0  # alarmed before the onset
    missed: int = 0
    dirty: int = 0  # contaminated (or no restore point named)
    caught: int = 0
    delays: list[int] | None = None
    waste: list[int] | None = None

    def add(self, series: Series | Run, result: Result) -> None:
        self.delays = self.delays or []
        self.waste = self.waste or []
        if series.onset is None:
            self.quiet += 1
            self.false_alarms += result is not None
            return
        self.rising += 1
        if result is None:
            self.missed += 1
            return
        alarm, restore = result
        if alarm < series.onset:
            self.early += 1
            return
        self.caught += 1
        self.delays.append(alarm - series.onset)
        if restore is None or restore >= series.onset:
            self.dirty += 1
        else:
            self.waste.append(series.onset - 1 - restore)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50, help="series per family")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--alpha", type=float, default=0.02)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names")
    parser.add_argument(
        "--policies", type=Path, help="a folder of policies for gov's row (default: the bundled)"
    )
    parser.add_argument("--no-floor", action="store_true", help="leave out the floor's row")
    parser.add_argument("--runs", type=int, default=40, help="runs per run-level family (0: none)")
    parser.add_argument(
        "--run-methods", default=",".join(RUN_METHODS), help="comma-separated run-level methods"
    )
    args = parser.parse_args()
    if args.policies is not None:
        POLICIES.append(args.policies.resolve())
    chosen = args.methods.split(",")
    if unknown := [m for m in chosen if m not in METHODS]:
        parser.error(f"unknown method {unknown[0]!r}: one of {', '.join(METHODS)}")
    if "pelt" in chosen and importlib.util.find_spec("ruptures") is None:
        # said before minutes of scoring, not by the pool when the first PELT series comes up
        parser.error("the pelt anchor needs ruptures: python3 -m pip install '.[bench]'")
    series = generate(args.series, args.seed)
    jobs = [(name, s, args.alpha) for name in chosen for s in series]
    tallies, elapsed = _tally(chosen, jobs, score, 4, _groups)
    print(
        f"{args.series} series per family ({len(series)} in all), seed {args.seed}, "
        f"alpha {args.alpha}, {elapsed:.0f} s on {len(chosen)} methods"
    )
    rng = np.random.default_rng(args.seed)
    header = (
        f"{'family':11}{'false alarm':>20}{'early':>6}{'missed':>21}{'delay med':>10}{'p90':>5}"
        f"{'contaminated':>20}{'waste med':>12}{'p90':>5}"
    )
    names = {name: METHODS[name][0] for name in chosen}
    if not args.no_floor:
        tallies["floor"] = floor(series, args.seed)
        names["floor"] = (
            "floor: knows each rise's onset and shape, 2% of no-rise twins cross "
            "(restore: the onset's eve)"
        )
    for name, title in names.items():
        print(f"\n{title}\n{header}")
        for group in (*FAMILIES, "2-3x", "all"):
            t = tallies[name].get(group)
            if t is None:
                continue
            print(_row(group, t, rng))
    if args.runs:
        _run_level(args, rng, header)
    print(
        "\nrates with their 95% Wilson interval; median waste with a 95% bootstrap interval.\n"
        "targets for gov (alpha 0.02): false alarms <= 2% in each quiet family; contaminated\n"
        "<= 2% over all, in no family significantly above; missed <= 10% over all, <= 25% for\n"
        "2-3x rises, <= 15% for early ones; median delay <= 3; median waste <= 3 (or no worse\n"
        "than the reference); short-thin: every rise alarmed and restored clean, delay <= 2."
    )


def _run_level(args: argparse.Namespace, rng: np.random.Generator, header: str) -> None:
    chosen = args.run_methods.split(",")
    if unknown := [m for m in chosen if m not in RUN_METHODS]:
        raise SystemExit(
            f"unknown run-level method {unknown[0]!r}: one of {', '.join(RUN_METHODS)}"
        )
    runs = generate_runs(args.runs, args.seed)
    jobs = [(name, r, args.alpha) for name in chosen for r in runs]
    tallies, elapsed = _tally(chosen, jobs, score_run, 2, lambda r: [r.family, "all"])
    print(
        f"\nrun level: {args.runs} runs per family ({len(runs)} in all), scored per run (an "
        f"alarm of any environment or of the run), {elapsed:.0f} s on {len(chosen)} methods"
    )
    for name in chosen:
        print(f"\n{RUN_METHODS[name][0]}\n{header}")
        for group in (*RUN_FAMILIES, "all"):
            t = tallies[name].get(group)
            if t is not None:
                print(_row(group, t, rng))
    print(
        "\ntargets for gov: no alarm on run-none and run-judge in at least 98% of runs;\n"
        "run-shared alarmed in at least 90%, median delay <= 4; contaminated <= 2%; run-single\n"
        "caught as well as by the per-environment policies alone."
    )


def _tally(
    chosen: list[str],
    jobs: list[Any],
    scorer: Callable[[Any], Result],
    chunk: int,
    groups: Callable[[Any], list[str]],
) -> tuple[dict[str, dict[str, Tally]], float]:
    """Score the jobs on the cores and tally each method's results per group; the time taken."""
    start = time.perf_counter()
    with Pool() as pool:
        outcomes = pool.map(scorer, jobs, chunksize=chunk)
    elapsed = time.perf_counter() - start
    tallies: dict[str, dict[str, Tally]] = {m: {} for m in chosen}
    for (name, item, _), result in zip(jobs, outcomes, strict=True):
        for group in groups(item):
            tallies[name].setdefault(group, Tally()).add(item, result)
    return tallies, elapsed


def _row(group: str, t: Tally, rng: np.random.Generator) -> str:
    return (
        f"{group:11}{_rate(t.false_alarms, t.quiet):>20}{t.early:>6}"
        f"{_rate(t.missed, t.rising):>21}{_q(t.delays, 50):>10}{_q(t.delays, 90):>5}"
        f"{_rate(t.dirty, t.caught):>20}{_median(t.waste or [], rng):>12}{_q(t.waste, 90):>5}"
    )


def _groups(s: Series) -> list[str]:
    groups = [s.family, "all"]
    if s.onset is not None and 2 <= s.factor < 3 and s.family != "short-thin":
        groups.append("2-3x")
    return groups


def _rate(k: int, n: int) -> str:
    if n == 0:
        return "-"
    low, high = wilson(k, n)
    return f"{k / n:.1%} ({low:.1%}-{high:.1%})"


def _median(values: list[int], rng: np.random.Generator) -> str:
    if not values:
        return "-"
    data = np.array(values)
    medians = np.median(rng.choice(data, (2000, len(data))), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return f"{np.median(data):.0f} ({low:.0f}-{high:.0f})"


def _q(values: list[int] | None, q: int) -> str:
    return "-" if not values else f"{np.percentile(values, q):.0f}"


if __name__ == "__main__":
    main()
