"""gov aggregate: a Parquet lake of judged episodes checked and counted by the one SQL, on
DuckDB and on Spark (local[2]), against plain Python counting and against gov ingest of the
same episodes as JSONL."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import git
import pytest
from test_ingest import episode

from conftest import apt_install, bucket, point_dvc_remote, snapshot
from governance import counts as count_store
from governance import open_registry
from governance.counts import ledger
from governance.lake.sql import COUNTS, for_engine

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE = 'STRUCT(start BIGINT, "end" BIGINT, quote VARCHAR)[]'
TYPES = {
    "episode": "VARCHAR",
    "environment": "VARCHAR",
    "environment_version": "BIGINT",
    "judge": "VARCHAR",
    "judge_version": "VARCHAR",
    "verdict": "VARCHAR",
    "divergent": "BOOLEAN",
    "confidence": "DOUBLE",
    "evidence": EVIDENCE,
}
VERDICT_MIX = ["none"] * 6 + ["rejected"] * 2 + ["rationalized", "overt"]


def mixed(step: int, count: int, environment: str = "math") -> list[dict[str, Any]]:
    return [
        episode(
            step,
            i,
            VERDICT_MIX[i % 10],
            divergent=i % 7 == 0,
            confidence=0.5,
            environment=environment,
            episode=f"{environment}-{step}-{i}",
        )
        for i in range(count)
    ]


def write_file(path: Path, rows: list[dict[str, Any]], types: dict[str, str | None]) -> None:
    """One Parquet file of the rows (run and step left to the folder names), typed as given
    (a type of None leaves the column out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_name(path.name + ".src.jsonl")
    source.write_text(
        "".join(
            json.dumps({k: v for k, v in r.items() if k not in ("run", "step")}) + "\n"
            for r in rows
        )
    )
    kept = {k: v for k, v in types.items() if v is not None}
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in kept.items()) + "}"
    duckdb.sql(
        f"COPY (SELECT * FROM read_json('{source}', format = 'newline_delimited', "
        f"columns = {cols}, hive_partitioning = false)) TO '{path}' (FORMAT parquet)"
    )
    source.unlink()


def write_lake(
    root: Path,
    records: list[dict[str, Any]],
    files: int = 2,
    types: dict[str, str | None] | None = None,
) -> Path:
    """The records as a lake: by partition, split into `files` files of consecutive rows."""
    by_partition: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        by_partition.setdefault((r["run"], r["step"]), []).append(r)
    for (run, step), rows in by_partition.items():
        size = -(-len(rows) // files)
        for k in range(files):
            chunk = rows[k * size : (k + 1) * size]
            if chunk:
                write_file(
                    root / f"run={run}" / f"step={step}" / f"part-{k}.parquet",
                    chunk,
                    {**TYPES, **(types or {})},
                )
    return root


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def expected_counts(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, int]]:
    """Plain Python counting: each (group, episode) once."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        key = (r["run"], r["step"], r["environment"], r["judge"], r["judge_version"])
        seen[(*key, r["episode"])] = r
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    for (*key, _), r in seen.items():
        tally = out.setdefault(
            tuple(key),
            dict.fromkeys(("n", "none", "rejected", "rationalized", "overt", "divergent"), 0),
        )
        tally["n"] += 1
        tally[r["verdict"]] += 1
        tally["divergent"] += int(r["divergent"])
    return out


def read_counts(path: Path) -> dict[tuple[Any, ...], dict[str, int]]:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        key = (r["run"], r["step"], r["environment"], r["judge"], r["judge_version"])
        out[key] = {
            c: r[c] for c in ("n", "none", "rejected", "rationalized", "overt", "divergent")
        }
    return out


@pytest.fixture
def steps(registry, artifact) -> None:
    for step in (100, 200):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), {"math": 1.0})


@pytest.fixture(scope="module")
def lake_ws(workspace_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with checkpoints main@100 and main@200, shared by the tests that only
    aggregate or are refused (neither changes it): built once, not once per test."""
    return _with_steps(_copy_workspace(workspace_template, tmp_path_factory.mktemp("lake-ws")))


