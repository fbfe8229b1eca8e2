"""The frameworks' rollout dumps as transcripts for gov's judge: what the model was asked (the
task), its chain of thought, and its final action, split by a rule (default: the text inside
`<think>...</think>` is the chain of thought, what follows it the action).

The dumps, as each framework writes them (read from their sources; versions in the README):
- trl: `OUTPUT/completions/completions_NNNNN.parquet` (GRPO's `log_completions`): columns
  `step`, `prompt`, `completion`, one per reward function, `advantage`.
- verl: `rollout_data_dir/N.jsonl` (`trainer.rollout_data_dir`): `input`, `output`, `score`,
  `step`, and the reward's extra fields (`gts`, ...).
- nemo-rl: `logs/exp_NNN/train_data_stepN.jsonl`: every field a one-element list (the batch
  of one), `content` the turns as strings without their roles (the prompt first, then the
  response, then the environment's reply, which the rollout loop adds before the log is
  written: the response is the last turn or the one before it, see `_response`), and `idx`,
  the row number.

A rollout the rule cannot split (no chain of thought in it) is named by file and line (or row),
and nothing is written.

Each rollout's episode id is its place in its dump (`STEP-LINE`, NeMo-RL's own `idx` being the
same), or verl's `request_id` where the dump carries one (verl 0.5's SGLang rollout set one per
response; 0.7 dumps none). Not verl's `uid`: it
names a prompt, shared by all the responses sampled for it (GRPO's group), and would make them
one episode judged several times. Two rollouts of one step and environment with the same id are
refused, naming both, as is a key given twice in one record (the reader would keep the last).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GovError
from .ingest.formats import Problems
from .judging.runner import Transcript
from .judgments import repeated_key
from .storage import write_output

FRAMEWORKS = ("trl", "verl", "nemo-rl")


@dataclass(frozen=True)
class Split:
    """The rule that cuts a completion into chain of thought and action: the text between
    `open` and `close` is the chain of thought, what follows `close` the action. A completion
    without `open` whose chat template opened the block in the prompt still splits at `close`."""

    open: str = "<think>"
    close: str = "</think>"

    def __call__(self, text: str) -> tuple[str, str] | str:
        """(cot, action), or why the text cannot be split."""
        end = text.find(self.close)
        if end < 0:
            return f"no {self.close} in the completion: no chain of thought to read"
        start = text.find(self.open)
        begin = start + len(self.open) if 0 <= start < end else 0
        cot, action = text[begin:end].strip(), text[end + len(self.close) :].strip()
        if not cot:
            return f"an empty {self.open}...{self.close}: no chain of thought to read"
        return cot, action


def parse_split(rule: str) -> Split:
    """`OPEN,CLOSE` (e.g. `<think>,</think>`, the default)."""
    parts = rule.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise GovError(f"--split {rule!r}: give the two tags as OPEN,CLOSE, e.g. <think>,</think>")
    return Split(parts[0].strip(), parts[1].strip())


@dataclass(frozen=True)
class Rollout:
    where: str  # file:line or file: row N, for messages
    step: int
    episode: str
    task: str
    completion: str
    fields: dict[str, Any]  # the record as the framework wrote it (for an environment column)
    # NeMo-RL's turns, the prompt first, without their roles: the response is found among them
    # (see `_response`); empty where the framework writes the completion on its own
    turns: tuple[str, ...] = ()


_STEP_IN_NAME = {
    "trl": re.compile(r"completions_(\d+)\.parquet"),
    "verl": re.compile(r"(\d+)\.jsonl"),
    "nemo-rl": re.compile(r"train_data_step(\d+)\.jsonl"),
}


def step_of(framework: str, path: Path) -> int | None:
    match = _STEP_IN_NAME[framework].fullmatch(path.name)
    return int(match.group(1)) if match else None


def dumps(framework: str, folder: Path) -> dict[int, list[Path]]:
    """The dump files under a framework's rollout folder, by the step in their names: TRL's
    `completions/` (or the folder itself), verl's folder, NeMo-RL's `exp_NNN/` folders (a
    resumed run writes into a new one: a step written by two launches is the newest's)."""
    if framework == "trl" and (folder / "completions").is_dir():
        folder = folder / "completions"
    candidates = folder.rglob("*") if framework == "nemo-rl" else folder.glob("*")
    found: dict[int, list[Path]] = {}
    for path in sorted(candidates):
        step = step_of(framework, path) if path.is_file() else None
        if step is not None:
            found.setdefault(step, []).append(path)
    if framework == "nemo-rl":
        # Each launch logs to a new exp_NNN/ (a resumed run writes its steps again there, and
        # an earlier experiment may share logs/): a step's rollouts are the newest launch's.
        found = {step: [max(paths, key=_launch)] for step, paths in found.items()}
    return found


def _launch(path: Path) -> tuple[int, str]:
    """The order of NeMo-RL's launch folders (exp_009 before exp_010, by number)."""
    digits = re.fullmatch(r"exp_(\d+)", path.parent.name)
    return (int(digits.group(1)) if digits else -1, str(path))


def read(framework: str, path: Path) -> Iterator[Rollout]:
    """The rollouts of one dump file; GovError naming the file and line where it is not one."""
    if framework not in FRAMEWORKS:
        raise GovError(f"unknown framework {framework!r}: one of {', '.join(FRAMEWORKS)}")
    if not path.is_file():
        raise GovError(f"{path}: no such file")
    named = step_of(framework, path)
    if framework == "trl":
        yield from _trl(path, named)
    else:
        yield from _jsonl(framework, path, named)


def _trl(path: Path, named: int | None) -> Iterator[Rollout]:
    from .storage import duckdb_connect

    try:
        with duckdb_connect() as con:
            cursor = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
            columns = [c[0] for c in cursor.description]
            rows = cursor.fetchall()
    except Exception as exc:  # duckdb's errors: a file that is not Parquet, or truncated
        detail = " ".join(str(exc).split())[:200]
        raise GovError(f"{path}: cannot be read as TRL's completions Parquet: {detail}") from None
    missing = {"prompt", "completion"} - set(columns)
    if missing:
        raise GovError(f"{path}: no {', '.join(sorted(missing))} column (TRL's completions)")
    for number, values in enumerate(rows, 1):
        record = dict(zip(columns, values, strict=True))
        step = record.get("step")
        if step is None:
            step = named
        elif isinstance(step, float) and step.is_integer():  # a column of floats (pandas)
            step = int(step)
        yield Rollout(
            f"{path}: row {number}",
            step if isinstance(step, int) and not isinstance(step, bool) else -1,
            f"{step}-{number}",
            _text(record["prompt"]),
            _text(record["completion"]),
            record,
        )


def _jsonl(framework: str, path: Path, named: int | None) -> Iterator[Rollout]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                raise GovError(f"{where}: the line is cut short (the file is still being written?)")
            try:
                record = json.loads(raw)
            except ValueError:
                raise GovError(f"{where}: not JSON") from None
            except RecursionError:
                raise GovError(f"{where}: a value is nested too deeply to read") from None
            if not isinstance(record, dict):
                raise GovError(f"{where}: a rollout is a JSON object")
            twice = repeated_key(raw, len(record))
            if twice is not None:
                raise GovError(f"{where}: key {twice} is given twice (which one is meant?)")
            if framework == "verl":
                yield _verl(record, where, named, number)
            else:
                yield _nemo(record, where, named, number)


def _verl(record: dict[str, Any], where: str, named: int | None, number: int) -> Rollout:
    for name in ("input", "output"):
        if not isinstance(record.get(name), str):
            raise GovError(f"{where}: field {name}: verl's dump has the text here")
    step = record.get("step", named)
    if not isinstance(step, int) or isinstance(step, bool):
        raise GovError(f"{where}: field step: not a step (and the file name gives none)")
    episode = record.get("request_id")
    if episode is None:
        episode = f"{step}-{number}"
    elif isinstance(episode, bool) or not isinstance(episode, str | int) or episode == "":
        raise GovError(f"{where}: field request_id: an episode id is a non-empty string or integer")
    return Rollout(where, step, str(episode), record["input"], record["output"], record)


def _nemo(record: dict[str, Any], where: str, named: int | None, number: int) -> Rollout:
    flat = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in record.items()}
    turns = flat.get("content")
    if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, str) for t in turns):
        raise GovError(f"{where}: field content: NeMo-RL's turns (the prompt, ..., the response)")
    if named is None:
        raise GovError(f"{where}: the file name gives no step (train_data_stepN.jsonl)")
    episode = flat.get("idx", number)
    if isinstance(episode, bool) or not isinstance(episode, int):
        raise GovError(f"{where}: field idx: NeMo-RL's row number, an integer")
    return Rollout(
        where, named, f"{named}-{episode}", "\n\n".join(turns[:-1]), turns[-1], flat, tuple(turns)
    )


