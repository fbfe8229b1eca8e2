"""The registry's on-disk records, as versioned pydantic models.

Every file under `registry/` is one of these models serialised as YAML (runs, environments, judges)
or as one JSON line per checkpoint. `schema_version` lets later releases migrate old files.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationInfo

SCHEMA_VERSION: Literal[1] = 1

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "1-100 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


@functools.lru_cache(maxsize=4096)
def name_problem(value: str) -> str | None:
    """Why `value` cannot be a run, environment or judge name, or None if it can. Remembered:
    a registry of 2,000 checkpoints names its 20-odd environments 40,000 times."""
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if ".." in value:
        return "contains '..'"
    if not _NAME.fullmatch(value):
        return f"must be {NAME_RULE}"
    return None


def quoted(value: str, most: int = 60) -> str:
    """A value the user gave, quoted for a message: a long one cut, its length said, so that one
    line stays one line."""
    if len(value) <= most:
        return repr(value)
    return f"{value[:most]!r}... ({len(value):,} characters)"


def _check_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(f"{quoted(value)} {problem}")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
ContentHash = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Md5 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}(\.dir)?$")]


def utc_now() -> datetime:
    # Second resolution keeps the files readable and the diffs quiet.
    return datetime.now(UTC).replace(microsecond=0)


class Record(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


class CheckpointStatus(StrEnum):
    REGISTERED = "registered"
    PROMOTED = "promoted"
    BLOCKED = "blocked"
    QUARANTINED = "quarantined"


class EnvironmentStatus(StrEnum):
    ACTIVE = "active"
    FLAGGED = "flagged"
    IN_REDESIGN = "in_redesign"
    RETIRED = "retired"


class Run(Record):
    """One training run. A restart forks a new run from a checkpoint of its parent."""

    id: Name
    created: datetime
    parent_run: Name | None = None
    forked_from_step: Annotated[int, Field(ge=0)] | None = None
    note: str | None = None


class ExposureEntry(BaseModel):
    """One environment version in a checkpoint's training mixture, with its weight."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    environment: Name
    version: Annotated[int, Field(ge=1)]
    hash: ContentHash
    weight: Annotated[float, Field(gt=0, le=1)]


def _whole_mixture(
    exposure: tuple[ExposureEntry, ...], info: ValidationInfo
) -> tuple[ExposureEntry, ...]:
    """A training mixture names at least one environment, each once (as `gov checkpoint add`
    writes it; a hand edit may not). Skipped where a registry read validates the mixture on its
    own (context `mixture_apart`)."""
    if info.context and info.context.get("mixture_apart"):
        return exposure
    if not exposure:
        raise ValueError("a checkpoint was trained on at least one environment")
    twice = _first_twice(e.environment for e in exposure)
    if twice is not None:
        raise ValueError(f"environment {twice!r} is named twice")
    return exposure


def _first_twice(values: Iterable[str]) -> str | None:
    """The first value seen a second time (None: each once); one pass, for 300 environments
    a line."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


Mixture = Annotated[tuple[ExposureEntry, ...], AfterValidator(_whole_mixture)]


class Checkpoint(Record):
    """A saved checkpoint: its artifact in DVC and what it was trained on since the previous one."""

    run: Name
    step: Annotated[StrictInt, Field(ge=0)]
    artifact: str
    artifact_md5: Md5
    artifact_size: Annotated[int, Field(ge=0)] | None = None
    # An artifact in object storage (s3://): pinned by each object's version, or by its ETag
    # alone (a bucket without versioning: a delete loses it). None: in DVC.
    artifact_pinned: Literal["version", "etag"] | None = None
    created: datetime
    exposure: Mixture
    status: CheckpointStatus = CheckpointStatus.REGISTERED
    note: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.run}@{self.step}"


class EnvironmentVersion(BaseModel):
    """A version is the content hash of the environment and its scoring; a redesign adds one."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    number: Annotated[int, Field(ge=1)]
    hash: ContentHash
    created: datetime
    note: str | None = None


def _numbered(versions: tuple[EnvironmentVersion, ...]) -> tuple[EnvironmentVersion, ...]:
    """An environment's versions are 1, 2, 3, ... in order, as gov numbers them: a hand edit
    that repeats or skips one would make `ENV@2` ambiguous or a checkpoint's version unknown."""
    for place, version in enumerate(versions, 1):
        if version.number != place:
            raise ValueError(
                f"version {place} is numbered {version.number} (versions are 1, 2, 3, ... in order)"
            )
    return versions


def _distinct_labels(versions: tuple[JudgeVersion, ...]) -> tuple[JudgeVersion, ...]:
    twice = _first_twice(v.version for v in versions)
    if twice is not None:
        raise ValueError(f"version {twice!r} is registered twice")
    return versions


class Environment(Record):
    id: Name
    description: str | None = None
    status: EnvironmentStatus = EnvironmentStatus.ACTIVE
    versions: Annotated[tuple[EnvironmentVersion, ...], AfterValidator(_numbered)] = Field(
        min_length=1
    )

    @property
    def current(self) -> EnvironmentVersion:
        return self.versions[-1]


class JudgeVersion(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    version: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.+-]*$")]
    rubric_hash: ContentHash
    created: datetime
    note: str | None = None
    # what the judge sees: the task, CoT and action (full), or the task and action only (action);
    # an action-view version is the second channel of the obfuscation watch (None: full)
    view: Literal["full", "action"] | None = None


class Judge(Record):
    id: Name
    description: str | None = None
    versions: Annotated[tuple[JudgeVersion, ...], AfterValidator(_distinct_labels)] = Field(
        min_length=1
    )

    @property
    def current(self) -> JudgeVersion:
        return self.versions[-1]


class WorkspaceConfig(Record):
    """`gov.yaml`: marks the workspace root."""

    created: datetime
    registry_dir: Literal["registry"] = "registry"
    policies_dir: Literal["policies"] = "policies"
    audit_dir: Literal["audit"] = "audit"


class FlagEvidence(BaseModel):
    """A fired result that raised a flag: the policy, its metric and the series it fired on."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    policy: str
    series: str  # the series' label
    reason: str
    # Where the rollback places its restore point (absent in flags of older releases).
    metric: str | None = None
    environment_version: int | None = None
    judge: str | None = None
    judge_version: str | None = None
    raises_flag: bool | None = None  # its policy flags environments (others only add evidence)


class Flag(Record):
    """An environment flagged for redesign by a policy, until a new version resolves it."""

    environment: Name
    version: Annotated[int, Field(ge=1)]  # the version that was flagged
    status: Literal["open", "acknowledged", "resolved"] = "open"
    checkpoint: str
    decision: str  # the inputs digest of the decision that raised it
    raised: datetime
    evidence: tuple[FlagEvidence, ...]
    acknowledged_by: str | None = None
    acknowledged_reason: str | None = None
    resolved_by_version: int | None = None