def _copy_workspace(template: Path, where: Path) -> Path:
    root = where / "repo"
    shutil.copytree(template, root, symlinks=True)
    remote = where / "remote"
    remote.mkdir()
    point_dvc_remote(root, remote)
    return root


def _with_steps(root: Path) -> Path:
    """The workspace with checkpoints main@100 and main@200 (math only) registered."""
    reg = open_registry(root)
    for step in (100, 200):
        art = root / "ckpt" / f"s{step}.pt"
        art.parent.mkdir(exist_ok=True)
        art.write_bytes(f"s{step}.pt".encode() * 50)
        reg.add_checkpoint("main", step, art, {"math": 1.0})
    return root


GOOD = mixed(100, 40) + mixed(100, 15, "code-tests") + mixed(200, 30)


def test_counts_match_python_and_ingest_keeps_the_manifest(
    gov, workspace: Path, steps, tmp_path: Path
) -> None:
    records = [*GOOD, GOOD[5]]  # one episode listed twice, judged the same: counted once
    lake = write_lake(tmp_path / "lake", records, files=3)
    out = tmp_path / "counts" / "c.jsonl"
    result = gov("aggregate", str(lake), "--out", str(out), cwd=workspace)
    assert result.exit_code == 0, result.stderr
    assert "1 repeated judgments counted once" in result.stdout
    assert read_counts(out) == expected_counts(records)

    manifest = json.loads((tmp_path / "counts" / "c.jsonl.manifest.json").read_text())
    files = sorted(lake.rglob("*.parquet"))
    assert [f["path"] for f in manifest["files"]] == [f.relative_to(lake).as_posix() for f in files]
    for entry, path in zip(manifest["files"], files, strict=True):
        assert entry["size"] == path.stat().st_size
        assert entry["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert manifest["counts_md5"] == hashlib.md5(out.read_bytes()).hexdigest()
    assert (manifest["records"], manifest["duplicates"]) == (len(records), 1)

    result = gov("ingest", str(out), cwd=workspace)
    assert result.exit_code == 0, result.stderr
    ws = open_registry(workspace).ws
    [entry] = ledger(ws)
    assert entry.lake == f"registry/lakes/{entry.md5}.json"
    kept = workspace / entry.lake
    assert kept.read_bytes() == (tmp_path / "counts" / "c.jsonl.manifest.json").read_bytes()
    assert entry.lake in git.Repo(workspace).head.commit.stats.files


@pytest.mark.parametrize("listed", [10_000, 0])
def test_repeats_counted_once_whether_listed_by_hash_or_not(
    listed: int, gov, lake_ws: Path, tmp_path: Path, monkeypatch
) -> None:
    """Episodes repeated within a file and across files of one partition count once; the same
    episode id in another partition or environment is another episode. With `listed` 0 the
    repeats are found by grouping every episode, not by the hashes REPEATED listed."""
    module = importlib.import_module("governance.lake.aggregate")  # the package names a function so
    monkeypatch.setattr(module, "_LISTED_HASHES", listed)
    records = [*GOOD, *GOOD[:7], GOOD[50], GOOD[50], *(dict(r, step=200) for r in GOOD[:3])]
    lake = write_lake(tmp_path / "lake", records, files=3)
    out = tmp_path / "c.jsonl"
    result = gov("aggregate", str(lake), "--out", str(out), cwd=lake_ws)
    assert result.exit_code == 0, result.stderr
    assert "9 repeated judgments counted once" in result.stdout
    assert read_counts(out) == expected_counts(records)


def test_aggregate_then_ingest_equals_ingesting_the_episodes(
    gov, workspace: Path, steps, workspace_template: Path, tmp_path: Path
) -> None:
    lake = write_lake(tmp_path / "lake", GOOD)
    out = tmp_path / "c.jsonl"
    assert gov("aggregate", str(lake), "--out", str(out), cwd=workspace).exit_code == 0
    assert gov("ingest", str(out), cwd=workspace).exit_code == 0

    other = _with_steps(_copy_workspace(workspace_template, tmp_path / "other"))
    jsonl = write_jsonl(tmp_path / "episodes.jsonl", GOOD)
    assert gov("ingest", str(jsonl), cwd=other).exit_code == 0

    def rows(root: Path) -> list[Any]:
        return sorted(
            (r.run, r.step, r.environment, r.environment_version, r.judge, r.judge_version, r.n,
             r.none, r.rejected, r.rationalized, r.overt, r.divergent)
            for r in count_store.rows(open_registry(root).ws)
        )  # fmt: skip

    assert rows(workspace) == rows(other)
    assert len(rows(other)) == 3


def test_a_stale_manifest_is_refused_by_ingest(gov, workspace: Path, steps, tmp_path) -> None:
    lake = write_lake(tmp_path / "lake", mixed(100, 10))
    out = tmp_path / "c.jsonl"
    assert gov("aggregate", str(lake), "--out", str(out), cwd=workspace).exit_code == 0
    out.write_text(out.read_text().replace('"n": 10', '"n": 10, "pipeline": "x"'))
    before = snapshot(workspace)
    result = gov("ingest", str(out), cwd=workspace)
    assert result.exit_code == 2
    assert "the manifest of other counts" in result.stderr
    assert snapshot(workspace) == before


def test_a_manifest_that_does_not_add_up_is_refused_by_ingest(
    gov, workspace: Path, steps, tmp_path
) -> None:
    lake = write_lake(tmp_path / "lake", mixed(100, 10))
    out = tmp_path / "c.jsonl"
    assert gov("aggregate", str(lake), "--out", str(out), cwd=workspace).exit_code == 0
    beside = out.with_name(out.name + ".manifest.json")
    record = json.loads(beside.read_text())
    beside.write_text(json.dumps({**record, "counted": record["counted"] + 989}))
    before = snapshot(workspace)
    result = gov("ingest", str(out), cwd=workspace)
    assert result.exit_code == 2
    assert "not a lake manifest" in result.stderr and "must be counted" in result.stderr
    assert snapshot(workspace) == before


def test_a_lake_file_counted_before_is_not_counted_again(
    gov, workspace: Path, steps, tmp_path: Path
) -> None:
    lake = write_lake(tmp_path / "lake", mixed(100, 10))
    first = tmp_path / "first.jsonl"
    assert gov("aggregate", str(lake), "--out", str(first), cwd=workspace).exit_code == 0
    assert gov("ingest", str(first), cwd=workspace).exit_code == 0
    write_lake(lake, mixed(200, 8))  # the lake grows by a checkpoint
    again = tmp_path / "again.jsonl"
    assert gov("aggregate", str(lake), "--out", str(again), cwd=workspace).exit_code == 0
    before = snapshot(workspace)
    result = gov("ingest", str(again), cwd=workspace)
    assert result.exit_code == 2
    assert "counts lake file run=main/step=100/part-0.parquet" in result.stderr
    assert "already counts" in result.stderr
    assert snapshot(workspace) == before
    # the new partition alone, as a lake of its own, is counted
    only = tmp_path / "new"
    shutil.copytree(lake / "run=main" / "step=200", only / "run=main" / "step=200")
    new = tmp_path / "new.jsonl"
    assert gov("aggregate", str(only), "--out", str(new), cwd=workspace).exit_code == 0
    assert gov("ingest", str(new), cwd=workspace).exit_code == 0
    totals = {r.step: r.n for r in count_store.rows(open_registry(workspace).ws)}
    assert totals == {100: 10, 200: 8}


# The ingest catalogue's bad rows, as a lake can hold them: (records, fragments of the message).
# Each bad record is placed second in the second file of step=100, after good rows.
ROW_CASES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "unknown verdict": (episode(100, 90, "sneaky"), ("field verdict", "sneaky")),
    "confidence above one": (episode(100, 90, confidence=1.5), ("field confidence",)),
    "evidence span backwards": (
        episode(100, 90, evidence=[{"start": 9, "end": 3, "quote": "x"}]),
        ("evidence", "after start"),
    ),
    "missing episode id": (episode(100, 90, episode=None), ("field episode: missing",)),
    "empty episode id": (episode(100, 90, episode=""), ("field episode",)),
    "missing verdict": (episode(100, 90, verdict=None), ("field verdict: missing",)),
    "checkpoint not registered": (
        episode(999, 90),
        ("checkpoint main@999 is not registered",),
    ),
    "environment version not registered": (
        episode(100, 90, environment_version=3),
        ("no version '3'",),
    ),
    "judge version not registered": (episode(100, 90, judge_version="9"), ("no version '9'",)),
    "unknown environment": (episode(100, 90, environment="chess"), ("environment 'chess'",)),
    "environment not a name": (episode(100, 90, environment="a b"), ("field environment",)),
}


