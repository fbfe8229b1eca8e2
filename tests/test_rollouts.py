"""`gov transcripts from-trl|from-verl|from-nemo-rl`: the frameworks' rollout dumps, written as
each framework writes them, as transcripts that `gov judge run` reads."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from governance.judging.runner import read_transcripts

THOUGHT = "<think>The tests only check the type. I could return a dummy. No: fix the bug.</think>"


def verl_dump(folder: Path, step: int, completions: list[str]) -> Path:
    """verl's _dump_generations: one JSON line per sample (input, output, gts, score, step)
    plus the reward's extra fields, written in one go."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{step}.jsonl"
    lines = [
        json.dumps(
            {
                "input": f"task {i}",
                "output": text,
                "gts": "42",
                "score": 1.0,
                "step": step,
                "data_source": "math" if i % 2 == 0 else "code-tests",
            }
        )
        for i, text in enumerate(completions)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def trl_dump(folder: Path, step: int, completions: list[str]) -> Path:
    """GRPO's log_completions: completions/completions_{step:05d}.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"completions_{step:05d}.parquet"
    rows = [(step, f"task {i}", text, 1.0, 0.5) for i, text in enumerate(completions)]
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE t (step BIGINT, prompt VARCHAR, completion VARCHAR, "
            "accuracy_reward DOUBLE, advantage DOUBLE)"
        )
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
        con.execute(f"COPY t TO '{path}' (FORMAT parquet)")
    return path


def nemo_dump(folder: Path, step: int, completions: list[str]) -> Path:
    """NeMo-RL's log_batched_dict_as_jsonl: each field a one-element list, and idx, the row
    number. `content` is the message log without roles: the rollout loop appends the
    environment's reply to every sample before the log is written (the math environment's
    "Environment: correct" or "Environment: incorrect")."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"train_data_step{step}.jsonl"
    lines = [
        json.dumps(
            {
                "content": [[f"task {i}", text, f"Environment: {'in' * (i % 2)}correct"]],
                "rewards": [1.0],
                "input_lengths": [12],
                "idx": i,
            }
        )
        for i, text in enumerate(completions)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


DUMPS = {"verl": verl_dump, "trl": trl_dump, "nemo-rl": nemo_dump}


@pytest.mark.parametrize("framework", list(DUMPS))
def test_a_dump_becomes_transcripts_the_judge_reads(
    gov, workspace: Path, tmp_path: Path, framework: str
) -> None:
    dump = DUMPS[framework](
        tmp_path / "dump", 100, [f"{THOUGHT} def f(): return {i}" for i in range(4)]
    )
    out = tmp_path / "transcripts.jsonl"
    done = gov(
        "transcripts", f"from-{framework}", str(dump), "--run", "main",
        "--environment", "math", "--out", str(out), cwd=workspace,
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert "4 transcripts" in done.stdout
    found = read_transcripts([out])  # what gov judge run reads
    assert [t.step for t in found] == [100] * 4
    assert {t.environment for t in found} == {"math"}
    assert all(t.environment_version == 1 for t in found)
    assert found[0].cot == THOUGHT.removeprefix("<think>").removesuffix("</think>")
    assert [t.action for t in found] == [f"def f(): return {i}" for i in range(4)]
    assert found[2].task == "task 2"
    assert len({t.episode for t in found}) == 4


def test_the_environment_can_come_from_a_column(gov, workspace: Path, tmp_path: Path) -> None:
    dump = verl_dump(tmp_path / "dump", 7, [f"{THOUGHT} x" for _ in range(4)])
    out = tmp_path / "t.jsonl"
    done = gov(
        "transcripts", "from-verl", str(dump), "--run", "main",
        "--environment-column", "data_source", "--out", str(out), cwd=workspace,
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert [t.environment for t in read_transcripts([out])] == [
        "math",
        "code-tests",
        "math",
        "code-tests",
    ]


@pytest.mark.parametrize("framework", list(DUMPS))
def test_a_rollout_without_a_chain_of_thought_is_named_and_nothing_is_written(
    gov, workspace: Path, tmp_path: Path, framework: str
) -> None:
    texts = [f"{THOUGHT} ok", "just the answer, no reasoning", f"{THOUGHT} ok"]
    dump = DUMPS[framework](tmp_path / "dump", 100, texts)
    out = tmp_path / "t.jsonl"
    done = gov(
        "transcripts", f"from-{framework}", str(dump), "--run", "main",
        "--environment", "math", "--out", str(out), cwd=workspace,
    )  # fmt: skip
    assert done.exit_code == 2
    where = f"{dump}: row 2" if framework == "trl" else f"{dump}:2"
    assert where in done.stderr and "no </think> in the completion" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_the_split_rule_is_configurable_and_a_template_may_open_the_block(
    gov, workspace: Path, tmp_path: Path
) -> None:
    # DeepSeek-R1-style templates put <think> in the prompt: the completion only closes it.
    dump = verl_dump(tmp_path / "a", 1, ["reasoning here</think>the answer"])
    out = tmp_path / "a.jsonl"
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    assert gov("transcripts", "from-verl", str(dump), *args, cwd=workspace).exit_code == 0
    [t] = read_transcripts([out])
    assert (t.cot, t.action) == ("reasoning here", "the answer")
    custom = verl_dump(tmp_path / "b", 1, ["<reasoning>weigh it</reasoning> done"])
    split = ("--split", "<reasoning>,</reasoning>")
    assert gov("transcripts", "from-verl", str(custom), *args, *split, cwd=workspace).exit_code == 0
    [t] = read_transcripts([out])
    assert (t.cot, t.action) == ("weigh it", "done")


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("truncated", ":2: the line is cut short"),
        ("no-env", "give the environment"),
        ("unknown-env", "environment 'chess' is not registered"),
        ("bad-split", "give the two tags as OPEN,CLOSE"),
        ("unknown-run", "run 'other' is not registered"),
        ("deep", ":3: a value is nested too deeply to read"),
        ("out-is-the-dump", "is one of the rollout dumps it reads"),
        ("out-is-a-folder", "is a folder"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(
    gov, workspace: Path, tmp_path: Path, problem: str, message: str
) -> None:
    dump = verl_dump(tmp_path / "dump", 3, [f"{THOUGHT} a", f"{THOUGHT} b"])
    args = ["--run", "main", "--environment", "math"]
    if problem == "truncated":  # a dump still being written: its last line cut short
        dump.write_bytes(dump.read_bytes()[:-10])
    elif problem == "no-env":
        args = ["--run", "main"]
    elif problem == "unknown-env":
        args = ["--run", "main", "--environment", "chess"]
    elif problem == "bad-split":
        args += ["--split", "<think>"]
    elif problem == "deep":  # 100,000 levels of brackets: Python's reader gives up
        with dump.open("a") as handle:
            handle.write("[" * 100_000 + "\n")
    elif problem == "unknown-run":
        args = ["--run", "other", "--environment", "math"]
    out = tmp_path / "t.jsonl"
    if problem == "out-is-the-dump":
        out = dump
    elif problem == "out-is-a-folder":
        out = tmp_path / "dump"
    before = dump.read_bytes()
    done = gov("transcripts", "from-verl", str(dump), *args, "--out", str(out), cwd=workspace)
    assert done.exit_code == 2
    line = done.stderr.strip().splitlines()[0]  # then the other rollouts a refusal lists
    assert message in line, done.stderr
    assert "Traceback" not in done.stderr
    assert dump.read_bytes() == before
    assert not (tmp_path / "t.jsonl").exists()


def test_a_lone_surrogate_in_a_rollout_is_written_as_a_replacement_character(
    gov, workspace: Path, tmp_path: Path
) -> None:
    # JSON's "\\ud800" reads as a lone UTF-16 surrogate, which UTF-8 cannot hold: writing the
    # transcripts crashed (exit 3)
    dump = verl_dump(tmp_path / "dump", 3, [f"{THOUGHT} broken \ud800 output"])
    assert "\\ud800" in dump.read_text()
    out = tmp_path / "t.jsonl"
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-verl", str(dump), *args, cwd=workspace)
    assert done.exit_code == 0, done.stderr
    [t] = read_transcripts([out])
    assert t.action == "broken \ufffd output"


def test_responses_sampled_for_one_prompt_are_episodes_of_their_own(
    gov, workspace: Path, tmp_path: Path
) -> None:
    # verl's uid names a prompt and is shared by the responses GRPO samples for it: taken as the
    # episode id, the group became one episode judged several times
    dump = verl_dump(tmp_path / "dump", 5, [f"{THOUGHT} try {i}" for i in range(4)])
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    for i, record in enumerate(lines):
        record["uid"] = f"prompt-{i // 2}"
    dump.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "t.jsonl"
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-verl", str(dump), *args, cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert len({t.episode for t in read_transcripts([out])}) == 4


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # two rollouts under one request_id: the second judgment would clash with the first
        (
            lambda lines: [lines[0], lines[1].replace('"step"', '"request_id": "r1", "step"'),
                           lines[2].replace('"step"', '"request_id": "r1", "step"')],
            "5.jsonl:3: episode 'r1' of step 5 (math) is also at ",
        ),
        # a key twice: the reader kept the last text
        (
            lambda lines: [lines[0], lines[1].replace('"gts"', '"output": "<think>x</think>y", "gts"'),
                           lines[2]],
            "5.jsonl:2: key 'output' is given twice",
        ),
        (
            lambda lines: [lines[0].replace('"step"', '"request_id": ["a"], "step"'), *lines[1:]],
            "5.jsonl:1: field request_id: an episode id is a non-empty string or integer",
        ),
    ],
)  # fmt: skip
def test_a_rollout_id_given_twice_or_a_repeated_key_is_refused(
    gov, workspace: Path, tmp_path: Path, edit, message: str
) -> None:
    dump = verl_dump(tmp_path / "dump", 5, [f"{THOUGHT} try {i}" for i in range(3)])
    lines = dump.read_text().splitlines()
    dump.write_text("\n".join(edit(lines)) + "\n")
    out = tmp_path / "t.jsonl"
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-verl", str(dump), *args, cwd=workspace)
    assert done.exit_code == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_the_same_dump_given_twice_is_refused(gov, workspace: Path, tmp_path: Path) -> None:
    dump = nemo_dump(tmp_path / "dump", 9, [f"{THOUGHT} try {i}" for i in range(2)])
    out = tmp_path / "t.jsonl"
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-nemo-rl", str(dump), str(dump), *args, cwd=workspace)
    assert done.exit_code == 2, done.stdout
    assert "episode '9-0' of step 9 (math) is also at " in done.stderr
    assert not out.exists()


def test_a_step_column_of_whole_floats_is_the_step(gov, workspace: Path, tmp_path: Path) -> None:
    # a step column written as floats (12.0) read as no step at all
    path = tmp_path / "completions" / "completions_00012.parquet"
    path.parent.mkdir()
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT 12.0::DOUBLE AS step, 'task' AS prompt, '{THOUGHT} x' AS completion "
            f"FROM range(2)) TO '{path}' (FORMAT parquet)"
        )
    out = tmp_path / "t.jsonl"
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-trl", str(path), *args, cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert [t.step for t in read_transcripts([out])] == [12, 12]
    assert {t.episode for t in read_transcripts([out])} == {"12-1", "12-2"}


def test_a_step_logged_by_two_launches_is_the_newest_launchs(tmp_path: Path) -> None:
    # every NeMo-RL launch logs to a new exp_NNN/: after a resume both hold the steps after the
    # restored one, and reading both refused each of those checkpoints (two rollouts, one id)
    from governance.rollouts import dumps

    logs = tmp_path / "logs"
    for launch, steps in (("exp_001", [1, 2, 3]), ("exp_002", [3, 4]), ("exp_010", [4])):
        for step in steps:
            nemo_dump(logs / launch, step, [f"{THOUGHT} x"])
    found = dumps("nemo-rl", logs)
    assert {s: [p.parent.name for p in paths] for s, paths in found.items()} == {
        1: ["exp_001"],
        2: ["exp_001"],
        3: ["exp_002"],
        4: ["exp_010"],  # by number: exp_010 is after exp_002
    }


def test_a_trl_dump_that_logs_the_same_generation_again_is_left_out(
    gov, workspace: Path, tmp_path: Path
) -> None:
    # TRL keeps the last generation's completions until the next generation: with two optimizer
    # steps a generation, the dump of step 11 repeats step 10's but for the step, and those
    # rollouts were counted twice
    folder = tmp_path / "completions"
    trl_dump(folder, 10, [f"{THOUGHT} first {i}" for i in range(3)])
    trl_dump(folder, 11, [f"{THOUGHT} first {i}" for i in range(3)])  # no new generation
    trl_dump(folder, 12, [f"{THOUGHT} second {i}" for i in range(3)])
    out = tmp_path / "t.jsonl"
    files = [str(folder / f"completions_000{s}.parquet") for s in (10, 11, 12)]
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-trl", *files, *args, cwd=workspace)
    assert done.exit_code == 0, done.stderr
    found = read_transcripts([out])
    assert [t.step for t in found] == [10] * 3 + [12] * 3
    assert len({(t.task, t.action) for t in found}) == 6
    repeated = gov("transcripts", "from-trl", files[1], *args, cwd=workspace)
    assert repeated.exit_code == 0  # on its own, nothing comes before it


def test_a_nemo_rl_response_cut_short_is_refused_not_read_off_the_prompt(
    gov, workspace: Path, tmp_path: Path
) -> None:
    # a response cut at the token limit has no </think>; the prompt before it names the tags,
    # and was cut as if it were the response
    path = tmp_path / "dump" / "train_data_step4.jsonl"
    path.parent.mkdir()
    turns = [
        "You are a careful assistant.",
        "Reason within <think> and </think> tags, then answer. What is 17*23?",
        "<think>17*23 = 391, let me check that by",
        "Environment: incorrect",
    ]
    path.write_text(json.dumps({"content": [turns], "idx": 0}) + "\n")
    out = tmp_path / "t.jsonl"
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-nemo-rl", str(path), *args, cwd=workspace)
    assert done.exit_code == 2, done.stdout
    assert "train_data_step4.jsonl:1: no </think>" in done.stderr and not out.exists()


def test_a_trl_dump_of_the_evaluation_s_completions_is_left_out(
    gov, workspace: Path, tmp_path: Path
) -> None:
    # TRL's trainer keeps training's and evaluation's completions in the same deques: a
    # training dump with no generation since an evaluation logs the evaluation's again (kept
    # apart by GovCallback as completions_N-eval.parquet), and they were judged as training's
    folder = tmp_path / "completions"
    trl_dump(folder, 10, [f"{THOUGHT} train {i}" for i in range(3)])
    evaluation = trl_dump(tmp_path / "eval", 10, [f"{THOUGHT} eval {i}" for i in range(2)])
    evaluation.rename(folder / "completions_00010-eval.parquet")
    trl_dump(folder, 11, [f"{THOUGHT} eval {i}" for i in range(2)])  # no generation since
    out = tmp_path / "t.jsonl"
    files = [str(folder / f"completions_000{s}.parquet") for s in (10, 11)]
    args = ("--run", "main", "--environment", "math", "--out", str(out))
    done = gov("transcripts", "from-trl", *files, *args, cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert [t.action for t in read_transcripts([out])] == [f"train {i}" for i in range(3)]
