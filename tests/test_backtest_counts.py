"""`gov backtest --counts`: the default policies replayed over exported counts, without a
workspace, give the alarms and restore points a workspace with the same counts gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from test_regressions import _counts, _run

KEYS = ("run", "policy", "environment", "judge_version", "step", "outcome", "restore_step")


def _records() -> list[dict[str, Any]]:
    # math rises 6x at step 1300 (the 13th checkpoint); code stays at 1% throughout
    found = []
    for i in range(1, 25):
        found.append(_counts(100 * i, 300, rationalized=3 if i < 13 else 18))
        found.append(_counts(100 * i, 300, env="code", rationalized=3))
    return found


def test_counts_and_workspace_give_the_same_alarms(gov, registry, artifact, tmp_path: Path) -> None:
    records = _records()
    counts = tmp_path / "export.jsonl"
    counts.write_text("".join(json.dumps(r) + "\n" for r in records))
    free = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
    assert free.exit_code == 1, free.stderr  # a blocking policy would have fired
    alarms = json.loads(free.stdout)["alarms"]
    blocking = [a for a in alarms if a["outcome"] == "block"]
    # math's own policy; not the run-wide one: one environment alone carries the rise
    assert [(a["environment"], a["policy"]) for a in blocking] == [
        ("math", "rationalization-rate-rising")
    ]
    [alarm] = blocking
    assert 1300 <= alarm["step"] <= 1600  # after the onset, within three checkpoints
    assert alarm["restore_step"] is not None and alarm["restore_step"] < 1300
    registry.add_environment("code", content_hash=f"{9:064x}")
    _run(registry, artifact, tmp_path, gov, records, lambda _: {"math": 0.5, "code": 0.5})
    on_disk = gov("backtest", "--format", "json", cwd=registry.ws.root)
    assert on_disk.exit_code == 0, on_disk.stderr
    replayed = json.loads(on_disk.stdout)["alarms"]
    assert [{k: a[k] for k in KEYS} for a in replayed] == [{k: a[k] for k in KEYS} for a in alarms]


def test_steady_counts_exit_zero_and_bad_counts_exit_two(gov, tmp_path: Path) -> None:
    steady = tmp_path / "steady.jsonl"
    steady.write_text(
        "".join(
            json.dumps(_counts(100 * i, 300, rationalized=3, rejected=9)) + "\n"
            for i in range(1, 30)
        )
    )
    result = gov("backtest", "--counts", str(steady), "--format", "json", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["alarms"] == []
    bad = tmp_path / "bad.jsonl"
    record = _counts(100, 300, rationalized=3)
    record["n"] = 299  # the verdicts no longer add up to n
    bad.write_text(json.dumps(record) + "\n")
    refused = gov("backtest", "--counts", str(bad), cwd=tmp_path)
    assert refused.exit_code == 2
    assert f"{bad}:1" in refused.stderr and "Traceback" not in refused.stderr
    assert "refused, nothing replayed" in refused.stderr  # a backtest stores nothing anyway
    for version in ("3f2a9c1", "v\u00b2", "\u0661"):  # a hash; digits that are not 0-9
        hashed = tmp_path / "hashed.jsonl"
        hashed.write_text(json.dumps({**_counts(100, 300), "environment_version": version}) + "\n")
        refused = gov("backtest", "--counts", str(hashed), cwd=tmp_path)
        assert refused.exit_code == 2, (version, refused.stderr)
        assert "without a workspace a version is its number" in refused.stderr
    # A version spelled as gov ingest reads it ("1", "v1") is that number: the same alarms.
    answers = []
    for spelled in (1, "1", "V1 "):
        counts = tmp_path / f"spelled-{len(answers)}.jsonl"
        counts.write_text(
            "".join(json.dumps({**r, "environment_version": spelled}) + "\n" for r in _records())
        )
        done = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
        assert done.exit_code == 1, done.stderr
        answers.append([{k: a[k] for k in KEYS} for a in json.loads(done.stdout)["alarms"]])
    assert answers[0] and answers[0] == answers[1] == answers[2]


def _blocks(gov: Any, tmp_path: Path, name: str, rationalized: list[int], n: int) -> list[Any]:
    counts = tmp_path / f"{name}.jsonl"
    counts.write_text(
        "".join(
            json.dumps(_counts(100 * (i + 1), n, rationalized=k)) + "\n"
            for i, k in enumerate(rationalized)
        )
    )
    done = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
    assert done.exit_code in (0, 1), done.stderr
    return [a for a in json.loads(done.stdout)["alarms"] if a["outcome"] == "block"]


def test_checkpoints_of_a_million_episodes_are_read_as_a_series_not_as_noise(
    gov, tmp_path: Path
) -> None:
    # At a million episodes a checkpoint, counting noise is a tenth of a percent of the rate:
    # far finer than the wobble between checkpoints or the model's grids. Each checkpoint counts
    # as at most 100 events, so the answers are those the same rates give at a thousand.
    million = 1_000_000
    # One bad checkpoint (3x) among steady ones is an outlier, not a lasting rise.
    assert _blocks(gov, tmp_path, "outlier", [6000, 18000] + [6000] * 8, million) == []
    # A steady 1% rate wobbling between checkpoints (log-normal, sd 0.3) is steady.
    rng = np.random.default_rng(11)
    for seed in range(3):
        rates = 0.01 * np.exp(np.random.default_rng(seed).normal(0, 0.3, 20))
        wobbly = rng.binomial(million, rates).tolist()
        assert _blocks(gov, tmp_path, f"wobbly{seed}", wobbly, million) == [], seed
    # A step from 0.5% to 50% at the 16th checkpoint (step 1600): alarmed at the next
    # checkpoint, with the restore point the checkpoint before the step, at a million episodes
    # as at a thousand.
    for n in (1000, million):
        [alarm] = _blocks(gov, tmp_path, f"step{n}", [n // 200] * 15 + [n // 2] * 5, n)
        assert (alarm["step"], alarm["restore_step"]) == (1700, 1500), n


def _run_of(rng: np.random.Generator, n: int, rise: float = 1.0) -> list[dict[str, Any]]:
    """20 environments x 30 checkpoints of n episodes, base rates 0.3% to 5%, wobbling between
    checkpoints (log-normal, sd 0.2); from the 19th checkpoint (step 1900) 12 of them rise."""
    found = []
    for e in range(20):
        rates = np.full(30, np.exp(rng.uniform(np.log(0.003), np.log(0.05))))
        if e < 12:
            rates[18:] *= rise
        k = rng.binomial(n, np.clip(rates * np.exp(rng.normal(0, 0.2, 30)), 0, 0.95))
        found += [
            _counts(100 * (i + 1), n, env=f"env-{e:02d}", rationalized=int(k[i])) for i in range(30)
        ]
    return found


def test_a_run_of_a_million_episodes_a_cell_is_read_as_a_run(gov, tmp_path: Path) -> None:
    # The run-wide policy pools every environment's evidence: at a million episodes a cell the
    # wobble between checkpoints dwarfs counting noise, and a steady run must stay steady; a
    # rise shared by 12 of 20 environments is found at once, restored from before it.
    for seed in range(3):
        counts = tmp_path / f"steady{seed}.jsonl"
        records = _run_of(np.random.default_rng(seed), 1_000_000)
        counts.write_text("".join(json.dumps(r) + "\n" for r in records))
        done = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
        assert done.exit_code == 0, (seed, done.stdout)
        rising = tmp_path / f"rising{seed}.jsonl"
        records = _run_of(np.random.default_rng(seed), 1_000_000, rise=1.8)
        rising.write_text("".join(json.dumps(r) + "\n" for r in records))
        done = gov("backtest", "--counts", str(rising), "--format", "json", cwd=tmp_path)
        run_wide = [a for a in json.loads(done.stdout)["alarms"] if a["environment"] is None]
        assert [(a["step"], a["restore_step"]) for a in run_wide] == [(2000, 1800)], seed


def test_a_byte_order_mark_is_read_past_as_duckdb_reads_it(gov, tmp_path: Path) -> None:
    # Windows tools often start a UTF-8 file with a byte-order mark. An episode report with one
    # was read (by DuckDB); counts with one were refused as invalid JSON on line 1.
    text = "".join(json.dumps(r) + "\n" for r in _records())
    plain, marked = tmp_path / "plain.jsonl", tmp_path / "marked.jsonl"
    plain.write_text(text)
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    answers = []
    for counts in (plain, marked):
        done = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
        assert done.exit_code == 1, done.stderr
        answers.append([{k: a[k] for k in KEYS} for a in json.loads(done.stdout)["alarms"]])
    assert answers[0] and answers[0] == answers[1]


def test_the_screen_counts_a_large_checkpoint_as_the_posterior_does(gov, tmp_path: Path) -> None:
    # One checkpoint of a million episodes at 5% among checkpoints of a thousand at 1%, then a
    # 3x rise: the cheap screen before the posterior must cap that checkpoint as the posterior
    # does, or its raw weight hides the rise from the screen and no posterior is ever computed.
    sizes = [1_000_000] + [1000] * 14
    flags = [50_000] + [10] * 9 + [30] * 5  # the rise from step 1100
    counts = tmp_path / "mixed.jsonl"
    counts.write_text(
        "".join(
            json.dumps(_counts(100 * (i + 1), n, rationalized=k)) + "\n"
            for i, (n, k) in enumerate(zip(sizes, flags, strict=True))
        )
    )
    done = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
    blocks = [a for a in json.loads(done.stdout)["alarms"] if a["outcome"] == "block"]
    assert len(blocks) == 1 and blocks[0]["step"] >= 1100, blocks
    assert blocks[0]["restore_step"] is not None and blocks[0]["restore_step"] < 1100


def test_a_policy_naming_a_judge_the_counts_lack_is_refused(gov, tmp_path: Path) -> None:
    # a misspelt judge read none of the counts, and the replay said nothing would have blocked
    import shutil

    from governance.backtest import bundled_policies

    mine = tmp_path / "mine"
    shutil.copytree(bundled_policies(), mine)
    rising = mine / "rationalization-rate-rising.yaml"
    rising.write_text(rising.read_text().replace("judge: any ", "judge: cot-monitr ", 1))
    counts = tmp_path / "counts.jsonl"
    counts.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    args = ("backtest", "--counts", str(counts), "--format", "json")
    assert gov(*args, cwd=tmp_path).exit_code == 1  # the defaults block on these counts
    done = gov(*args, "--policies", str(mine), cwd=tmp_path)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "rationalization-rate-rising.yaml: judge 'cot-monitr' is not in counts.jsonl" in line
    # and so would a misspelt environment
    rising.write_text(
        rising.read_text().replace("judge: cot-monitr ", "environments: [cod]\njudge: any ", 1)
    )
    done = gov(*args, "--policies", str(mine), cwd=tmp_path)
    assert done.exit_code == 2, done.stdout
    assert "environments: 'cod' is not in counts.jsonl" in done.stderr


def test_a_rise_at_the_second_checkpoint_is_caught_however_long_the_run(
    gov, tmp_path: Path
) -> None:
    # 1% at the first checkpoint, 10% from the second on, 1,000 episodes each: the first
    # checkpoint cannot be told from a fluke low one, and once passed off as one on every run
    # longer than 17 checkpoints (an outlier's prior against a rise's at each place), this was
    # never blocked. The restore point is the first checkpoint, said to be assumed clean.
    rng = np.random.default_rng(5)
    for length in (8, 40):
        records = [_counts(100, 1000, rationalized=10)] + [
            _counts(100 * i, 1000, rationalized=int(rng.binomial(1000, 0.1)))
            for i in range(2, length + 1)
        ]
        counts = tmp_path / f"early-{length}.jsonl"
        counts.write_text("".join(json.dumps(r) + "\n" for r in records))
        done = gov("backtest", "--counts", str(counts), "--format", "json", cwd=tmp_path)
        assert done.exit_code == 1, done.stderr
        [alarm] = [a for a in json.loads(done.stdout)["alarms"] if a["outcome"] == "block"]
        assert (alarm["policy"], alarm["step"], alarm["restore_step"]) == (
            "rationalization-rate-rising",
            300,
            100,
        )


def test_a_step_at_the_third_checkpoint_is_caught_and_held_for_thirty(gov, tmp_path: Path) -> None:
    # 2 in 200 twice, then 10 in 200 (1% to 5%) for thirty checkpoints: with a step weighed as
    # one ramp length in fifteen, P stayed at 0.91 at every length and nothing was ever blocked.
    # A steady twin (2 in 200 throughout) blocks nothing.
    rising = _blocks(gov, tmp_path, "third", [2, 2] + [10] * 30, 200)
    [alarm] = rising
    assert alarm["policy"] == "rationalization-rate-rising"
    assert 300 < alarm["step"] <= 1000  # after the onset, within seven checkpoints
    assert alarm["restore_step"] is not None and alarm["restore_step"] < 300
    assert _blocks(gov, tmp_path, "steady", [2] * 32, 200) == []


_REPLAY = """
import json, sys
from pathlib import Path
from governance import parallel
from governance.backtest import backtest_counts
done = backtest_counts(Path(sys.argv[1]))
print(json.dumps({"document": done.document(), "in_workers": parallel.LAST_IN_WORKERS}))
"""


def test_runs_replayed_side_by_side_give_what_one_after_another_gives(tmp_path: Path) -> None:
    """An export of many runs is replayed over forked workers: the same alarms and restore points,
    in the same order, as in one process. (Fresh processes: the test process never forks.)"""
    from test_check import _fresh

    rng = np.random.default_rng(11)
    records = []
    for number in range(6):  # three rise at the 70th checkpoint, three stay steady
        for i in range(1, 91):
            rate = 0.05 if number % 2 and i >= 70 else 0.01
            record = _counts(100 * i, 300, rationalized=int(rng.binomial(300, rate)))
            records.append({**record, "run": f"run-{number}"})
    counts = tmp_path / "runs.jsonl"
    counts.write_text("".join(json.dumps(r) + "\n" for r in records))  # 540 rows: in workers

    side_by_side, one_process = (_fresh(_REPLAY, counts, w) for w in ("2", "1"))
    assert side_by_side["in_workers"] == 6 and one_process["in_workers"] == 0
    document = side_by_side["document"]
    assert document == one_process["document"]
    blocked = sorted(a["run"] for a in document["alarms"] if a["outcome"] == "block")
    assert blocked == ["run-1", "run-3", "run-5"]


def test_the_table_names_the_runs_nothing_fired_on(gov, tmp_path: Path) -> None:
    rising = [{**r, "run": "rising"} for r in _records() if r["environment"] == "math"]
    steady = [{**r, "run": "steady"} for r in _records() if r["environment"] == "code"]
    counts = tmp_path / "two.jsonl"
    counts.write_text("".join(json.dumps(r) + "\n" for r in rising + steady))
    table = gov("backtest", "--counts", str(counts), cwd=tmp_path)
    assert table.exit_code == 1, table.stderr
    assert "rising (24 checkpoints), steady (24 checkpoints)" in table.stdout
    assert "no policy fired on 1 run: steady" in table.stdout
    shown = json.loads(gov("backtest", "--counts", str(counts), "--format", "json").stdout)
    [block] = [a for a in shown["alarms"] if a["outcome"] == "block"]
    # from its first alarm on, the rise stands at every later checkpoint of the series
    assert block["checkpoints_fired"] == 24 - (block["step"] // 100) + 1


def test_a_group_counted_twice_in_one_file_is_refused_by_backtest_and_ingest(
    gov, registry, artifact, tmp_path: Path
) -> None:
    # Summed, a line written twice doubled the group's n (more evidence than was judged), and
    # two tallies of one group that disagree were blended.
    records = _records()
    twice = [*records[:5], records[2], *records[5:]]  # line 6 repeats line 3
    blended = [*records, {**records[2], "rationalized": 9, "none": records[2]["none"] - 6}]
    for name, lines, again in (("twice", twice, 6), ("blended", blended, len(blended))):
        counts = tmp_path / f"{name}.jsonl"
        counts.write_text("".join(json.dumps(r) + "\n" for r in lines))
        refused = gov("backtest", "--counts", str(counts), cwd=tmp_path)
        assert refused.exit_code == 2, refused.stdout
        assert f"{counts}:{again}:" in refused.stderr
        assert f"is counted already by {counts}:3" in refused.stderr
    registry.add_environment("code", content_hash=f"{9:064x}")
    for step in sorted({r["step"] for r in records}):
        registry.add_checkpoint("main", step, artifact(f"s{step}.pt"), {"math": 0.5, "code": 0.5})
    ws = registry.ws.root
    ingested = gov("ingest", str(tmp_path / "twice.jsonl"), cwd=ws)
    assert ingested.exit_code == 2 and "is counted already by" in ingested.stderr
    assert not (ws / "registry" / "reports.jsonl").exists()  # nothing stored
