"""`GovCallback` through transformers' own callback machinery: real TrainingArguments,
TrainerState and TrainerControl, checkpoint folders written as the Trainer writes them
(trainer_state.json last), and its save_total_limit rotation deleting old ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.trl
transformers = pytest.importorskip("transformers")

from test_watch import _report  # noqa: E402
from transformers import TrainerControl, TrainerState, TrainingArguments  # noqa: E402
from transformers.trainer_callback import CallbackHandler  # noqa: E402

from governance import open_registry  # noqa: E402
from governance.integrations.trl import GovCallback  # noqa: E402

MIX = {"math": 0.5, "code-tests": 0.5}


def save(args: TrainingArguments, state: TrainerState, step: int, keep: int | None) -> Path:
    """What Trainer._save_checkpoint writes, in its order, then its rotation (keep the newest
    `keep`): the folder the callback's on_save is called after."""
    out = Path(args.output_dir)
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes([step % 251]) * 2048)
    (folder / "training_args.bin").write_bytes(b"args")
    (folder / "optimizer.pt").write_bytes(b"optimizer")
    (folder / "scheduler.pt").write_bytes(b"scheduler")
    (folder / "rng_state.pth").write_bytes(b"rng")
    state.global_step = step
    state.save_to_json(str(folder / "trainer_state.json"))
    if keep is not None:
        old = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for gone in old[:-keep]:
            shutil.rmtree(gone)
    return folder


def test_each_save_is_registered_and_survives_the_rotation(workspace: Path, tmp_path: Path) -> None:
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], save_total_limit=1)
    state, control = TrainerState(), TrainerControl()
    lines: list[str] = []
    callback = GovCallback(workspace, run="main", exposure=MIX, say=lines.append)
    handler = CallbackHandler([callback], None, None, None, None)
    for step in (10, 20, 30):
        save(args, state, step, keep=args.save_total_limit)
        control = handler.on_save(args, state, control)
    registry = open_registry(workspace)
    assert [c.step for c in registry.checkpoints("main")] == [10, 20, 30]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-30"]
    for step in (10, 20):  # rotated away by the Trainer; pinned by gov
        pinned = workspace / registry.checkpoint("main", step).artifact
        assert (pinned / "model.safetensors").read_bytes() == bytes([step % 251]) * 2048
    assert [line.split(" from ")[0] for line in lines] == [
        "registered main@10",
        "registered main@20",
        "registered main@30",
    ]
    assert not control.should_training_stop


@pytest.mark.parametrize("stop", [True, False])
def test_a_block_stops_training_only_when_asked(
    workspace: Path, tmp_path: Path, stop: bool
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[])
    state, control = TrainerState(), TrainerControl()
    callback = GovCallback(
        workspace, run="main", exposure=MIX, reports=reports, stop_on_block=stop,
        stop_file=tmp_path / "GOV_STOP", say=lambda _line: None,
    )  # fmt: skip
    handler = CallbackHandler([callback], None, None, None, None)
    stopped_at = None
    for step in range(100, 1300, 100):
        _report(
            reports / f"step-{step}.jsonl", step, {"math": 2 if step < 900 else 60, "code-tests": 2}
        )
        save(args, state, step, keep=None)
        control = handler.on_save(args, state, control)
        if control.should_training_stop and stopped_at is None:
            stopped_at = step
    blocked = json.loads((tmp_path / "GOV_STOP").read_text())["checkpoint"]
    assert 900 <= int(blocked.split("@")[1]) <= 1200
    if stop:
        assert stopped_at == int(blocked.split("@")[1])
    else:
        assert stopped_at is None


def test_a_real_trainer_run_registers_its_checkpoints(workspace: Path, tmp_path: Path) -> None:
    """A few steps of a real transformers Trainer on a tiny randomly initialised model built
    from a config (nothing downloaded), saving every 2 steps and keeping 1: each checkpoint
    the Trainer saved is registered, and those its rotation deleted are pinned."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("accelerate")  # what the Trainer needs with torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    rows = [{"input_ids": [i % 32, (i + 1) % 32, (i + 2) % 32, (i + 3) % 32]} for i in range(16)]
    data = [{**r, "labels": r["input_ids"]} for r in rows]
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=6, save_steps=2, save_total_limit=1,
        per_device_train_batch_size=4, report_to=[], use_cpu=True, logging_steps=100,
    )  # fmt: skip
    callback = GovCallback(workspace, run="main", exposure=MIX, say=lambda _line: None)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    registry = open_registry(workspace)
    assert [c.step for c in registry.checkpoints("main")] == [2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-6"]
    for step in (2, 4):
        pinned = workspace / registry.checkpoint("main", step).artifact
        assert (pinned / "model.safetensors").stat().st_size > 0
        assert json.loads((pinned / "trainer_state.json").read_text())["global_step"] == step


def test_an_evaluation_s_completions_do_not_take_the_training_s_place(
    workspace: Path, tmp_path: Path
) -> None:
    """TRL's GRPO trainer logs an evaluation's completions to the training's file of that step
    (no column tells them apart), after the Trainer's on_log and before its on_evaluate: gov
    judged the evaluation's rollouts as the training's. The callback keeps them apart."""
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[])
    state, control = TrainerState(), TrainerControl()
    callback = GovCallback(workspace, run="main", exposure=MIX, rollouts=tmp_path / "out")
    handler = CallbackHandler([callback], None, None, None, None)
    completions = tmp_path / "out" / "completions"
    completions.mkdir(parents=True)
    path = completions / "completions_00010.parquet"
    state.global_step = 10
    # the Trainer's order at a step that logs and evaluates (_maybe_log_save_evaluate)
    control = handler.on_log(args, state, control, logs={"loss": 0.5})
    path.write_bytes(b"the training's completions")  # GRPOTrainer.log, after on_log
    control = handler.on_log(args, state, control, logs={"eval_loss": 0.4})
    path.write_bytes(b"the evaluation's completions")  # the same file, after on_log
    control = handler.on_evaluate(args, state, control, metrics={"eval_loss": 0.4})
    assert path.read_bytes() == b"the training's completions"
    assert (completions / "completions_00010-eval.parquet").read_bytes() == (
        b"the evaluation's completions"
    )
    # an evaluation at a step that did not log: its file is the evaluation's alone
    state.global_step = 15
    control = handler.on_log(args, state, control, logs={"eval_loss": 0.3})
    (completions / "completions_00015.parquet").write_bytes(b"evaluation only")
    control = handler.on_evaluate(args, state, control, metrics={"eval_loss": 0.3})
    assert not (completions / "completions_00015.parquet").exists()
    assert (completions / "completions_00015-eval.parquet").read_bytes() == b"evaluation only"
