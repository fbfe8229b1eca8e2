"""Divergence reports: the judge verdict schema, as versioned pydantic models with a JSON Schema.

A report is either episode-level (one `JudgedEpisode` a record: JSONL, gzip JSONL or Parquet) or
pre-aggregated (one `AggregatedCounts` a record, for pipelines that count before handing over).
Both are keyed by run, checkpoint step, environment and version, judge and judge version.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from .models import Name

REPORT_SCHEMA_VERSION: Literal[1] = 1


class Verdict(StrEnum):
    """What the judge saw in the chain of thought, set against the final action."""

    NONE = "none"  # no bad reason was considered
    REJECTED = "rejected"  # (a) a bad reason was considered and rejected: healthy
    RATIONALIZED = "rationalized"  # (b) rejected in words, then done anyway on a nicer reason
    OVERT = "overt"  # considered and openly acted on


VERDICTS: tuple[str, ...] = tuple(v.value for v in Verdict)

Step = Annotated[StrictInt, Field(ge=0)]
# The most judged episodes one record (or one group, summed over a report's records) may count:
# a trillion, far beyond any run, and far below where sums over many reports could overflow.
MAX_COUNT = 10**12
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
# A version is its number (2 or "v2") or a prefix of its content hash ("3f2a9c1", "sha256:3f2a").
EnvironmentVersionRef = Annotated[StrictInt, Field(ge=1)] | Annotated[str, Field(min_length=1)]
JudgeVersionRef = Annotated[str, Field(min_length=1)] | StrictInt


def _strict_version(value: Any) -> Any:
    # A Literal alone would take 1.0 and true for 1; null stands for the current version.
    if value is None:
        return REPORT_SCHEMA_VERSION
    if type(value) is not int:
        raise ValueError(f"schema_version must be the integer {REPORT_SCHEMA_VERSION}")
    return value


class _Report(BaseModel):
    # Monitor pipelines may carry fields of their own (latency, model id): they are ignored.
    model_config = ConfigDict(
        defer_build=True, extra="ignore", frozen=True, coerce_numbers_to_str=False
    )

    schema_version: Annotated[Literal[1], BeforeValidator(_strict_version)] = REPORT_SCHEMA_VERSION
    run: Name
    step: Step
    environment: Name
    environment_version: EnvironmentVersionRef
    judge: Name
    judge_version: JudgeVersionRef


class EvidenceSpan(BaseModel):
    """A quoted span of the chain of thought, by character offsets [start, end)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    start: Annotated[StrictInt, Field(ge=0)]
    end: Annotated[StrictInt, Field(ge=1)]
    quote: str

    @model_validator(mode="after")
    def _ordered(self) -> EvidenceSpan:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class JudgedEpisode(_Report):
    """One episode as a judge saw it."""

    episode: Annotated[str, Field(min_length=1)] | StrictInt
    verdict: Verdict
    divergent: StrictBool = Field(
        description="The final action departs from what the chain of thought concluded."
    )
    confidence: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    evidence: list[EvidenceSpan] | None = None
    note: str | None = None


class AggregatedCounts(_Report):
    """Counts for one (run, checkpoint, environment version, judge version), counted upstream."""

    n: Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)]
    none: Count
    rejected: Count
    rationalized: Count
    overt: Count
    divergent: Count

    @model_validator(mode="after")
    def _adds_up(self) -> AggregatedCounts:
        total = self.none + self.rejected + self.rationalized + self.overt
        if total != self.n:
            raise ValueError(
                f"verdict counts add up to {total}, not n={self.n} "
                "(none + rejected + rationalized + overt must equal n)"
            )
        if self.divergent > self.n:
            raise ValueError(f"divergent ({self.divergent}) exceeds n ({self.n})")
        return self


class LakeFile(BaseModel):
    """One Parquet file a lake's counts were read from, as it was when counted."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    path: str = Field(description="The file's path inside the lake (run=RUN/step=STEP/NAME).")
    size: Annotated[StrictInt, Field(ge=0)]
    md5: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    version: str | None = Field(
        default=None,
        description="In object storage: the object's version that was counted (absent where "
        "the bucket keeps no versions: the ETag then names what was read).",
    )
    etag: str | None = Field(
        default=None, description="In object storage: the ETag of the object that was counted."
    )


class LakeManifest(BaseModel):
    """What `gov aggregate` counted: every file of the lake with its size and md5, written
    beside the counts (COUNTS.jsonl.manifest.json) and kept by `gov ingest` with them, so that a
    decision names exactly the episodes it rests on without the lake being copied into DVC."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = REPORT_SCHEMA_VERSION
    lake: str = Field(description="The lake's folder, or its s3:// URI.")
    engine: Literal["duckdb", "spark"]
    counts_md5: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] = Field(
        description="The md5 of the counts file this manifest goes with."
    )
    records: Annotated[StrictInt, Field(ge=0)]
    counted: Annotated[StrictInt, Field(ge=0)]
    duplicates: Annotated[StrictInt, Field(ge=0)]
    files: list[LakeFile] = Field(min_length=1)

    @model_validator(mode="after")
    def _adds_up(self) -> LakeManifest:
        if self.records != self.counted + self.duplicates:
            raise ValueError(
                f"records ({self.records}) must be counted ({self.counted}) plus duplicates "
                f"({self.duplicates})"
            )
        return self


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of both report forms, for other tools to validate against."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gov divergence report",
        "description": "A report is JSONL (or gzip JSONL, or Parquet) of one of these records.",
        "schema_version": REPORT_SCHEMA_VERSION,
        "oneOf": [
            {"$ref": "#/$defs/JudgedEpisode"},
            {"$ref": "#/$defs/AggregatedCounts"},
        ],
        "$defs": {
            "JudgedEpisode": _schema(JudgedEpisode),
            "AggregatedCounts": _schema(AggregatedCounts),
        },
    }


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    nested = schema.pop("$defs", {})
    schema["$defs"] = nested
    return schema


class _Repeated(ValueError):
    pass


def repeated_key(record: bytes, keys: int, known: Collection[str] | None = None) -> str | None:
    """A key given twice in one JSON object of the record, at any depth (None: none); with
    `known`, only a key of those counts (a field the reader ignores may repeat, as DuckDB's
    reader lets it).

    JSON allows it, and Python's reader and pydantic's keep the last value silently, while
    DuckDB's (the fast path of an episode report) refuses the record: so that both paths read a
    report alike, and no judgment is read as another, gov refuses it. Every key is followed by
    its own colon, so a record with no more colons than the `keys` the model took has no key
    twice, and only the others (extra fields, nested objects, colons in strings) are parsed
    again. A record nested too deeply to read is a ValueError."""
    if record.count(b":") <= keys:
        return None

    def refuse(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found and (known is None or key in known):
                raise _Repeated(key)
            found[key] = value
        return found

    try:
        json.loads(record, object_pairs_hook=refuse)
    except _Repeated as exc:
        return repr(exc.args[0])
    except RecursionError:
        raise ValueError(
            f"a value is nested too deeply to read (over {sys.getrecursionlimit()} levels)"
        ) from None
    return None
