"""The RL frameworks' checkpoint folders, as each writes them: which folder holds step N, and
when the framework has marked it complete. `gov watch` registers a checkpoint only then: never
a folder still being written. The same rules read a run's output in object storage (an
`s3://` prefix, through `objectstore.S3Folder`), where a framework or its sync job puts it.

Each rule is read from the framework's own source (versions in the README):
- trl: `OUTPUT/checkpoint-N/` (transformers' Trainer, no atomic rename); complete once
  `trainer_state.json`, the last file `_save_checkpoint` writes, parses and names global step
  N, and transformers 5's `checkpoint-is-incomplete.txt` sentinel is absent.
- verl: `OUTPUT/global_step_N/`; complete once `latest_checkpointed_iteration.txt`, written
  after every part of the step, names N or a later step, with `actor/` and `data.pt` in it.
  Retention deletes `actor/` only: a folder left with `data.pt` alone lost its checkpoint.
- nemo-rl: `OUTPUT/step_N/`, written as `tmp_step_N/` and renamed when complete.
- prime-rl: `OUTPUT/checkpoints/step_N/` (OUTPUT: the run's folder or its checkpoints/);
  complete once the trainer's `trainer/.metadata` (torch's distributed checkpoint writes it
  last) and the orchestrator's `orchestrator/progress.pt` are there. Versions up to 0.8.0
  also wrote `weights/step_N/` with a `STABLE` marker when complete.
- openrlhf: `OUTPUT/_actor/global_stepN/` (DeepSpeed), and `OUTPUT/_critic/global_stepN/` where
  the run has a critic; each complete once `metric.json` is in it (0.9.9 on: written by rank 0
  after DeepSpeed's save returns, past its barrier) or the `latest` beside it names a later
  step. Not once `latest` names the step itself: DeepSpeed's rank 0 writes it before the
  barrier, while the other ranks may still be writing their shards. Both are pinned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import GovError
from .objectstore import S3Folder

# A checkpoint folder on disk, or a prefix in object storage read as one
Folder = Path | S3Folder


@dataclass(frozen=True)
class Found:
    """A checkpoint folder of step `step`; `complete` once its framework marked it so.
    `problem`: a complete folder that lacks what its layout requires (one line, said of it)."""

    step: int
    path: Folder
    complete: bool
    problem: str | None = None
    deleted: bool = False  # the framework's retention removed its weights: no checkpoint left
    # Where the checkpoint is more than one folder: each folder and its place in the pin (a
    # model and its critic, kept side by side as the framework keeps them)
    parts: tuple[tuple[str, Folder], ...] = ()


@dataclass(frozen=True)
class Layout:
    name: str
    describe: str  # what its checkpoints look like, for messages
    scan: Callable[[Folder], list[Found]]
    # The file the framework writes last into a checkpoint's folder (`.`: the folder itself,
    # renamed into place whole): a save into the folder again writes it again
    last_written: str = "."


def _numbered(folder: Folder, pattern: str) -> list[tuple[int, Folder]]:
    """The sub-folders of `folder` whose name fully matches `pattern` (one group: the step)."""
    rule = re.compile(pattern)
    found: list[tuple[int, Folder]] = []
    if not folder.is_dir():
        return found
    for child in folder.iterdir():
        match = rule.fullmatch(child.name)
        if match and child.is_dir() and not child.is_symlink():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _tracker(path: Folder, pattern: str = r"\s*(\d+)\s*") -> int | None:
    """The step a framework's tracker file names (None while there is none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise GovError(f"{path}: cannot be read: {exc}") from None
    match = re.fullmatch(pattern, text)
    return int(match.group(1)) if match else None


# Files that hold model weights (not the optimizer's, scheduler's or RNG's state), by name.
_WEIGHT_FILES = re.compile(
    r"(?!.*(optim|scheduler|rng|scaler))"  # the training state beside the weights
    r".*\.(safetensors|bin|pt|pth|distcp)"
)
_TRL_WEIGHTS = re.compile(
    r"(model|pytorch_model|adapter_model)(-\d+-of-\d+)?\.(safetensors|bin)"
    r"|pytorch_model_fsdp_\d+"  # an FSDP-sharded save: a folder of shards
    r"|pytorch_model_fsdp(_rank\d+)?\.bin"  # FSDP's full or per-rank (local) state dict
    # DeepSpeed ZeRO-3 without gathering the weights on save: transformers deletes the
    # placeholder model file and leaves DeepSpeed's own, in global_stepN/
    r"|(zero_pp_rank_\d+_)?mp_rank_\d+_model_states\.pt"
)


