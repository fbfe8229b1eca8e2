"""gov ingest: whole-file validation, the registry join, counts, content-addressed storage."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import git
import pytest

from conftest import snapshot
from governance import counts as count_store
from governance import open_registry
from governance.counts import ledger


def counts(ws: Any) -> list[dict[str, Any]]:
    return [asdict(r) for r in count_store.rows(ws)]


ROOT = Path(__file__).resolve().parent.parent


def episode(step: int = 100, i: int = 0, verdict: str = "none", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "run": "main",
        "step": step,
        "environment": "math",
        "environment_version": 1,
        "episode": f"ep-{step}-{i}",
        "judge": "cot-monitor",
        "judge_version": "1",
        "verdict": verdict,
        "divergent": False,
    }
    record.update(extra)
    return record


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def reports(registry, workspace: Path, artifact, tmp_path: Path) -> Path:
    """A workspace whose run has checkpoints at steps 100 and 200; returns a folder for reports."""
    for step in (100, 200):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), {"math": 1.0})
    folder = tmp_path / "incoming"
    folder.mkdir()
    return folder


VERDICT_MIX = ["none"] * 6 + ["rejected"] * 2 + ["rationalized", "overt"]


def mixed(step: int, count: int) -> list[dict[str, Any]]:
    return [
        episode(step, i, VERDICT_MIX[i % 10], divergent=i % 7 == 0, confidence=0.5)
        for i in range(count)
    ]


def test_ingest_counts_stores_and_commits(gov, workspace: Path, reports: Path) -> None:
    records = mixed(100, 40) + mixed(200, 30)
    path = write_jsonl(reports / "batch.jsonl", records)
    head = git.Repo(workspace).head.commit.hexsha

    result = gov("ingest", str(path), cwd=workspace)
    assert result.exit_code == 0, result.stderr
    assert "70 judgments counted in 2 groups" in result.stdout

    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    [entry] = ledger(open_registry(workspace).ws)
    assert (entry.md5, entry.records, entry.counted, entry.kind) == (md5, 70, 70, "episodes")
    stored = workspace / entry.path
    assert stored.read_bytes() == path.read_bytes()
    assert (workspace / (entry.path + ".dvc")).is_file()

    repo = git.Repo(workspace)
    commit = repo.head.commit
    assert commit.parents[0].hexsha == head
    assert commit.message.startswith("gov: ingest 1 report (70 judgments)")
    assert f"registry/counts/{md5}.csv" in commit.stats.files
    assert entry.path not in commit.stats.files  # the data is DVC's; git keeps its .dvc file
    assert repo.git.status("--porcelain") == ""

    by_step = {r["step"]: r for r in counts(open_registry(workspace).ws)}
    for step, count in ((100, 40), (200, 30)):
        expected = Counter(VERDICT_MIX[i % 10] for i in range(count))
        row = by_step[step]
        assert row["n"] == count
        assert {v: row[v] for v in expected} == dict(expected)
        assert row["divergent"] == sum(1 for i in range(count) if i % 7 == 0)


def test_formats_gzip_parquet_and_aggregated(gov, workspace: Path, reports: Path) -> None:
    gz = reports / "a.jsonl.gz"
    with gzip.open(gz, "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in mixed(100, 20))
    parquet = reports / "b.parquet"
    source = write_jsonl(reports / "b.jsonl", mixed(200, 10))
    duckdb.execute(
        f"COPY (SELECT * FROM read_json('{source}', format='newline_delimited')) "
        f"TO '{parquet}' (FORMAT parquet)"
    )
    aggregated = write_jsonl(
        reports / "c.jsonl",
        [
            {
                "run": "main",
                "step": 200,
                "environment": "code-tests",
                "environment_version": 1,
                "judge": "cot-monitor",
                "judge_version": "1",
                "n": 50,
                "none": 40,
                "rejected": 6,
                "rationalized": 3,
                "overt": 1,
                "divergent": 2,
            }
        ],
    )
    result = gov("ingest", str(gz), str(parquet), str(aggregated), cwd=workspace)
    assert result.exit_code == 0, result.stderr
    kinds = {(e.format, e.kind) for e in ledger(open_registry(workspace).ws)}
    assert kinds == {("jsonl.gz", "episodes"), ("parquet", "episodes"), ("jsonl", "aggregated")}
    rows = {(r["step"], r["environment"]): r for r in counts(open_registry(workspace).ws)}
    assert rows[(100, "math")]["n"] == 20 and rows[(200, "math")]["n"] == 10
    assert rows[(200, "code-tests")]["rationalized"] == 3
    assert len(git.Repo(workspace).head.commit.parents) == 1  # all three: one commit


def test_reingesting_changes_nothing(gov, workspace: Path, reports: Path) -> None:
    path = write_jsonl(reports / "r.jsonl", mixed(100, 10))
    assert gov("ingest", str(path), cwd=workspace).exit_code == 0
    before = snapshot(workspace)
    again = gov("ingest", str(path), cwd=workspace)
    assert again.exit_code == 0
    assert "already ingested" in again.stdout
    assert snapshot(workspace) == before


def test_rejudged_episodes_need_replace(gov, workspace: Path, reports: Path) -> None:
    first = write_jsonl(reports / "first.jsonl", [episode(100, i) for i in range(5)])
    assert gov("ingest", str(first), cwd=workspace).exit_code == 0
    # Episodes 0-4 again (4 unchanged, one now rationalized) and one new episode.
    second = [episode(100, i) for i in range(4)]
    second += [episode(100, 4, "rationalized"), episode(100, 5, "rejected")]
    path = write_jsonl(reports / "second.jsonl", second)
    before = snapshot(workspace)
    refused = gov("ingest", str(path), cwd=workspace)
    assert refused.exit_code == 2
    assert "judged before by the same judge version" in refused.stderr
    assert "--replace" in refused.stderr
    assert snapshot(workspace) == before

    replaced = gov("ingest", "--replace", str(path), cwd=workspace)
    assert replaced.exit_code == 0, replaced.stderr
    [row] = counts(open_registry(workspace).ws)
    assert (row["n"], row["none"], row["rationalized"], row["rejected"]) == (6, 4, 1, 1)
    entry = ledger(open_registry(workspace).ws)[-1]
    assert (entry.replaced, entry.duplicates, entry.counted) == (1, 4, 2)
    assert entry.supersedes == (ledger(open_registry(workspace).ws)[0].md5,)
    assert "replacing earlier verdicts" in git.Repo(workspace).head.commit.message


def test_identical_duplicates_within_a_file_count_once(gov, workspace, reports) -> None:
    path = write_jsonl(reports / "d.jsonl", [episode(100, 1), episode(100, 1), episode(100, 2)])
    result = gov("ingest", str(path), cwd=workspace)
    assert result.exit_code == 0, result.stderr
    assert "1 repeated judgments not counted again" in result.stdout
    assert counts(open_registry(workspace).ws)[0]["n"] == 2


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"


def _aggregated(**change: Any) -> dict[str, Any]:
    record = {
        "run": "main",
        "step": 100,
        "environment": "math",
        "environment_version": 1,
        "judge": "cot-monitor",
        "judge_version": "1",
        "n": 10,
        "none": 7,
        "rejected": 2,
        "rationalized": 1,
        "overt": 0,
        "divergent": 1,
    }
    record.update(change)
    return record


def _sparse_long_line(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(2 << 30)  # 2 GiB without a newline, sparse: no disk is used


BAD: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "truncated json line": (
        "t.jsonl",
        _line(episode(100, 1)) + _line(episode(100, 2)) + _line(episode(100, 3))[:40] + "\n",
        (":3:", "invalid JSON"),
    ),
    "step as a string": (
        "s.jsonl",
        _line(episode(100, 1)) + _line(episode("100", 2)),  # type: ignore[arg-type]
        (":2:", "field step", "valid integer"),
    ),
    "step as a fraction": ("f.jsonl", _line(episode(100.5, 1)), (":1:", "field step")),  # type: ignore[arg-type]
    "divergent not a boolean": (
        "b.jsonl",
        _line(episode(100, 1, divergent="yes")),
        (":1:", "field divergent"),
    ),
    "unknown verdict": (
        "v.jsonl",
        _line(episode(100, 1, "sneaky")),
        (":1:", "field verdict", "sneaky"),
    ),
    "confidence above one": (
        "c.jsonl",
        _line(episode(100, 1, confidence=1.5)),
        (":1:", "field confidence"),
    ),
    "evidence span backwards": (
        "e.jsonl",
        _line(episode(100, 1, evidence=[{"start": 9, "end": 3, "quote": "x"}])),
        (":1:", "evidence", "after start"),
    ),
    "missing episode id": (
        "m.jsonl",
        _line({k: v for k, v in episode(100, 1).items() if k != "episode"}),
        (":1:", "field episode: missing"),
    ),
    "negative count": (
        "n.jsonl",
        _line(_aggregated(none=-1, n=2)),
        (":1:", "field none", "greater than"),
    ),
    "counts not adding up": ("a.jsonl", _line(_aggregated(none=5)), (":1:", "add up to 8")),
    "divergent above n": ("x.jsonl", _line(_aggregated(divergent=11)), (":1:", "exceeds n")),
    "empty file": ("empty.jsonl", "", ("empty",)),
    "blank lines only": ("blank.jsonl", "\n\n  \n", ("empty",)),
    "gzip that is not gzip": ("fake.jsonl.gz", _line(episode()), ("not gzip",)),
    "two gigabyte single line": ("long.jsonl", _sparse_long_line, ("longer than",)),
    "same episode two verdicts": (
        "dup.jsonl",
        _line(episode(100, 1)) + _line(episode(100, 2)) + _line(episode(100, 1, "rationalized")),
        (":3:", "judged none at line 1 and rationalized here"),
    ),
    "checkpoint not registered": (
        "ck.jsonl",
        _line(episode(999, 1)),
        (":1:", "checkpoint main@999 is not registered"),
    ),
    "environment version not registered": (
        "ev.jsonl",
        _line(episode(100, 1, environment_version=3)),
        (":1:", "no version '3'"),
    ),
    "judge version not registered": (
        "jv.jsonl",
        _line(episode(100, 1, judge_version="9")),
        (":1:", "no version '9'"),
    ),
    "unknown environment": (
        "ue.jsonl",
        _line(episode(100, 1, environment="chess")),
        ("environment 'chess'",),
    ),
    "not an object": ("arr.jsonl", "[1, 2]\n", (":1:", "JSON object")),
    # pydantic's name for the member of a union it tried was shown as part of the field
    "an episode id that is a list": (
        "id.jsonl",
        _line(episode(100, 1, episode=[1])),
        (":1:", "field episode: Input should be a valid string (got [1])"),
    ),
    # JSON allows a key twice and most readers keep the last silently: a judgment read as
    # another is refused, whichever reader (DuckDB's fast path, pydantic's) meets it
    "verdict given twice": (
        "twice.jsonl",
        _line(episode(100, 1)) + _line(episode(100, 2))[:-2] + ', "verdict": "none"}\n',
        (":2:", "field 'verdict': given twice"),
    ),
    "evidence key given twice": (
        "twice-ev.jsonl",
        _line(episode(100, 1, evidence=[{"start": 0, "end": 3, "quote": "x"}])).replace(
            '"quote": "x"', '"quote": "x", "quote": "y"'
        ),
        (":1:", "field 'quote'", "given twice"),
    ),
    "count given twice": (
        "twice-n.jsonl",
        _line(_aggregated()) + _line(_aggregated(step=200))[:-2] + ', "overt": 0}\n',
        (":2:", "field 'overt'", "given twice"),
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_report_is_refused_whole(case: str, gov, workspace: Path, reports: Path) -> None:
    good = write_jsonl(reports / "good.jsonl", mixed(200, 5))
    name, content, fragments = BAD[case]
    path = reports / name
    if callable(content):
        content(path)
    else:
        path.write_text(content)
    before = snapshot(workspace)
    result = gov("ingest", str(good), str(path), cwd=workspace)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    first = result.stderr.splitlines()[0]
    assert first.startswith("gov: error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in first, (fragment, first)
    assert snapshot(workspace) == before  # the good file beside it is not stored either
    assert (
        not list((workspace / "reports").glob("*.jsonl"))
        if (workspace / "reports").exists()
        else True
    )


def test_many_bad_records_list_the_first_and_count_the_rest(gov, workspace, reports) -> None:
    lines = [_line(episode(100, i, "bogus")) for i in range(25)]
    path = reports / "many.jsonl"
    path.write_text("".join(lines))
    result = gov("ingest", str(path), cwd=workspace)
    assert result.exit_code == 2
    err = result.stderr.splitlines()
    assert "25 bad records" in err[0] and "many.jsonl:1:" in err[0]
    assert err[1].strip().startswith(f"{path}:2:")
    assert err[-1].strip() == "... and 15 more"


KILL_DURING_INGEST = """
import os, signal, sys
from pathlib import Path
import governance.scm as scm
from governance import open_registry
from governance.ingest import ingest

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

