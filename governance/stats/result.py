"""What a policy says on a series at a checkpoint (a result), and what results mean for the gate
(an outcome). Plain data, light to import: audit records carry results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..policies import Action, Insufficient, Policy
from .series import SeriesKey

Status = Literal["fired", "clear", "insufficient", "unavailable"]
Outcome = Literal["pass", "warn", "block"]


@dataclass
class Contributor:
    """One environment's part in a run-wide rise: P(it rose with the run), how much it rose if
    it did, and what it adds to the evidence (its expected log Bayes factor, in nats)."""

    environment: str
    environment_version: int
    p_affected: float
    effect: float
    evidence: float


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
    metric: str | None = None  # the metric the policy watches
    # a run-wide policy: the onset it places and the environments that contribute most
    onset: str | None = None
    contributors: list[Contributor] | None = None


def policy_outcome(policy: Policy, results: Sequence[Result]) -> Outcome:
    """What a policy's results mean for the gate: block, warn or pass."""
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


def worse(a: Outcome, b: Outcome) -> Outcome:
    return a if _RANK[a] >= _RANK[b] else b