def _response(rollout: Rollout, split: Split) -> tuple[tuple[str, str] | str, str]:
    """The rollout's response cut by the rule (or why it cannot be), and its task. NeMo-RL's
    turns carry no roles, and its rollout loop adds the environment's reply after the model's
    response ("Environment: correct") before it logs them: the response is the last turn if the
    rule cuts it (a log without the reply), else the turn before it, never one further back (a
    prompt that names the tags would be cut as if it were the response, where the response was
    cut short)."""
    if not rollout.turns:
        return split(rollout.completion), rollout.task
    turns = rollout.turns
    last = split(turns[-1])
    if not isinstance(last, str):
        return last, "\n\n".join(turns[:-1])
    if len(turns) < 3:
        return last, rollout.task
    before = split(turns[-2])
    if isinstance(before, str):
        return f"{before}, in the response or in the environment's reply after it", rollout.task
    return before, "\n\n".join(turns[:-2])


def _text(value: Any) -> str:
    """A prompt or completion as text: a string, or chat messages (their contents in order)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n\n".join(
            str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value
        )
    return "" if value is None else str(value)


def to_transcripts(
    framework: str,
    paths: list[Path],
    *,
    run: str,
    environment: str | None,
    environment_column: str | None,
    versions: dict[str, int | str],
    split: Split,
    at_step: int | None = None,
    before: Path | None = None,
) -> list[Transcript]:
    """Every rollout of the dumps as a transcript; ReportRejected listing the first rollouts
    that cannot be (no chain of thought, no environment), nothing returned then. `at_step`:
    the checkpoint they are counted at (gov watch: the rollouts since the previous checkpoint
    at the one that follows them), instead of each rollout's own step.

    TRL logs the last generation's completions, and keeps them until the next generation: with
    more than one optimizer step a generation (`num_iterations`, `steps_per_generation`), a
    dump can repeat the one before it but for its step, and is then left out (`before`: the
    dump before the first of `paths`, read only to know it; where every one of `paths` repeats
    it, there is nothing new and the answer is no transcripts)."""
    if (environment is None) == (environment_column is None):
        raise GovError("give the environment: --environment NAME or --environment-column COLUMN")
    found: list[Transcript] = []
    first: dict[tuple[int, str, str], str] = {}  # each episode's first rollout (where)
    last = _batch(list(read(framework, before))) if framework == "trl" and before else None
    since = step_of(framework, before) if framework == "trl" and before else None
    repeats = 0
    for path in paths:
        problems = Problems(str(path))
        logged = list(read(framework, path))
        if framework == "trl":
            batch = _batch(logged)
            if batch == last or batch in _evaluations(path, since):
                repeats += 1
                continue
            last, since = batch, step_of(framework, path)
        for rollout in logged:
            env = environment
            if environment_column is not None:
                value = rollout.fields.get(environment_column)
                if not isinstance(value, str) or not value:
                    problems.add(rollout.where, f"no environment in column {environment_column}")
                    continue
                env = value
            assert env is not None
            if env not in versions:
                problems.add(rollout.where, f"environment {env!r} is not registered")
                continue
            parts, task = _response(rollout, split)
            if isinstance(parts, str):
                problems.add(rollout.where, parts)
                continue
            if rollout.step < 0 and at_step is None:
                problems.add(rollout.where, "no step in the row or the file name")
                continue
            cot, action = parts
            step = rollout.step if at_step is None else at_step
            episode = _unicode(rollout.episode)
            seen = first.get((step, env, episode))
            if seen is not None:  # the same file given twice names the same line again
                problems.add(
                    rollout.where,
                    f"episode {episode!r} of step {step} ({env}) is also at {seen}: "
                    "one id, two rollouts",
                )
                continue
            first[step, env, episode] = rollout.where
            found.append(
                Transcript(
                    run=run,
                    step=step,
                    environment=env,
                    environment_version=versions[env],
                    episode=episode,
                    task=_unicode(task),
                    cot=_unicode(cot),
                    action=_unicode(action),
                )
            )
        problems.raise_if_any()
    if not found and repeats == len(paths) and before is not None:
        return []  # every dump repeats the one before the first: nothing new to judge
    if not found:
        repeated = " (each repeats the dump before it: no new generation)" if repeats else ""
        raise GovError(f"{', '.join(map(str, paths))}: no rollouts{repeated}")
    return found


_EVALUATED = re.compile(r"completions_(\d+)-eval\.parquet")


def _evaluations(path: Path, since: int | None) -> list[list[tuple[tuple[str, str], ...]]]:
    """The batches of the evaluations logged beside a TRL dump (`completions_N-eval.parquet`,
    kept apart by GovCallback) from step `since` up to the dump's own: TRL's trainer logs the
    completions of training and evaluation into the same deques, so a training dump with no
    generation since an evaluation holds the evaluation's completions."""
    step = step_of("trl", path)
    low = -1 if since is None else since
    found = []
    for other in sorted(path.parent.glob("completions_*-eval.parquet")):
        match = _EVALUATED.fullmatch(other.name)
        if match and step is not None and low <= int(match.group(1)) < step:
            found.append(_batch(list(_trl(other, int(match.group(1))))))
    return found


