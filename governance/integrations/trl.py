"""`GovCallback`: gov in a transformers `Trainer` (and so in TRL's trainers), in-process.

    from governance.integrations.trl import GovCallback

    trainer = GRPOTrainer(..., callbacks=[GovCallback(run="main", exposure={"math": 1.0},
                                                      reports="judge-reports")])

At each save (`on_save`, which the Trainer calls once `checkpoint-N/` is written whole and its
retention has run), the process that writes checkpoints does what `gov watch --layout trl
--once` does on the output folder: pins and registers every complete checkpoint not registered
yet, takes in the judge's reports or judges the rollouts, and checks each checkpoint whose
judgments are in. With `stop_on_block=True` a block sets `control.should_training_stop`; the
callback never touches rewards, losses or data. Needs the `trl` extra (transformers).

Judging the rollouts (`rollouts=`): TRL's GRPO trainer logs the completions of an evaluation to
the training's file of that step (`completions/completions_N.parquet`, no column tells them
apart), after the Trainer's `on_log` and before its `on_evaluate`. At an evaluation's `on_log`
the callback keeps the training's file of that step, if there is one; at `on_evaluate` it moves
the evaluation's to `completions_N-eval.parquet` (which gov does not read as training rollouts)
and puts the training's back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .. import api
from ..errors import GovError
from ..storage import atomic_write
from ..watch import Pass


class GovCallback(TrainerCallback):
    """Register, pin and check each checkpoint the Trainer saves (see the module's text).
    `exposure`: ENV[@VERSION] to weight for the whole run, or an exposure file (YAML, with
    step ranges); the other keywords are `api.watch`'s (`reports`, `stop_file`, `rollouts`,
    `judge`, `model`, `endpoint`, `environment`, ...)."""

    def __init__(
        self,
        workspace: Path | str | None = None,
        *,
        run: str,
        exposure: Mapping[str, float] | Path | str,
        stop_on_block: bool = False,
        say: Callable[[str], None] = print,
        **watch: Any,
    ) -> None:
        self.workspace = Path(workspace) if workspace is not None else None
        self.run = run
        self.exposure = exposure if isinstance(exposure, Mapping) else Path(exposure)
        self.stop_on_block = stop_on_block
        self.say = say
        self.watch: dict[str, Any] = {
            k: Path(v) if k in _PATHS and v is not None else v for k, v in watch.items()
        }
        self.passes: list[Pass] = []
        self._evaluating: tuple[Path, bytes | None] | None = None  # see the module's text

    def on_save(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **_: Any,
    ) -> TrainerControl:
        if not state.is_world_process_zero:  # one process registers, as one process saves
            return control
        if args.output_dir is None:
            raise GovError("the Trainer has no output_dir: no checkpoints to register")
        passes = api.watch(
            self.workspace,
            Path(args.output_dir),
            layout="trl",
            run=self.run,
            exposure_file=self.exposure,
            once=True,
            say=self.say,
            **self.watch,
        )
        self.passes.extend(passes)
        if self.stop_on_block and any(p.blocked for p in passes):
            control.should_training_stop = True
        return control

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, float] | None = None,
        **_: Any,
    ) -> TrainerControl:
        """An evaluation's log: keep the training's completions of this step before TRL writes
        the evaluation's over them."""
        evaluation = logs is not None and any(k.startswith("eval_") for k in logs)
        if evaluation and self.watch.get("rollouts") and state.is_world_process_zero:
            path = _completions(args, state.global_step)
            self._evaluating = (path, path.read_bytes() if path.is_file() else None)
        return control

    def on_evaluate(
        self,
        args: TrainingArguments,  # noqa: ARG002 - the Trainer's signature
        state: TrainerState,  # noqa: ARG002
        control: TrainerControl,
        **_: Any,
    ) -> TrainerControl:
        """The evaluation's completions to a file of their own, the training's back in place."""
        if self._evaluating is not None:
            path, trained = self._evaluating
            self._evaluating = None
            if path.is_file():
                path.replace(path.with_name(f"{path.stem}-eval{path.suffix}"))
            if trained is not None:
                atomic_write(path, trained)
        return control


def _completions(args: TrainingArguments, step: int) -> Path:
    """Where TRL's GRPO trainer logs the completions of `step` (log_completions)."""
    return Path(args.output_dir or ".") / "completions" / f"completions_{step:05d}.parquet"


_PATHS = {"reports", "stop_file", "rollouts"}