def _bad_lake(root: Path, bad: dict[str, Any]) -> tuple[Path, str]:
    """A lake whose one bad record is the second row of a file after a good one; the file."""
    write_lake(root, mixed(100, 6) + mixed(200, 4))
    step = bad["step"]
    name = f"run=main/step={step}/part-9.parquet"
    write_file(root / name, [episode(step, 91), bad, episode(step, 92)], TYPES)
    return root, name


def _first(stderr: str) -> str:
    first = stderr.splitlines()[0]
    assert first.startswith("gov: error: ") and "Traceback" not in stderr, stderr
    return first


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_bad_rows_are_named_as_ingest_names_them(
    case: str, gov, lake_ws: Path, tmp_path: Path
) -> None:
    bad, fragments = ROW_CASES[case]
    lake, name = _bad_lake(tmp_path / "lake", bad)
    out = tmp_path / "c.jsonl"
    result = gov("aggregate", str(lake), "--out", str(out), cwd=lake_ws)
    assert result.exit_code == 2, result.stdout
    first = _first(result.stderr)
    # an unregistered checkpoint is the whole partition's: all three rows of its file
    row, many = (1, "3 bad records") if bad["step"] == 999 else (2, "1 bad record")
    assert f"{lake}: refused, nothing stored ({many}); {name} row {row}: " in first, first
    for fragment in fragments:
        assert fragment in first, (fragment, first)
    assert not out.exists() and not (tmp_path / "c.jsonl.manifest.json").exists()

    # gov ingest says the same of the same record in a JSONL report
    record = {k: v for k, v in bad.items() if v is not None}
    jsonl = write_jsonl(tmp_path / "r.jsonl", [episode(bad["step"], 91), record])
    ingested = _first(gov("ingest", str(jsonl), cwd=lake_ws).stderr)
    said = re.search(rf" row {row}: (.*)$", first)
    assert said is not None
    assert ingested.endswith(f"{jsonl}:{row}: {said.group(1)}"), (ingested, first)


