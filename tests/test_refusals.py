"""Bad input found trying gov as a new user would: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def _one_line(result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("version", ["../../x", "a\nb", "v 1", "é1", "x" * 101])
def test_a_judge_version_label_is_checked(gov, workspace: Path, tmp_path: Path, version) -> None:
    rubric = tmp_path / "rubric.md"
    rubric.write_text("judge the reasoning\n")
    head = (workspace / "registry").stat().st_mtime_ns
    line = _one_line(
        gov("judge", "add", "j", "--version", version, "--rubric", str(rubric), cwd=workspace)
    )
    assert "judge version" in line and "version label" in line
    assert not (workspace / "registry" / "judges" / "j.yaml").exists()
    assert (workspace / "registry").stat().st_mtime_ns == head


def test_a_span_further_back_than_any_date_means_everything(gov, example_copy: Path) -> None:
    everything = gov("audit", "log", "--format", "json", cwd=example_copy)
    huge = gov("audit", "log", "--since", "99999999d", "--format", "json", cwd=example_copy)
    assert huge.exit_code == 0, huge.stderr
    assert json.loads(huge.stdout) == json.loads(everything.stdout)


def test_a_value_nested_too_deeply_is_a_bad_record(gov, workspace: Path, tmp_path: Path) -> None:
    from test_ingest import _aggregated

    record = _aggregated()
    deep = json.dumps(record)[:-1] + ', "note": ' + "[" * 100_000 + "]" * 100_000 + "}"
    report = tmp_path / "deep.jsonl"
    report.write_text(deep + "\n")
    line = _one_line(gov("ingest", str(report), cwd=workspace))
    assert "deep.jsonl:1" in line and "nested too deeply" in line


@pytest.mark.parametrize("managed", ["audit/trail.jsonl", "registry/counts", "registry"])
def test_gov_s_own_files_are_never_symbolic_links(
    gov, example_copy: Path, tmp_path: Path, managed: str
) -> None:
    real = example_copy / managed
    moved = tmp_path / "moved"
    shutil.move(real, moved)
    real.symlink_to(moved)
    for command in (("status",), ("audit", "verify"), ("check", "main@4000")):
        line = _one_line(gov(*command, cwd=example_copy))
        assert f"{managed} is a symbolic link" in line


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_confidence_that_is_not_a_number_is_refused_in_every_format(
    gov, workspace: Path, tmp_path: Path, value: str
) -> None:
    import duckdb

    fields = (
        "'main' AS run, 100 AS step, 'math' AS environment, 1 AS environment_version, "
        "'cot-monitor' AS judge, '1' AS judge_version, 'e1' AS episode, 'none' AS verdict, "
        f"false AS divergent, '{value}'::DOUBLE AS confidence"
    )
    parquet = tmp_path / "episodes.parquet"
    duckdb.sql(f"COPY (SELECT {fields}) TO '{parquet}' (FORMAT parquet)")
    jsonl = tmp_path / "episodes.jsonl"
    jsonl.write_text(
        '{"run": "main", "step": 100, "environment": "math", "environment_version": 1, '
        '"judge": "cot-monitor", "judge_version": "1", "episode": "e1", "verdict": "none", '
        f'"divergent": false, "confidence": {value}}}\n'
    )
    for report in (parquet, jsonl):
        result = gov("ingest", str(report), cwd=workspace)
        assert result.exit_code == 2, result.stdout
        assert "confidence" in result.stderr and report.name in result.stderr


def test_a_killed_ingest_s_partial_copy_is_removed_by_the_next_command(
    gov, example_copy: Path
) -> None:
    partial = example_copy / "reports" / ".incoming-0123456789ab"
    partial.write_bytes(b"x" * 4096)  # what an ingest killed while copying leaves
    assert gov("status", cwd=example_copy).exit_code == 0
    assert not partial.exists()


def test_a_recommendation_is_recorded_once_per_distinct_input(gov, example_copy: Path) -> None:
    import git

    repo = git.Repo(example_copy)
    first = gov("rollback", "recommend", cwd=example_copy)
    assert first.exit_code == 0, first.stderr
    head = repo.head.commit.hexsha
    trail = (example_copy / "audit" / "trail.jsonl").read_bytes()
    again = gov("rollback", "recommend", cwd=example_copy)
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert repo.head.commit.hexsha == head
    assert (example_copy / "audit" / "trail.jsonl").read_bytes() == trail
    other = gov("rollback", "recommend", "--alpha", "0.05", cwd=example_copy)
    assert other.exit_code == 0 and repo.head.commit.hexsha != head


def test_a_lineage_cycle_is_found_with_nothing_flagged(gov, workspace: Path) -> None:
    import git

    runs = workspace / "registry" / "runs"
    text = (runs / "main.yaml").read_text()
    (runs / "main-r1.yaml").write_text(
        text.replace("id: main", "id: main-r1") + "parent_run: main\nforked_from_step: 0\n"
    )
    (runs / "main.yaml").write_text(text + "parent_run: main-r1\nforked_from_step: 0\n")
    head = git.Repo(workspace).head.commit.hexsha
    line = _one_line(gov("rollback", "recommend", cwd=workspace))
    assert "cycle" in line
    assert git.Repo(workspace).head.commit.hexsha == head


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 40 MB filesystem (tmpfs), mounted for the test and removed after it."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_changes_nothing(gov, small_disk: Path, tmp_path: Path) -> None:
    import os
    import subprocess

    from test_ingest import _aggregated

    from conftest import make_git_repo

    ws = small_disk / "ws"
    make_git_repo(ws)
    assert gov("init", cwd=ws).exit_code == 0
    (ws / "envs" / "math").mkdir(parents=True)
    (ws / "envs" / "math" / "task.txt").write_text("prove it\n")
    (ws / "rubric.md").write_text("judge the reasoning\n")
    (ws / "c.pt").write_bytes(b"weights")
    for command in (
        ("env", "add", "math", "--from", "envs/math"),
        ("judge", "add", "cot-monitor", "--version", "1", "--rubric", "rubric.md"),
        ("run", "add", "main"),
        ("checkpoint", "add", "main@100", "c.pt", "-e", "math=1"),
    ):
        assert gov(*command, cwd=ws).exit_code == 0, command
    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps(_aggregated()) + "\n")

    def state() -> tuple[str, list[str]]:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True)
        files = sorted(
            str(Path(root, name).relative_to(ws))
            for root, _, names in os.walk(ws)
            if ".git" not in Path(root).relative_to(ws).parts
            for name in names
        )
        return head.stdout, files

    before = state()
    free = os.statvfs(small_disk)
    filler = small_disk / "filler"
    with filler.open("wb") as handle:
        handle.truncate(0)
    subprocess.run(
        ["fallocate", "-l", str(free.f_bavail * free.f_frsize - 8192), str(filler)], check=True
    )
    line = _one_line(gov("ingest", str(report), cwd=ws))
    assert "no space left on the device" in line and "nothing was changed" in line
    after = state()
    assert after[0] == before[0]
    assert [f for f in after[1] if f != "filler" and not f.startswith(".gov/")] == [
        f for f in before[1] if not f.startswith(".gov/")
    ]
    filler.unlink()
    assert gov("ingest", str(report), cwd=ws).exit_code == 0  # with space again, it goes through


@pytest.mark.parametrize("tracked", ["weights/a.bin", "weights"])
def test_weights_git_already_tracks_are_refused_as_dvc_refuses_them(
    gov, workspace: Path, tracked: str
) -> None:
    # DVC asks whether git tracks the path (gov answers it with git itself, not by reading the
    # index in Python): a file, or a folder with a tracked file in it, is refused either way.
    import git

    from conftest import snapshot

    (workspace / "weights").mkdir()
    (workspace / "weights" / "a.bin").write_bytes(b"weights committed to git by mistake")
    repo = git.Repo(workspace)
    repo.index.add(["weights/a.bin"])
    repo.index.commit("weights in git")
    before = snapshot(workspace)
    line = _one_line(gov("checkpoint", "add", "main@100", tracked, "-e", "math=1", cwd=workspace))
    assert f"'{tracked}' is already tracked by SCM" in line
    assert snapshot(workspace) == before