def _weights(path: Folder, names: re.Pattern[str] = _WEIGHT_FILES) -> str | None:
    """Why a checkpoint folder holds no model weights, or None if it holds some."""
    if any(names.fullmatch(p.name) for p in path.rglob("*")):
        return None
    return f"{path}: no model weights in it"


def _trl(root: Folder) -> list[Found]:
    found = []
    for step, path in _numbered(root, r"checkpoint-(\d+)"):
        state = path / "trainer_state.json"
        complete = False
        problem = None
        if state.is_file():
            try:
                named = json.loads(state.read_text(encoding="utf-8")).get("global_step")
            except (OSError, ValueError, AttributeError):
                named = None  # still being written: looked at again on the next scan
            complete = named == step and not (path / "checkpoint-is-incomplete.txt").exists()
            if complete:
                problem = _weights(path, _TRL_WEIGHTS)
        found.append(Found(step, path, complete, problem))
    return found


def _verl(root: Folder) -> list[Found]:
    latest = _tracker(root / "latest_checkpointed_iteration.txt")
    found = []
    for step, path in _numbered(root, r"global_step_(\d+)"):
        marked = latest is not None and step <= latest
        if marked and not (path / "actor").is_dir() and (path / "data.pt").is_file():
            found.append(Found(step, path, False, deleted=True))  # pruned by max_*_ckpt_to_keep
            continue
        complete = marked and (path / "data.pt").is_file()
        problem = None
        if complete and not (path / "actor").is_dir():
            problem = f"{path}: no actor/ folder in it (verl saves the actor there)"
        found.append(Found(step, path, complete, problem))
    return found


def _nemo_rl(root: Folder) -> list[Found]:
    found = []
    for step, path in _numbered(root, r"step_(\d+)"):
        problem = None
        if not (path / "policy").is_dir():
            problem = f"{path}: no policy/ folder in it (NeMo-RL saves the policy there)"
        found.append(Found(step, path, True, problem))
    for step, path in _numbered(root, r"tmp_step_(\d+)"):
        found.append(Found(step, path, False))
    return found


def _prime_rl(root: Folder) -> list[Found]:
    checkpoints = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    found: dict[int, Found] = {}
    for step, path in _numbered(root / "weights", r"step_(\d+)"):  # up to 0.8.0
        complete = (path / "STABLE").is_file()
        found[step] = Found(step, path, complete, _weights(path) if complete else None)
    for step, path in _numbered(checkpoints, r"step_(\d+)"):
        trainer, orchestrator = path / "trainer" / ".metadata", path / "orchestrator"
        complete = trainer.is_file() and (orchestrator / "progress.pt").is_file()
        if complete or step not in found:  # the full checkpoint, where there is one
            found[step] = Found(step, path, complete)
    return [found[step] for step in sorted(found)]


def _openrlhf(root: Folder) -> list[Found]:
    """The actor's step, with the critic's beside it where the run has a critic (PPO): both are
    what OpenRLHF resumes from, so both must be complete, and both are pinned."""
    found = []
    critics = root / "_critic"
    for step, path in _numbered(root / "_actor", r"global_step(\d+)"):
        name = f"global_step{step}"
        complete = _deepspeed_done(path, step)
        parts = [(f"_actor/{name}", path)]
        if critics.is_dir():
            complete = complete and _deepspeed_done(critics / name, step)
            parts.append((f"_critic/{name}", critics / name))
        problem = _weights(path) if complete else None
        found.append(Found(step, path, complete, problem, parts=tuple(parts)))
    return found


def _deepspeed_done(path: Folder, step: int) -> bool:
    """A DeepSpeed save of `step` in `path` is complete: OpenRLHF's metric.json (0.9.9 on,
    written after every rank's save), or the `latest` file beside it naming a later step (a
    later save began, so every rank finished this one; `latest` naming this step is written by
    rank 0 alone, before the ranks' barrier)."""
    if not path.is_dir():
        return False
    latest = _tracker(path.parent / "latest", r"\s*global_step(\d+)\s*")
    return (path / "metric.json").is_file() or (latest is not None and step < latest)


LAYOUTS: dict[str, Layout] = {
    "trl": Layout("trl", "checkpoint-N folders", _trl, "trainer_state.json"),
    "verl": Layout("verl", "global_step_N folders", _verl, "data.pt"),
    "nemo-rl": Layout("nemo-rl", "step_N folders", _nemo_rl),
    "prime-rl": Layout("prime-rl", "checkpoints/step_N folders", _prime_rl, "trainer/.metadata"),
    "openrlhf": Layout("openrlhf", "_actor/global_stepN folders", _openrlhf, "metric.json"),
}


def layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise GovError(f"unknown layout {name!r}: one of {', '.join(LAYOUTS)}")
    return LAYOUTS[name]