def test_episode_judged_two_ways_across_files(gov, lake_ws, tmp_path) -> None:
    lake = write_lake(tmp_path / "lake", mixed(100, 6))
    write_file(
        lake / "run=main/step=100/part-9.parquet",
        [episode(100, 50), {**mixed(100, 6)[0], "verdict": "rationalized"}],
        TYPES,
    )
    result = gov("aggregate", str(lake), "--out", str(tmp_path / "c.jsonl"), cwd=lake_ws)
    assert result.exit_code == 2
    first = _first(result.stderr)
    assert (
        "run=main/step=100/part-9.parquet row 2: episode 'math-100-0' was judged none "
        "(divergent) at run=main/step=100/part-0.parquet row 1 and rationalized (divergent) here"
    ) in first, first


def test_many_bad_rows_list_the_first_in_lake_order(gov, lake_ws, tmp_path) -> None:
    rows = [episode(100, i, "bogus") for i in range(25)]
    lake = write_lake(tmp_path / "lake", rows, files=2)
    result = gov("aggregate", str(lake), "--out", str(tmp_path / "c.jsonl"), cwd=lake_ws)
    err = result.stderr.splitlines()
    assert "25 bad records" in err[0] and "run=main/step=100/part-0.parquet row 1:" in err[0]
    assert err[1].strip().startswith("run=main/step=100/part-0.parquet row 2:")
    assert err[-1].strip() == "... and 15 more"


