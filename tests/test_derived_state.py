"""Derived state in .gov/ (the counts table, the trail's index) is a cache, never a second source
of truth: a fresh clone, which has none of it, gives the same answers as a long-lived workspace
whose caches were built and extended report by report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import git

from governance import api


def _counts_line(env: str, step: int, n: int, bad: int) -> dict[str, Any]:
    return {
        "run": "main",
        "step": step,
        "environment": env,
        "environment_version": 1,
        "judge": "cot-monitor",
        "judge_version": "2026.10",
        "n": n,
        "none": n - bad,
        "rejected": 0,
        "rationalized": bad,
        "overt": 0,
        "divergent": 0,
    }


def _answers(gov, root: Path) -> dict[str, Any]:
    metrics = gov("metrics", "--format", "json", cwd=root)
    assert metrics.exit_code == 0, metrics.stderr
    restore = gov("rollback", "recommend", "--format", "json", cwd=root)
    assert restore.exit_code in (0, 1), restore.stderr
    recommended = json.loads(restore.stdout)
    return {
        "metrics": json.loads(metrics.stdout),
        "restore": recommended.get("restore"),
        "flagged": recommended.get("flagged"),
    }


def test_a_fresh_clone_answers_as_the_long_lived_workspace(
    gov, example_copy: Path, tmp_path: Path
) -> None:
    root = example_copy
    _answers(gov, root)  # the long-lived workspace builds its caches
    checkpoints = api.checkpoint_list(root, run="main")
    last = max(c.step for c in checkpoints)
    envs = sorted({e.environment for e in checkpoints[-1].exposure})
    for i in range(1, 3):  # two more checkpoints land, each with its report: caches extended
        step = last + 250 * i
        artifact = root / "ckpt" / f"extra-{step}.pt"
        artifact.parent.mkdir(exist_ok=True)
        artifact.write_bytes(b"weights %d" % step)
        api.checkpoint_add(root, f"main@{step}", str(artifact), {envs[0]: 1.0})
        report = tmp_path / f"r{step}.jsonl"
        report.write_text(
            "".join(json.dumps(_counts_line(e, step, 200, 2 + i)) + "\n" for e in envs)
        )
        assert gov("ingest", str(report), cwd=root).exit_code == 0
        long_lived = _answers(gov, root)
    assert (root / ".gov" / "index" / "table.json").is_file()

    clone = tmp_path / "clone"
    git.Repo.clone_from(root, clone)
    shutil.copytree(root / ".dvc" / "cache", clone / ".dvc" / "cache", dirs_exist_ok=True)
    assert not (clone / ".gov" / "index").exists()
    fresh = _answers(gov, clone)
    assert fresh == long_lived
    # and the long-lived workspace's cache, dropped, is rebuilt to the same answers
    shutil.rmtree(root / ".gov" / "index")
    assert _answers(gov, root) == long_lived
