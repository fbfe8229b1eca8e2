"""The audit side's on-disk records, as versioned pydantic models with a JSON Schema each.

An audit entry is one line of `audit/trail.jsonl`; a decision (`audit/decisions/`), an override
(`audit/overrides/`) and a rollback (`audit/rollbacks/`) are the documents entries point to.
`schema_version` lets later releases read older files. `gov schema` prints each schema.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import utc_now
from .stats.result import Outcome, Result

AuditKind = Literal[
    "check",
    "promotion",
    "override",
    "flag_raised",
    "flag_acknowledged",
    "flag_resolved",
    "redesign",
    "rollback_recommended",
    "rollback_applied",
    "report_ingested",
    "report_replaced",
    "policy_change",
    "status_change",
    "environment_retired",
    "judge_calibrated",
    "obfuscation_warning",
    "checkpoint_lost",
]
KINDS: tuple[str, ...] = AuditKind.__args__  # type: ignore[attr-defined]


class _Record(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    schema_version: Literal[1] = 1


class AuditBody(_Record):
    """An audit entry without its id: what the id is the hash of."""

    seq: Annotated[int, Field(ge=1)]
    prev: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    kind: AuditKind
    time: str
    actor: str
    subject: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    outcome: str
    reason: str | None = None
    refs: dict[str, Any] | None = None

    def written(self) -> dict[str, Any]:
        """The fields as the trail writes them: `reason` and `refs` only when there are some
        (`inputs` keeps its own None values: the hash covers them)."""
        absent = {k for k in ("reason", "refs") if getattr(self, k) is None}
        return self.model_dump(exclude=absent | {"id"})

    def digest(self) -> str:
        """The entry's id: the sha256 of its canonical JSON without the id."""
        return hashlib.sha256(canonical_json(self.written()).encode()).hexdigest()


class AuditEntry(AuditBody):
    """One entry of the hash-chained trail: its id is the sha256 of the rest of its content,
    which includes the id of the entry before it (`prev`)."""

    id: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    @classmethod
    def seal(cls, body: AuditBody) -> AuditEntry:
        """The entry of `body`, with the id its content hashes to."""
        return cls.model_validate({**body.written(), "id": body.digest()})

    def line(self) -> bytes:
        """The entry's line of the trail: canonical JSON (sorted keys, no spaces)."""
        return (canonical_json({**self.written(), "id": self.id}) + "\n").encode()

    @property
    def environments(self) -> list[str]:
        """The entry's environments: one (`environment`) or several (`environments`)."""
        if "environment" in self.subject:
            return [self.subject["environment"]]
        return [e for e in self.subject.get("environments", "").split(",") if e]


def canonical_json(value: Any) -> str:
    """The JSON the audit trail hashes and writes: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Inputs(BaseModel):
    """Everything a decision read, so the same inputs give the same decision (part of a
    decision, which carries the schema version)."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    checkpoint: str
    registry_state: str  # sha256 of the registry records the decision read
    policies: dict[str, str]  # path -> sha256
    reports: list[str]  # md5s of the reports whose counts were read
    judges: list[str]  # judge@version read

    def digest(self) -> str:
        text = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class Decision(_Record):
    """`gov check` at one checkpoint: every policy's result on every series, and the outcome."""

    checkpoint: str
    outcome: Outcome
    results: list[Result]
    actions: dict[str, list[str]]  # policy -> actions taken (fired policies)
    flagged: list[str]
    inputs: Inputs
    digest: str
    registry_commit: str  # git HEAD when evaluated (for the reader; not part of the digest)
    evaluated: datetime = Field(default_factory=utc_now)
    gating: list[str] = Field(default_factory=list)  # policies whose thin evidence warns/blocks

    @property
    def fired(self) -> list[Result]:
        return [r for r in self.results if r.status == "fired"]


class Override(_Record):
    """A promotion the policies did not allow, made anyway, with who and why."""

    kind: Literal["override"] = "override"
    checkpoint: str
    actor: str
    reason: str
    decision_outcome: Outcome
    decision_digest: str
    fired: list[str]
    time: datetime = Field(default_factory=utc_now)


DEFAULT_ALPHA = 0.02  # the restore point's largest acceptable chance of being contaminated


class RestoreEvidence(BaseModel):
    """One flagged series' onset evidence at the restore point."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    environment: str  # "run": the run-wide model, over every environment
    environment_version: int | None = None
    judge: str  # judge@version
    metric: str = "rationalization_rate"
    p_rise: float
    onset: str | None  # the median onset checkpoint
    onset_interval: tuple[str, str] | None  # 90% credible interval
    p_contaminated: float  # P(onset at or before the restore point | a rise)
    known_clean: bool = True  # False: the restore point is this series' first judged checkpoint
    restore: str | None = None  # the latest safe checkpoint on this series alone
    scope: Literal["environment", "run"] = "environment"
    # run scope: the environments that carry the evidence, with each one's rise
    leading: list[str] | None = None


class Rollback(_Record):
    """A rollback applied: the restore point, the new run forked from it, what it gave up."""

    kind: Literal["rollback"] = "rollback"
    run: str
    restore: str
    new_run: str
    alpha: float
    p_contaminated: float
    checkpoints_lost: int
    steps_lost: int
    redesign: list[str]
    evidence: list[RestoreEvidence]
    set_by: str | None = None  # the metric whose series placed the restore point
    time: datetime = Field(default_factory=utc_now)


# A quarantined checkpoint is held out of promotion by a person, whatever its evidence says:
# `gov check` blocks it too (a CI job gating on the check must not let it through). A release
# reads the last check's evidence alone: a check whose only block was this hold did not block.
QUARANTINE_HOLD = "quarantine-hold"