def _lake_case(case: str, root: Path) -> Path:
    """The lakes of the issue's bad inputs."""
    if case == "no such lake":
        return root / "nowhere"
    if case == "a lake at a URI gov does not read":
        return "gs://bucket/judged"  # type: ignore[return-value]  # a URI, not a path
    root.mkdir(parents=True)
    if case == "an empty lake":
        (root / "run=main" / "step=100").mkdir(parents=True)
    elif case == "files without rows":
        write_file(root / "run=main/step=100/part-0.parquet", [], TYPES)
    elif case == "a column of the wrong type":
        write_lake(root, mixed(100, 4))
        write_file(
            root / "run=main/step=100/part-5.parquet",
            mixed(100, 2),
            {**TYPES, "divergent": "VARCHAR"},
        )
    elif case == "a missing column":
        write_file(root / "run=main/step=100/a.parquet", mixed(100, 2), {**TYPES, "verdict": None})
    elif case == "an unknown run's partitions mixed in":
        write_lake(
            root, [*mixed(100, 4), episode(100, 1, run="ghost"), episode(200, 1, run="ghost")]
        )
    elif case == "a file outside the partitions":
        write_lake(root, mixed(100, 4))
        write_file(root / "run=main" / "loose.parquet", mixed(100, 2), TYPES)
    elif case == "a step that is not an integer":
        write_file(root / "run=main/step=1e2/a.parquet", mixed(100, 2), TYPES)
    elif case == "one version written two ways":
        # the same episode under version 1 and "v1": both name v1, and it must not count twice
        write_file(root / "run=main/step=100/a.parquet", [episode(100, 1, "overt")], TYPES)
        write_file(
            root / "run=main/step=100/b.parquet",
            [episode(100, 1, "none", environment_version="v1")],
            {**TYPES, "environment_version": "VARCHAR"},
        )
    elif case == "a file name read as a pattern":
        write_file(root / "run=main/step=100/p1.parquet", mixed(100, 2), TYPES)
        write_file(root / "run=main/step=100/p[1].parquet", mixed(100, 2), TYPES)
    elif case == "a link to nothing":
        write_file(root / "run=main/step=100/a.parquet", mixed(100, 2), TYPES)
        (root / "run=main/step=100/b.parquet").symlink_to(root / "gone.parquet")
    elif case == "a column the reader keeps for itself":
        rows = [{**r, "filename": "x"} for r in mixed(100, 2)]
        write_file(root / "run=main/step=100/a.parquet", rows, {**TYPES, "filename": "VARCHAR"})
    return root


BAD_LAKES = {
    "no such lake": ("no such lake",),
    "a lake at a URI gov does not read": (
        "gs://bucket/judged: a lake is a folder or an s3:// URI",
    ),
    "an empty lake": ("an empty lake",),
    "files without rows": ("no records",),
    "a column of the wrong type": (
        "run=main/step=100/part-5.parquet: column divergent is VARCHAR",
        "a boolean",
    ),
    "a missing column": ("run=main/step=100/a.parquet: column verdict: missing",),
    "an unknown run's partitions mixed in": (
        "run=ghost/ (2 files): run 'ghost' is not registered",
    ),
    "a file outside the partitions": (
        "run=main/loose.parquet is not in a run=RUN/step=STEP/ partition",
    ),
    "a step that is not an integer": ("partition step=1e2",),
    "one version written two ways": (
        "environment_version '1' and 'v1' name the same registered version",
        "counted twice",
    ),
    "a file name read as a pattern": ("run=main/step=100/p[1].parquet: its name holds",),
    "a link to nothing": ("run=main/step=100/b.parquet: cannot be read",),
    "a column the reader keeps for itself": ("a.parquet: column filename: a name the engines",),
}


@pytest.mark.parametrize("case", list(BAD_LAKES))
def test_bad_lakes_get_one_line(case: str, gov, lake_ws, tmp_path: Path) -> None:
    lake = _lake_case(case, tmp_path / "lake")
    out = tmp_path / "c.jsonl"
    result = gov("aggregate", str(lake), "--out", str(out), cwd=lake_ws)
    assert result.exit_code == 2, result.stdout
    assert len(result.stderr.splitlines()) == 1, result.stderr
    for fragment in BAD_LAKES[case]:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert not out.exists()


