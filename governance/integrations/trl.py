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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .. import api
from ..errors import GovError
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


_PATHS = {"reports", "stop_file", "rollouts"}
