"""Derived state in .gov/ (the counts table, the trail's index) is a cache, never a second source
of truth: a fresh clone, which has none of it, gives the same answers as a long-lived workspace
whose caches were built and extended report by report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import counts_line
from governance import api


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
            "".join(json.dumps(counts_line(e, step, 200, 2 + i, "2026.10")) + "\n" for e in envs)
        )
        assert gov("ingest", str(report), cwd=root).exit_code == 0
        long_lived = _answers(gov, root)
        # which reports hold each checkpoint's counts (a decision lists them): as the counts
        # files in the registry say, read here with the csv module
        from governance import counts, open_registry

        held: dict[tuple[str, int], set[str]] = {}
        for path in (root / "registry" / "counts").glob("*.csv"):
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    held.setdefault((row["run"], int(row["step"])), set()).add(path.stem)
        ws = open_registry(root).ws
        for checkpoint in [("main", step), ("main", last), ("main", 250)]:
            assert counts.reports_for(ws, {checkpoint}) == sorted(held.get(checkpoint, set()))
    assert (root / ".gov" / "index" / "table.json").is_file()

    clone = tmp_path / "clone"
    git.Repo.clone_from(root, clone)
    shutil.copytree(root / ".dvc" / "cache", clone / ".dvc" / "cache", dirs_exist_ok=True)
    assert not (clone / ".gov" / "index").exists()
    fresh = _answers(gov, clone)
    assert fresh == long_lived
    # the clone's reads built caches, and left no untracked file behind
    assert (clone / ".gov" / "index" / "records.pickle").is_file()
    assert git.Repo(clone).git.status("--porcelain") == ""
    # an append to the counts table's column files cut short leaves bytes after the rows its
    # record names, never read; a column file cut short is rebuilt from the counts files
    columns = sorted((root / ".gov" / "index").glob("table.*.i64"))
    assert len(columns) == 8
    for column in columns:
        with column.open("ab") as handle:
            handle.write(b"\x07" * 12)
    assert _answers(gov, root) == long_lived
    columns[3].write_bytes(columns[3].read_bytes()[:40])
    assert _answers(gov, root) == long_lived
    # and the long-lived workspace's cache, dropped, is rebuilt to the same answers
    shutil.rmtree(root / ".gov" / "index")
    assert _answers(gov, root) == long_lived


def test_posteriors_kept_on_disk_are_exactly_the_ones_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A posterior found in .gov/index/posteriors is the one the process would compute (every
    number equal), and a damaged file there is computed again, never believed."""
    import numpy as np

    from governance.memo import DiskMemo
    from governance.stats import evaluate
    from governance.stats.onset import OnsetPrior
    from governance.stats.series import Matrix

    rng = np.random.default_rng(5)
    ns = rng.integers(50, 200, size=(4, 30))
    ks = rng.binomial(ns, 0.02)
    ks[1, 20:] = rng.binomial(ns[1, 20:], 0.2)  # one environment rises
    order = [("main", i + 1, "registered") for i in range(30)]
    matrix = Matrix(order, [("a", 1), ("b", 1), ("c", 1), ("d", 1)], ks, ns, 0)

    def fresh() -> tuple[Any, Any]:
        evaluate._RUNS.clear()
        evaluate._onset.cache_clear()
        run = evaluate.run_posterior(matrix)
        one = evaluate._onset(tuple(ks[1].tolist()), tuple(ns[1].tolist()), OnsetPrior())
        return run, one

    monkeypatch.setattr(evaluate, "MEMO", None)
    computed = fresh()
    folder = tmp_path / "posteriors"
    monkeypatch.setattr(evaluate, "MEMO", DiskMemo(folder))
    fresh()  # computed again, and kept
    assert len(list(folder.glob("*/*.json"))) == 2
    found = fresh()  # found on disk
    for a, b in zip(computed, found, strict=True):
        assert a.p_rise == b.p_rise and np.array_equal(a.onset, b.onset)
    assert computed[0].contributions == found[0].contributions
    assert computed[0].share == found[0].share and computed[1].p_two_stage == found[1].p_two_stage
    for path in folder.glob("*/*.json"):
        path.write_text('{"p_rise": 0.999}')  # damaged: a key missing
    damaged = fresh()
    assert damaged[0].p_rise == computed[0].p_rise and damaged[1].p_rise == computed[1].p_rise
    # Edited in place, a record that reads whole is not believed either: its seal is broken.
    memo = DiskMemo(folder)
    for path in folder.glob("*/*.json"):
        record = json.loads(memo.get(path.stem) or b"")
        path.write_text(path.read_text().replace(str(record["p_rise"]), "0.5"))
        assert memo.get(path.stem) is None
    assert fresh()[1].p_rise == computed[1].p_rise
    # Kept by a gov whose model differed (here: told apart by a record that is kept whole but
    # is not what this model computes): an upgrade never reads an older model's posteriors.
    for path in folder.glob("*/*.json"):
        record = json.loads(memo.get(path.stem) or b"")
        memo.put(path.stem, json.dumps({**record, "p_rise": 0.5}).encode())
    assert fresh()[1].p_rise == 0.5  # the same model: the kept record is what is read
    monkeypatch.setattr(evaluate, "model_digest", lambda: b"another model")
    upgraded = fresh()
    assert upgraded[0].p_rise == computed[0].p_rise and upgraded[1].p_rise == computed[1].p_rise