def test_spark_without_java_is_one_line(lake_ws: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    lake = write_lake(tmp_path / "lake", mixed(100, 4))
    out = tmp_path / "c.jsonl"
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(bare)
    proc = subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "aggregate", str(lake), "--out",
         str(out), "--engine", "spark"],
        cwd=lake_ws, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "gov: error: the Spark engine cannot start: no Java here (java is not on PATH and "
        "JAVA_HOME is unset); install a JDK 17, e.g. apt-get install openjdk-17-jre-headless, "
        "or use --engine duckdb"
    ]
    assert not out.exists()


# -- Spark: the same SQL, transpiled, on the same lakes ------------------------------------------
def ensure_java() -> str:
    """Debian's Java 17, installed by the test set-up where it is missing (root, apt), as
    test_report installs Chromium."""
    java = shutil.which("java")
    if java is None:
        apt_install("openjdk-17-jre-headless")
        java = shutil.which("java")
    assert java is not None, "Java is needed: apt-get install openjdk-17-jre-headless"
    return java


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] Spark session for every Spark test (the JVM starts once)."""
    ensure_java()
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("gov tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.mark.spark
def test_the_sql_transpiles_to_spark_and_counts_the_same(
    spark, gov, lake_ws: Path, tmp_path: Path
) -> None:
    translated = for_engine(COUNTS, "spark")
    assert "FILTER(evidence, x ->" in translated and "x.`end`" in translated
    # integer episode ids in one file, string ids in another; confidence as FLOAT; no evidence
    records = GOOD + [episode(200, 7000 + i, VERDICT_MIX[i]) for i in range(10)]
    lake = write_lake(tmp_path / "lake", [*GOOD, GOOD[3], GOOD[60]], files=3)  # two repeats
    write_file(
        lake / "run=main/step=200/ints.parquet",
        [{**r, "episode": 7000 + i} for i, r in enumerate(records[-10:])],
        {**TYPES, "episode": "BIGINT", "confidence": "FLOAT", "evidence": None},
    )
    outs = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.jsonl"
        result = gov("aggregate", str(lake), "--out", str(out), "--engine", engine, cwd=lake_ws)
        assert result.exit_code == 0, result.stderr
        outs[engine] = out
    assert outs["duckdb"].read_bytes() == outs["spark"].read_bytes()
    assert read_counts(outs["spark"]) == expected_counts(
        [*GOOD, *({**r, "episode": str(7000 + i)} for i, r in enumerate(records[-10:]))]
    )
    manifests = [json.loads(Path(f"{o}.manifest.json").read_text()) for o in outs.values()]
    assert [m.pop("engine") for m in manifests] == ["duckdb", "spark"]
    assert manifests[0] == manifests[1]


def _catalogue_lake(root: Path, cases: list[str]) -> Path:
    """One lake holding each case's bad record second in a file of its own (case-NN.parquet,
    in the order given), between good rows: one refusal names them all, in the lake's order."""
    write_lake(root, mixed(100, 6) + mixed(200, 4))
    for i, case in enumerate(cases):
        if case == "same episode two verdicts":
            rows = [episode(100, 50), {**mixed(100, 6)[0], "verdict": "rationalized"}]
        elif case == "a file name a URI must escape":
            write_file(root / "run=main/step=100/case 99%.parquet", [episode(100, 1, "x")], TYPES)
            continue
        else:
            bad = ROW_CASES[case][0]
            rows = [episode(bad["step"], 91 + i), bad, episode(bad["step"], 92 + i)]
        step = rows[1]["step"]
        write_file(root / f"run=main/step={step}/case-{i:02d}.parquet", rows, TYPES)
    return root


SPARK_CASES = [*ROW_CASES, "same episode two verdicts", "a file name a URI must escape"]


