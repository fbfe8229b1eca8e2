"""The JSON Schemas of gov's file formats, by name, for other tools to validate against."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .counts import ReportEntry
from .errors import GovError
from .judgments import LakeManifest, report_json_schema
from .models import Checkpoint, Environment, Flag, Judge, Run, WorkspaceConfig
from .policies import Policy
from .records import AuditEntry, Decision, Override, Rollback

_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "run": (Run, "registry/runs/<run>.yaml"),
    "checkpoint": (Checkpoint, "a line of registry/checkpoints/<run>.jsonl"),
    "environment": (Environment, "registry/environments/<env>.yaml"),
    "judge": (Judge, "registry/judges/<judge>.yaml"),
    "flag": (Flag, "registry/flags/<env>.yaml"),
    "ledger": (ReportEntry, "a line of registry/reports.jsonl"),
    "lake-manifest": (
        LakeManifest,
        "COUNTS.jsonl.manifest.json, kept as registry/lakes/<md5>.json",
    ),
    "policy": (Policy, "policies/<name>.yaml"),
    "audit-entry": (AuditEntry, "a line of audit/trail.jsonl"),
    "decision": (Decision, "audit/decisions/<run>@<step>.<digest>.json"),
    "override": (Override, "audit/overrides/<run>@<step>.<digest>.json"),
    "rollback": (Rollback, "audit/rollbacks/<run>.json"),
    "workspace": (WorkspaceConfig, "gov.yaml"),
}


def _model_schema(model: type[BaseModel], where: str) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        body = model.model_json_schema()
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "description": f"{where}: {body.get('description', model.__name__)}",
            **{k: v for k, v in body.items() if k != "description"},
        }

    return build


_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "report": report_json_schema,
    **{name: _model_schema(model, where) for name, (model, where) in _MODELS.items()},
}


def schemas() -> dict[str, str]:
    """Each schema's name and the file it describes."""
    return {"report": "a judge's divergence report (JSONL, gzip JSONL or Parquet)"} | {
        name: where for name, (_, where) in _MODELS.items()
    }


def schema(name: str) -> dict[str, Any]:
    if name not in _BUILDERS:
        raise GovError(f"no schema named {name!r}: one of {', '.join(_BUILDERS)}")
    return _BUILDERS[name]()