scm.commit_paths = die
ingest(open_registry(sys.argv[1]), [Path(sys.argv[2])])
"""


def test_killed_ingest_leaves_nothing_half_stored(gov, workspace: Path, reports: Path) -> None:
    path = write_jsonl(reports / "k.jsonl", mixed(100, 20))
    before = snapshot(workspace)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_DURING_INGEST, str(workspace), str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == -9
    assert (workspace / "registry" / "reports.jsonl").exists()  # half made
    assert gov("status", cwd=workspace).exit_code == 0  # any command finishes the undo
    after = snapshot(workspace)
    assert after == before
    assert gov("ingest", str(path), cwd=workspace).exit_code == 0  # and it can be ingested anew


def test_schema_report_is_json_schema_of_both_forms(gov) -> None:
    result = gov("schema", "report")
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    episode_schema = schema["$defs"]["JudgedEpisode"]
    assert episode_schema["properties"]["verdict"]["$ref"].endswith("Verdict")
    assert set(schema["$defs"]["JudgedEpisode"]["$defs"]["Verdict"]["enum"]) == {
        "none",
        "rejected",
        "rationalized",
        "overt",
    }
    assert "n" in schema["$defs"]["AggregatedCounts"]["required"]


def test_readme_examples_are_valid_reports() -> None:
    from governance.judgments import AggregatedCounts, JudgedEpisode

    text = (ROOT / "README.md").read_text()
    blocks = text.split("```jsonl\n")[1:]
    records = [json.loads(line) for b in blocks for line in b.split("```")[0].splitlines() if line]
    verdicts = {r["verdict"] for r in records if "verdict" in r}
    assert verdicts == {"none", "rejected", "rationalized", "overt"}
    for record in records:
        (JudgedEpisode if "verdict" in record else AggregatedCounts).model_validate(record)


def test_progress_is_reported_to_a_callback(registry, reports: Path) -> None:
    from governance.ingest import ingest

    seen: list[tuple[str, float]] = []
    path = write_jsonl(reports / "p.jsonl", mixed(100, 30))
    ingest(registry, [path], progress=lambda phase, fraction: seen.append((phase, fraction)))
    phases = list(dict.fromkeys(phase for phase, _ in seen))
    assert phases == ["reading", "keeping in DVC"]
    for phase in phases:  # each phase ends full, and never goes back
        fractions = [f for p, f in seen if p == phase]
        assert fractions[-1] == 1.0 and fractions == sorted(fractions)
        assert all(0 <= f <= 1 for f in fractions)


def test_the_progress_bar_moves_while_a_query_runs(tmp_path: Path) -> None:
    """The bar follows DuckDB's own progress through a long scan: with DuckDB's tracking off
    (as it was) `query_progress()` answers -1 throughout and the bar sat at 0% to the end."""
    from governance.ingest.scan import _run_with_progress
    from governance.storage import duckdb_connect

    seen: list[float] = []
    with duckdb_connect() as con:
        rows = _run_with_progress(
            con,
            "SELECT count(*) FROM range(400000000) t(i) WHERE hash(i) % 7 = 0",
            lambda _phase, fraction: seen.append(fraction),
        )
    assert rows[0][0] > 0
    assert any(0 < f < 1 for f in seen), seen
    assert seen[-1] == 1.0


def test_a_report_written_to_while_it_is_ingested_is_refused(registry, workspace, reports) -> None:
    """The counts are read from one pass and the stored copy from another: if the file moves
    between them (a judge still appending), nothing is stored and the user is told why."""
    from governance.errors import GovError
    from governance.ingest import ingest

    path = write_jsonl(reports / "growing.jsonl", mixed(100, 30))
    before = snapshot(workspace)

    def append_more(_phase: str, fraction: float) -> None:
        if fraction == 1.0:  # the scan is done: the judge writes one more episode
            with path.open("a") as handle:
                handle.write(json.dumps(episode(100, 999)) + "\n")

    with pytest.raises(GovError, match="changed while it was being ingested; nothing stored"):
        ingest(registry, [path], progress=append_more)
    assert snapshot(workspace) == before
    assert not list((workspace / "reports").glob(".incoming-*"))
    ingest(registry, [path])  # once it is complete, it goes in whole: 31 episodes
    assert registry.summary().judgments == 31


def test_duckdb_never_draws_its_own_progress_bar() -> None:
    """DuckDB draws a progress bar on a terminal for a query over two seconds; every
    connection gov opens turns it off (gov reports progress itself)."""
    from governance.storage import duckdb_connect

    with duckdb_connect({"memory_limit": "256MB"}) as con:
        setting = "SELECT current_setting('enable_progress_bar_print')"
        assert con.execute(setting).fetchone() == (False,)


def test_a_folder_of_reports_is_ingested_by_name(gov, workspace: Path, reports: Path) -> None:
    """`gov ingest --dir`: every .jsonl, .jsonl.gz and .parquet file in the folder, in one
    change; other files, and the unjudged episodes gov judge run writes, are not reports."""
    write_jsonl(reports / "a.jsonl", mixed(100, 10))
    with gzip.open(reports / "b.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in mixed(200, 5)))
    (reports / "notes.txt").write_text("not a report")
    # what gov judge run keeps beside its report: episodes it could not judge, not judgments
    (reports / "a.jsonl.unjudged.jsonl").write_text('{"episode_id": "e1", "error": "timeout"}\n')
    done = gov("ingest", "--dir", str(reports), cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert open_registry(workspace).summary().judgments == 15


@pytest.mark.parametrize(
    "size",
    [0, 1, 4095, 4097, 16 << 20, (16 << 20) + 1, (32 << 20) + 12345],
    ids=lambda s: f"{s}B",
)
def test_the_stored_copy_and_its_md5_are_the_reports_bytes(tmp_path: Path, size: int) -> None:
    # The copy and the hash are made a chunk at a time: at every edge of a block and a chunk,
    # the copy holds exactly the report's bytes and the md5 is theirs.
    from governance.ingest.pipeline import _Copy

    data = os.urandom(min(size, 1 << 20)) * (size // (1 << 20) + 1)
    source = tmp_path / "report.jsonl"
    source.write_bytes(data[:size])
    dest = tmp_path / "copy"
    copy = _Copy(source, dest, flush=True)
    copy.run()
    assert copy.error is None
    assert dest.read_bytes() == data[:size]
    assert copy.md5 == hashlib.md5(data[:size]).hexdigest()
    assert copy.copied == size


def test_a_report_is_linked_not_copied_where_dvc_hard_links(gov, workspace, reports) -> None:
    """DVC's `cache.type` decides whether a report is copied into the workspace (the default,
    reflink or copy) or hard-linked (`hardlink` named): then the stored report is the user's
    file under a second name, with no second copy on disk, and read-only as DVC keeps it."""
    first = write_jsonl(reports / "a.jsonl", mixed(100, 20))
    done = gov("ingest", str(first), cwd=workspace)
    assert done.exit_code == 0 and "hard-linked" not in done.stdout
    [stored] = [workspace / e.path for e in ledger(open_registry(workspace).ws)]
    assert stored.stat().st_ino != first.stat().st_ino  # the default: a copy
    assert first.stat().st_mode & 0o200  # the user's file untouched

    subprocess.run(
        [sys.executable, "-m", "dvc", "config", "--local", "cache.type", "reflink,hardlink"],
        cwd=workspace,
        check=True,
    )
    second = write_jsonl(reports / "b.jsonl", mixed(200, 30))
    done = gov("ingest", str(second), cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert "hard-linked" in done.stdout and "read-only" in done.stdout
    entry = ledger(open_registry(workspace).ws)[-1]
    stored = workspace / entry.path
    assert stored.stat().st_ino == second.stat().st_ino
    assert entry.md5 == hashlib.md5(second.read_bytes()).hexdigest()
    assert not second.stat().st_mode & 0o222  # DVC's protection of its cache, on the one inode
    assert open_registry(workspace).summary().judgments == 50
    assert not git.Repo(workspace).is_dirty(untracked_files=True)


def test_a_report_on_another_filesystem_is_copied_even_where_links_are_asked(tmp_path) -> None:
    from governance.ingest.pipeline import _Copy

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    source = shm / f"gov-test-{os.getpid()}.jsonl"
    try:
        source.write_bytes(b'{"x": 1}\n' * 1000)
        copy = _Copy(source, tmp_path / "copy", flush=False, link=lambda: True)
        copy.run()
        assert copy.error is None and not copy.linked
        assert (tmp_path / "copy").read_bytes() == source.read_bytes()
        assert copy.md5 == hashlib.md5(source.read_bytes()).hexdigest()
    finally:
        source.unlink(missing_ok=True)


def _scan_both_ways(registry, path: Path, monkeypatch) -> list[Any]:
    """scan_episodes as it runs on a large report (the episodes' keys sorted in numpy), then as
    it runs on a small one, or where the keys do not fit in memory (DuckDB groups them itself,
    spilling to disk): (records, tallies, duplicates) of each, or the refusal's message."""
    import duckdb

    from governance.errors import ReportRejected
    from governance.ingest import scan
    from governance.ingest.join import Join

    def run() -> Any:
        try:
            found = scan.scan_episodes(registry.ws, path, "jsonl", Join(registry))
        except ReportRejected as exc:
            return str(exc)
        found.keys.unlink()
        return found.records, found.tallies, found.duplicates

    def full(_found: Any) -> Any:
        raise duckdb.OutOfMemoryException("could not allocate")

    monkeypatch.setattr(scan, "SORTED_FROM", 0)
    held = run()
    monkeypatch.setattr(scan, "_rows", full)
    spilled = run()
    monkeypatch.undo()
    monkeypatch.setattr(scan, "SORTED_FROM", 1 << 62)
    assert run() == spilled  # a small report: DuckDB groups its episodes
    monkeypatch.undo()
    return [held, spilled]


def test_duplicates_are_found_the_same_with_or_without_room_for_every_key(
    registry, reports: Path, monkeypatch
) -> None:
    # Episodes repeated the same way across steps and verdict groups, one judged two ways.
    same = [episode(100, i, VERDICT_MIX[i % 10]) for i in range(300)]
    same += [episode(100, i, VERDICT_MIX[i % 10]) for i in range(0, 300, 7)]  # 43 again
    same += [episode(200, i, "rejected") for i in range(50)] * 3  # 100 more
    path = write_jsonl(reports / "same.jsonl", same)
    held, spilled = _scan_both_ways(registry, path, monkeypatch)
    assert held == spilled
    records, tallies, duplicates = held
    assert (records, duplicates) == (300 + 43 + 150, 143)
    assert sum(t.n for t in tallies.values()) == 350

    twice = [*same, episode(200, 7, "overt")]  # episode ep-200-7 now judged two ways
    path = write_jsonl(reports / "twice.jsonl", twice)
    held, spilled = _scan_both_ways(registry, path, monkeypatch)
    assert held == spilled
    assert "ep-200-7" in held and "twice.jsonl:" in held


def test_a_broken_dvc_link_setting_is_named_and_nothing_is_stored(gov, workspace, reports) -> None:
    path = write_jsonl(reports / "a.jsonl", mixed(100, 20))
    (workspace / ".dvc" / "config.local").write_text("[cache]\n    type = bogus\n")
    before = snapshot(workspace)
    done = gov("ingest", str(path), cwd=workspace)
    assert done.exit_code == 2
    [line] = done.stderr.strip().splitlines()
    assert "a.jsonl" in line and "DVC's configuration" in line and "bogus" in line
    assert "Traceback" not in done.stderr
    assert snapshot(workspace) == before
    assert path.stat().st_mode & 0o200  # the report is the user's, untouched


def test_a_repeated_field_gov_ignores_is_accepted_alike_by_both_readers(
    gov, workspace: Path, reports: Path
) -> None:
    # a monitor's own field (ignored) given twice: DuckDB's reader of an episode report lets it
    # pass, so pydantic's (aggregated counts, and the episode report's line-by-line read when
    # another line is bad) must too; a field gov reads given twice is refused by both
    def extra_twice(record: dict[str, Any]) -> str:
        return _line(record)[:-2] + ', "latency": 1, "latency": 2}\n'

    episodes = reports / "extra.jsonl"
    episodes.write_text("".join(extra_twice(episode(100, i)) for i in range(3)))
    counts = reports / "extra-counts.jsonl"
    counts.write_text(extra_twice(_aggregated(step=200)))
    done = gov("ingest", str(episodes), str(counts), cwd=workspace)
    assert done.exit_code == 0, done.stderr
    bad = reports / "extra-bad.jsonl"
    bad.write_text(extra_twice(episode(200, 1)) + _line(episode(200, 2, "sneaky")))
    done = gov("ingest", str(bad), cwd=workspace)
    assert done.exit_code == 2
    assert ":2:" in done.stderr and ":1:" not in done.stderr, done.stderr