@pytest.mark.spark
def test_both_engines_refuse_the_same_rows_the_same_way(
    spark, gov, lake_ws: Path, tmp_path: Path
) -> None:
    """Every kind of bad row of the catalogue, in two lakes (a refusal lists ten rows): both
    engines refuse each lake with the same words, naming every bad row by file and row."""
    halves = [SPARK_CASES[:7], SPARK_CASES[7:]]
    for number, cases in enumerate(halves):
        lake = _catalogue_lake(tmp_path / f"lake{number}", cases)
        # the second lake by a relative path (with ..): Spark names files by absolute URIs
        given = os.path.relpath(lake, lake_ws) if number else str(lake)
        said = {}
        for engine in ("duckdb", "spark"):
            out = tmp_path / f"{engine}.jsonl"
            result = gov("aggregate", given, "--out", str(out), "--engine", engine, cwd=lake_ws)
            assert result.exit_code == 2, (cases, engine, result.stdout)
            assert not out.exists()
            said[engine] = result.stderr
        assert said["duckdb"] == said["spark"], cases
        for case in cases:
            fragments = ROW_CASES[case][1] if case in ROW_CASES else ()
            for fragment in fragments:
                assert fragment in said["spark"], (case, fragment)
        assert "more" not in said["spark"]  # every bad row listed
    assert "run=main/step=100/case 99%.parquet row 1: field verdict" in said["spark"]
    for number, case in enumerate(BAD_LAKES):  # refused before either engine reads a row
        lake = _lake_case(case, tmp_path / f"bad{number}")
        lines = {
            engine: gov(
                "aggregate", str(lake), "--out", str(tmp_path / "c.jsonl"), "--engine", engine,
                cwd=lake_ws,
            ).stderr
            for engine in ("duckdb", "spark")
        }  # fmt: skip
        assert lines["duckdb"] == lines["spark"] and len(lines["spark"].splitlines()) == 1, case
    # case-NN.parquet comes before part-0.parquet: the first judgment is the case file's
    assert re.search(
        r"run=main/step=100/part-0\.parquet row 1: episode 'math-100-0' was judged rationalized "
        r"\(divergent\) at run=main/step=100/case-\d\d\.parquet row 2 and none \(divergent\) here",
        said["spark"],
    ), said["spark"]


# -- a lake in object storage: a real S3 endpoint (moto's server on 127.0.0.1) holds the files;
# gov lists them once, counts exactly the versions listed and names them (or their ETags) in
# the manifest, and refuses a bad lake there in one line as it does a folder ----------------
def upload(s3: Any, lake: Path, where: str) -> dict[str, str]:
    """Every file of a local lake under s3://WHERE/; the version id of each, by its path."""
    name, _, prefix = where.partition("/")
    versions = {}
    for path in sorted(lake.rglob("*.parquet")):
        rel = path.relative_to(lake).as_posix()
        put = s3.put_object(Bucket=name, Key=f"{prefix}/{rel}", Body=path.read_bytes())
        versions[rel] = put.get("VersionId")
    return versions


def test_a_lake_in_a_bucket_counts_as_the_same_lake_in_a_folder(
    gov, lake_ws: Path, s3: Any, tmp_path: Path
) -> None:
    records = [*GOOD, GOOD[7]]
    lake = write_lake(tmp_path / "lake", records, files=3)
    versions = upload(s3, lake, bucket(s3, "judged", versioned=True) + "/grpo")
    # a writer's bookkeeping beside the files is left out, as in a folder
    s3.put_object(Bucket="judged", Key="grpo/run=main/step=100/_SUCCESS", Body=b"")
    local_out, s3_out = tmp_path / "local.jsonl", tmp_path / "s3.jsonl"
    assert gov("aggregate", str(lake), "--out", str(local_out), cwd=lake_ws).exit_code == 0
    result = gov("aggregate", "s3://judged/grpo", "--out", str(s3_out), cwd=lake_ws)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("s3://judged/grpo/: 6 files")
    assert s3_out.read_bytes() == local_out.read_bytes()
    assert read_counts(s3_out) == expected_counts(records)

    # the manifest names the lake by its URI and each file by the version counted
    local = json.loads(Path(f"{local_out}.manifest.json").read_text())
    stored = json.loads(Path(f"{s3_out}.manifest.json").read_text())
    assert stored["lake"] == "s3://judged/grpo/"
    assert [(f["path"], f["size"], f["md5"]) for f in stored["files"]] == [
        (f["path"], f["size"], f["md5"]) for f in local["files"]
    ]
    assert {f["path"]: f["version"] for f in stored["files"]} == versions
    assert all(f["etag"] == f'"{f["md5"]}"' for f in stored["files"])

    # a file rewritten after the count: its new version is what the next count names
    rel = "run=main/step=200/part-0.parquet"
    write_file(tmp_path / "new.parquet", mixed(200, 10), TYPES)
    put = s3.put_object(
        Bucket="judged", Key=f"grpo/{rel}", Body=(tmp_path / "new.parquet").read_bytes()
    )
    assert gov("aggregate", "s3://judged/grpo/", "--out", str(s3_out), cwd=lake_ws).exit_code == 0
    again = json.loads(Path(f"{s3_out}.manifest.json").read_text())
    assert (
        {f["path"]: f["version"] for f in again["files"]}[rel] == put["VersionId"] != versions[rel]
    )

    result = gov("ingest", str(s3_out), cwd=lake_ws)
    assert result.exit_code == 0, result.stderr


