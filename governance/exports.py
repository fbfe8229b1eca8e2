"""Files for DVC's own views of a run: `dvc metrics show/diff` figures of a decision and a
recommendation, and one CSV per series for `dvc plots show`.

These are a pipeline's outputs (git-ignored, rebuilt by `dvc repro`), not registry state: each is
written whole or not at all, by this module only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import Decision
from .rollback import Recommendation
from .stats.series import Series
from .storage import atomic_write


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(figures, indent=2) + "\n").encode())


def check_metrics(path: Path, decision: Decision | None) -> None:
    """A decision's figures; `None` when the run had no checkpoint to check yet."""
    if decision is None:
        _write_json(path, {"checkpoint": None, "outcome": "none"})
        return
    _write_json(
        path,
        {
            "checkpoint": decision.checkpoint,
            "outcome": decision.outcome,
            "blocked": int(decision.outcome == "block"),
            "fired": len(decision.fired),
            "flagged": len(decision.flagged),
        },
    )


def restore_metrics(path: Path, rec: Recommendation) -> None:
    _write_json(
        path,
        {
            "restore": rec.restore,
            "p_contaminated": rec.p_contaminated if rec.known_clean else None,  # unmeasured
            "alpha": rec.alpha,
            "checkpoints_lost": rec.checkpoints_lost,
            "steps_lost": rec.steps_lost,
            "flagged": len(rec.environments),
        },
    )


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def plot_name(s: Series) -> str:
    """One file per series: the metric, the environment version and the judge version."""
    return f"{s.metric}-{s.environment}-v{s.environment_version}-{s.judge}-{s.judge_version}.csv"


def plots(folder: Path, found: Sequence[Series]) -> list[Path]:
    """One CSV (step, rate, low, high) per series in `folder`, for `dvc plots`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for s in found:
        lines = ["step,rate,low,high"] + [
            f"{p.step},{_number(p.value)},{_number(p.low)},{_number(p.high)}" for p in s.points
        ]
        path = folder / plot_name(s)
        atomic_write(path, ("\n".join(lines) + "\n").encode())
        written.append(path)
    return written
