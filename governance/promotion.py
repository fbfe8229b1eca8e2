"""Promotion: only after a passing check of the very same inputs, or as a recorded override."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from . import audit
from .check import decide, find_recorded
from .errors import GovError
from .models import CheckpointStatus, utc_now
from .registry import Registry, parse_checkpoint_ref


class Blocked(GovError):
    """The policies block this checkpoint's promotion."""

    exit_code = 1


@dataclass(frozen=True)
class Promotion:
    checkpoint: str
    outcome: str  # the decision the promotion rests on
    digest: str
    override: str | None  # the reason, when forced
    commit: str | None


def promote(registry: Registry, ref: str, *, override_reason: str | None = None) -> Promotion:
    """Promote RUN@STEP. Without an override, the policies evaluated now must pass (or only
    warn) and that very evaluation must have been recorded by `gov check`."""
    run, step = parse_checkpoint_ref(ref)
    current = registry.checkpoint(run, step)
    if current.status == CheckpointStatus.PROMOTED:
        raise GovError(f"checkpoint {ref} is already promoted")
    if current.status == CheckpointStatus.QUARANTINED and override_reason is None:
        raise Blocked(f"checkpoint {ref} is quarantined: only --override --reason can promote it")
    decision = decide(registry, ref)
    if override_reason is not None and not override_reason.strip():
        raise GovError("--override needs --reason: say why the policies are overruled")
    if override_reason is None:
        if decision.outcome == "block":
            fired = ", ".join(sorted({r.policy for r in decision.fired})) or "insufficient evidence"
            raise Blocked(
                f"checkpoint {ref} is blocked ({fired}): see `gov check {ref}`; only "
                "--override --reason TEXT can promote it, and that is recorded"
            )
        if not find_recorded(registry, decision):
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
            inputs=asdict(decision.inputs),
            reason=override_reason,
            refs={"decision_outcome": decision.outcome, "digest": decision.digest},
        )
        if override_reason is not None:
            record = {
                "kind": "override",
                "checkpoint": ref,
                "actor": audit.actor_of(ws),
                "reason": override_reason,
                "decision_outcome": decision.outcome,
                "decision_digest": decision.digest,
                "fired": sorted({r.policy for r in decision.fired}),
                "time": utc_now().isoformat(),
            }
            path = ws.audit / "overrides" / f"{run}@{step}.{decision.digest[:16]}.json"
            change.write(path, (json.dumps(record, indent=2) + "\n").encode())
            change.body = f"Override by {record['actor']}: {override_reason}"
        else:
            change.body = f"Check {decision.outcome}, inputs {decision.digest}"
    return Promotion(ref, decision.outcome, decision.digest, override_reason, change.sha)