def test_without_versioning_the_manifest_names_each_file_by_its_etag(
    gov, lake_ws: Path, s3: Any, tmp_path: Path
) -> None:
    lake = write_lake(tmp_path / "lake", mixed(100, 12))
    upload(s3, lake, bucket(s3, "plain", versioned=False) + "/lake")
    out = tmp_path / "c.jsonl"
    result = gov("aggregate", "s3://plain/lake", "--out", str(out), cwd=lake_ws)
    assert result.exit_code == 0, result.stderr
    files = json.loads(Path(f"{out}.manifest.json").read_text())["files"]
    assert [f["version"] for f in files] == [None, None]
    assert [f["etag"] for f in files] == [f'"{f["md5"]}"' for f in files]


def test_a_bad_lake_in_a_bucket_is_one_line(gov, lake_ws: Path, s3: Any, tmp_path: Path) -> None:
    """Each refused in one line naming the URI, exit 2, no counts written and the workspace
    untouched: a bad row (by file and row, as in a folder), an empty prefix, a missing bucket,
    an unknown run's partition, and a Spark cluster, whose executors cannot read gov's copy."""
    lake = write_lake(tmp_path / "lake", mixed(100, 6))
    write_file(
        lake / "run=main/step=100/part-9.parquet",
        [episode(100, 91), {**episode(100, 92), "verdict": "maybe"}],
        TYPES,
    )
    write_file(lake / "run=ghost/step=100/a.parquet", mixed(100, 2), TYPES)
    upload(s3, lake, bucket(s3, "bad", versioned=True) + "/rows")
    (lake / "run=ghost/step=100/a.parquet").unlink()
    upload(s3, lake, "bad/ghostless")
    out = tmp_path / "c.jsonl"
    before = snapshot(lake_ws)
    cases = {
        ("s3://bad/ghostless",): "run=main/step=100/part-9.parquet row 2: field verdict",
        ("s3://bad/rows",): "s3://bad/rows/: run=ghost/ (1 file): run 'ghost' is not registered",
        ("s3://bad/nothing",): "s3://bad/nothing/: an empty lake",
        ("s3://no-such-bucket/lake",): "NoSuchBucket",
        ("s3://bad/ghostless", "--engine", "spark", "--master", "spark://head:7077"): (
            "a Spark cluster's executors cannot read"
        ),
    }
    for args, said in cases.items():
        result = gov("aggregate", *args, "--out", str(out), cwd=lake_ws)
        assert result.exit_code == 2, (args, result.stdout)
        assert len(result.stderr.splitlines()) == 1 and said in result.stderr, (args, result.stderr)
        assert not out.exists()
    assert snapshot(lake_ws) == before


@pytest.mark.spark
def test_spark_on_this_machine_counts_the_copy_as_duckdb_does(
    spark, gov, lake_ws: Path, s3: Any, tmp_path: Path
) -> None:
    lake = write_lake(tmp_path / "lake", [*GOOD, GOOD[3]], files=2)
    upload(s3, lake, bucket(s3, "sparked", versioned=True) + "/lake")
    outs = []
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.jsonl"
        result = gov("aggregate", "s3://sparked/lake", "--out", str(out), "--engine", engine,
                     cwd=lake_ws)  # fmt: skip
        assert result.exit_code == 0, result.stderr
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