def _batch(logged: list[Rollout]) -> list[tuple[tuple[str, str], ...]]:
    """A dump's rows apart from their step, to tell a batch logged again."""
    return [tuple(sorted((k, repr(v)) for k, v in r.fields.items() if k != "step")) for r in logged]


_SURROGATE = re.compile("[\ud800-\udfff]")  # left in a str by json.loads only when alone


def _unicode(text: str) -> str:
    """Text as valid Unicode: a lone UTF-16 surrogate (JSON's "\\ud800", which a model's
    broken output can hold) becomes U+FFFD, as UTF-8 cannot hold it."""
    return _SURROGATE.sub("\ufffd", text)


def check_out(out: Path, inputs: Sequence[Path]) -> None:
    """The transcripts' file may be written: not a folder, not one of the dumps it is read from."""
    if out.is_dir():
        raise GovError(f"{out}: is a folder: name the transcripts' file, e.g. --out t.jsonl")
    for path in inputs:
        if out.exists() and path.exists() and out.resolve() == path.resolve():
            raise GovError(f"{out}: is one of the rollout dumps it reads: name another file")
        if path.is_dir() and out.resolve().is_relative_to(path.resolve()):
            raise GovError(f"{out}: is inside the rollout folder it reads: name a file outside")


def write(transcripts: list[Transcript], out: Path) -> None:
    """The transcripts as JSONL, whole or not at all."""
    text = "".join(t.model_dump_json() + "\n" for t in transcripts)
    write_output(out, text.encode("utf-8"))
