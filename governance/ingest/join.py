"""Joining a report's keys with the registry: each distinct key resolved once, to its group of
counts or to why there is none (an unknown run, checkpoint, environment or judge version)."""

from __future__ import annotations

from typing import Any

from ..counts import (
    Group,
)
from ..errors import NotFound
from ..judgments import AggregatedCounts, JudgedEpisode
from ..registry import Registry, version_number


class Join:
    """Resolves report keys against the registry, once per distinct key."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._groups: dict[tuple[Any, ...], Group | str] = {}
        self._checkpoints: dict[str, set[int]] = {}

    def of(self, record: JudgedEpisode | AggregatedCounts) -> Group | str:
        """The registry's group for a validated record's keys, or why there is none."""
        return self.group(
            record.run,
            record.step,
            record.environment,
            record.environment_version,
            record.judge,
            record.judge_version,
        )

    def group(
        self, run: str, step: int, env: str, env_version: int | str, judge: str, jversion: str | int
    ) -> Group | str:
        """The registry's group for these keys, or why there is none."""
        key = (run, step, env, env_version, judge, jversion)
        if key not in self._groups:
            self._groups[key] = self._resolve(*key)
        return self._groups[key]

    def _resolve(
        self, run: str, step: int, env: str, env_version: int | str, judge: str, jversion: str | int
    ) -> Group | str:
        reg = self.registry
        try:
            if run not in self._checkpoints:
                self._checkpoints[run] = {c.step for c in reg.checkpoints(run)}
            if step not in self._checkpoints[run]:
                return f"checkpoint {run}@{step} is not registered"
            environment = reg.environment(env)
            ref = str(env_version) if isinstance(env_version, int) else env_version
            version = reg.environment_version(environment, ref)
            judge_record = reg.judge(judge)
            if not any(v.version == str(jversion) for v in judge_record.versions):
                known = ", ".join(v.version for v in judge_record.versions)
                return f"judge {judge!r} has no version {str(jversion)!r} (known: {known})"
        except NotFound as exc:
            return exc.message.split(":")[0] if "is not registered" in exc.message else exc.message
        return Group(run, step, env, version.number, version.hash, judge, str(jversion))


class FreeJoin:
    """Report keys taken as they are, without a registry (a backtest of exported counts): an
    environment version must then be its number (`2`, `"2"` or `"v2"`, as a registry reads
    them), since no registry resolves a hash prefix."""

    def of(self, record: JudgedEpisode | AggregatedCounts) -> Group | str:
        version = record.environment_version
        if not isinstance(version, int):
            number = version_number(version)
            if not number:  # a hash prefix, or version 0
                return (
                    f"environment_version {version!r}: without a workspace a version is its "
                    'number (2, or "v2"), not a hash'
                )
            version = number
        return Group(
            record.run,
            record.step,
            record.environment,
            version,
            "",
            record.judge,
            str(record.judge_version),
        )