def test_kept_registry_records_follow_their_files(gov, workspace: Path) -> None:
    """A registry file parsed by an earlier process is used only while its bytes are the same: an
    edit is read, a broken file is named, and a damaged cache is ignored."""
    from governance import kept, registry

    def fresh_process_show() -> Any:
        registry._NAMED_SEEN.clear()
        kept._OPEN.clear()
        shown = gov("env", "show", "math", "--format", "json", cwd=workspace)
        for records in kept._OPEN.values():  # what the process's exit writes
            records.save()
        return shown

    first = fresh_process_show()
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "active"
    assert (workspace / ".gov" / "index" / kept.FILE).is_file()
    path = workspace / "registry" / "environments" / "math.yaml"
    path.write_text(path.read_text().replace("status: active", "status: retired"))
    assert json.loads(fresh_process_show().stdout)["status"] == "retired"
    path.write_text(path.read_text().replace("status: retired", "status: [retired"))
    broken = fresh_process_show()
    assert broken.exit_code == 2 and "registry/environments/math.yaml:" in broken.stderr
    path.write_text(path.read_text().replace("status: [retired", "status: active"))
    (workspace / ".gov" / "index" / kept.FILE).write_bytes(b"not a pickle")
    assert json.loads(fresh_process_show().stdout)["status"] == "active"


def test_kept_records_are_not_written_into_a_deleted_workspace(gov, workspace: Path) -> None:
    """The cache is written when the process ends; a workspace deleted meanwhile (a temporary
    one, by the same process) is not made again to hold it."""
    import shutil

    from governance import kept, registry

    registry._NAMED_SEEN.clear()
    kept._OPEN.clear()
    assert gov("env", "show", "math", cwd=workspace).exit_code == 0
    pending = [records for records in kept._OPEN.values() if records.dirty]
    assert pending
    shutil.rmtree(workspace)
    for records in pending:
        records.save()
    assert not workspace.exists()


def test_a_cache_damaged_or_edited_in_place_is_never_read_as_an_answer(
    gov, example_copy: Path
) -> None:
    # A cache file of the right size and shape but other contents was read as the truth: the
    # rationalization column zeroed, or every kept posterior's P(rise) set to 0, turned the
    # example's block into a pass (and let the checkpoint be promoted).
    import re

    root = example_copy
    args = ("check", "main@12000", "--dry-run", "--format", "json")
    before = gov(*args, cwd=root)
    assert before.exit_code == 1, before.stderr
    index = root / ".gov" / "index"
    column = index / "table.rationalized.i64"
    column.write_bytes(bytes(column.stat().st_size))
    kept = sorted((index / "posteriors").glob("*/*.json"))
    assert kept
    for path in kept:
        path.write_bytes(re.sub(rb'"p_rise": ?[-0-9.e]+', b'"p_rise": 0.0', path.read_bytes()))
    for parquet in index.glob("counts.*.parquet"):  # the summed counts the columns come from
        parquet.write_bytes(parquet.read_bytes()[:-1] + b"\0")
    records = index / "records.pickle"
    records.write_bytes(records.read_bytes()[:-1] + b"\0")
    after = gov(*args, cwd=root)
    assert after.exit_code == 1, after.stderr
    assert json.loads(after.stdout)["outcome"] == json.loads(before.stdout)["outcome"] == "block"
    assert _answers(gov, root) == _answers(gov, root)
