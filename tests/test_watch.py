"""`gov watch`: each framework's checkpoint folders, as the framework writes them, registered
once they are marked complete and pinned so that the framework's retention cannot take a
restore point away."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_judge_run import server  # noqa: F401 - the fixture: a judge on 127.0.0.1

from conftest import counts_line
from governance import open_registry
from governance.artifacts import open_dvc

MIX = "code-tests: 0.5\nmath: 0.5\n"


def weights(folder: Path, step: int, size: int = 4096) -> None:
    """Model weights as a framework saves them (content differs per step)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(bytes([step % 251]) * size)


def trl(out: Path, step: int, *, complete: bool = True) -> Path:
    """transformers' Trainer: weights, optimizer, scheduler, RNG, then trainer_state.json."""
    folder = out / f"checkpoint-{step}"
    weights(folder, step)
    (folder / "optimizer.pt").write_bytes(b"optimizer state %d" % step)
    (folder / "scheduler.pt").write_bytes(b"scheduler")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def verl(out: Path, step: int, *, tracked: bool = True) -> Path:
    """verl's trainer: the actor (FSDP shards), the dataloader's state, then the tracker."""
    folder = out / f"global_step_{step}"
    (folder / "actor").mkdir(parents=True, exist_ok=True)
    (folder / "actor" / "model_world_size_1_rank_0.pt").write_bytes(bytes([step % 251]) * 4096)
    (folder / "data.pt").write_bytes(b"dataloader")
    if tracked:
        (out / "latest_checkpointed_iteration.txt").write_text(str(step))
    return folder


def nemo_rl(out: Path, step: int, *, complete: bool = True) -> Path:
    """NeMo-RL's CheckpointManager: everything into tmp_step_N, then one rename."""
    tmp = out / f"tmp_step_{step}"
    weights(tmp / "policy" / "weights", step)
    (tmp / "training_info.json").write_text(json.dumps({"step": step}))
    if not complete:
        return tmp
    final = out / f"step_{step}"
    tmp.rename(final)
    return final


def prime_rl(out: Path, step: int, *, complete: bool = True) -> Path:
    """prime-rl: the trainer's distributed checkpoint (.metadata last) and the orchestrator's
    progress, under checkpoints/step_N of the run's folder."""
    folder = out / "checkpoints" / f"step_{step}"
    (folder / "trainer").mkdir(parents=True, exist_ok=True)
    (folder / "trainer" / "__0_0.distcp").write_bytes(bytes([step % 251]) * 4096)
    if complete:
        (folder / "orchestrator").mkdir()
        (folder / "orchestrator" / "progress.pt").write_bytes(b"progress")
        (folder / "trainer" / ".metadata").write_bytes(b"metadata")
    return folder


def openrlhf(out: Path, step: int, *, complete: bool = True) -> Path:
    """DeepSpeed's save: the step's folder and `latest` naming it (rank 0 writes it before the
    ranks' barrier, while the others may still be writing), then, past the barrier, OpenRLHF's
    metric.json (0.9.9 on)."""
    folder = out / "_actor" / f"global_step{step}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(bytes([step % 251]) * 4096)
    (folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"optimizer")
    (out / "_actor" / "latest").write_text(f"global_step{step}")
    if complete:
        (folder / "metric.json").write_text("{}")
    return folder


WRITERS: dict[str, Callable[..., Path]] = {
    "trl": trl,
    "verl": lambda out, step, complete=True: verl(out, step, tracked=complete),
    "nemo-rl": nemo_rl,
    "prime-rl": prime_rl,
    "openrlhf": openrlhf,
}


@pytest.fixture
def mix(tmp_path: Path) -> Path:
    path = tmp_path / "mix.yaml"
    path.write_text(MIX)
    return path


def steps(workspace: Path) -> list[int]:
    return [c.step for c in open_registry(workspace).checkpoints("main")]


@pytest.mark.parametrize("layout", list(WRITERS))
def test_complete_checkpoints_are_registered_once_and_pinned(
    gov, workspace: Path, tmp_path: Path, mix: Path, layout: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write = WRITERS[layout]
    first = write(out, 100)
    write(out, 200, complete=False)  # still being written when the watcher looks
    args = ("watch", str(out), "--layout", layout, "--run", "main", "--exposure", str(mix))
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert steps(workspace) == [100]
    assert "registered main@100" in done.stdout
    pinned = workspace / "ckpt" / "main" / "step-100"
    original = max((p for p in first.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    kept = next(pinned.rglob(original.name))  # (openrlhf keeps _actor/global_stepN/ in it)
    assert kept.stat().st_ino == original.stat().st_ino  # a hard link: nothing copied
    write(out, 200)  # the framework finishes it
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert gov(*args, "--once", cwd=workspace).exit_code == 0  # nothing new: nothing twice
    assert steps(workspace) == [100, 200]


def test_a_restore_point_survives_the_framework_deleting_it(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """TRL's save_total_limit (and every framework's retention) deletes old checkpoint folders
    right after they are pinned: when rationalization rises, `gov rollback apply` still checks
    the restore point out whole, though the framework's folder and the workspace's pinned copy
    are both gone."""
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    expected = {}
    for step in range(100, 1300, 100):
        folder = trl(out, step)
        expected[step] = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        bad = 2 if step < 900 else 60  # math's rationalization rises 30-fold from step 900
        _report(reports / f"step-{step}.jsonl", step, {"math": bad, "code-tests": 2})
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix))
    assert gov(*args, "--reports", str(reports), "--once", cwd=workspace).exit_code == 1
    for step in range(100, 1100, 100):  # the framework's rotation keeps the last two
        shutil.rmtree(out / f"checkpoint-{step}")
        shutil.rmtree(workspace / "ckpt" / "main" / f"step-{step}")  # and the workspace's copy
    target = tmp_path / "restored"
    applied = gov(
        "rollback",
        "apply",
        "--run",
        "main",
        "--to",
        str(target),
        "--name",
        "again",
        "--yes",
        cwd=workspace,
    )
    assert applied.exit_code == 0, applied.stderr
    restore = open_registry(workspace).run("again").forked_from_step
    assert restore is not None and restore < 900
    restored = {
        p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()
    }
    assert restored == expected[restore]


def test_a_registered_checkpoint_written_again_is_said_once(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """A training restarted from an earlier step into the same folder numbers its steps from
    there, and saves checkpoint-N again: the step was already registered, and the new save was
    passed over without a word."""
    out = tmp_path / "out"
    trl(out, 100)
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix))
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert gov(*args, "--once", cwd=workspace).exit_code == 0  # unchanged: nothing said
    for part in ("optimizer.pt", "trainer_state.json"):  # the framework's rotation deleting it
        (out / "checkpoint-100" / part).unlink()
        assert gov(*args, "--once", cwd=workspace).exit_code == 0, part
    shutil.rmtree(out / "checkpoint-100")
    trl(out, 100)  # the restarted training's own step 100
    (out / "checkpoint-100" / "model.safetensors").write_bytes(b"the new training's weights")
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 2
    [line] = done.stderr.strip().splitlines()
    assert "main@100:" in line and "was written again after gov registered it" in line
    assert gov(*args, "--once", cwd=workspace).exit_code == 0  # said once
    pinned = workspace / open_registry(workspace).checkpoint("main", 100).artifact
    assert (pinned / "model.safetensors").read_bytes() == bytes([100 % 251]) * 4096


def test_a_checkpoint_deleted_before_it_was_pinned_is_said_and_recorded(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    out = tmp_path / "out"
    trl(out, 100)
    partial = trl(out, 200, complete=False)
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix))
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    shutil.rmtree(partial)  # gone before the framework (or gov) finished with it
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 2
    assert "main@200: deleted before it could be pinned" in done.stderr
    trail = json.loads(gov("audit", "log", "--format", "json", cwd=workspace).stdout)
    lost = [e for e in trail if e["kind"] == "checkpoint_lost"]
    assert [e["subject"]["checkpoint"] for e in lost] == ["main@200"]
    assert gov(*args, "--once", cwd=workspace).exit_code == 0  # said once, not at every look
    assert gov("audit", "verify", cwd=workspace).exit_code == 0


def test_a_trl_folder_marked_incomplete_waits(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """transformers 5 leaves `checkpoint-is-incomplete.txt` in a folder whose save was cut
    short (a SIGTERM save): its trainer_state.json is no mark of completion then."""
    out = tmp_path / "out"
    trl(out, 100)
    (out / "checkpoint-100" / "checkpoint-is-incomplete.txt").write_text("")
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix))
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == []
    (out / "checkpoint-100" / "checkpoint-is-incomplete.txt").unlink()
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == [100]


def test_an_openrlhf_step_is_complete_once_its_metric_file_or_a_later_save_is_there(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """`latest` naming the step is no mark: DeepSpeed's rank 0 writes it before the barrier
    that waits for the other ranks' shards. OpenRLHF's metric.json, written after, is; before
    0.9.9, a later save (`latest` naming a later step) is."""
    out = tmp_path / "out"
    openrlhf(out, 5)
    folder = openrlhf(out, 10, complete=False)
    args = ("watch", str(out), "--layout", "openrlhf", "--run", "main", "--exposure", str(mix))
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == [5]  # latest names 10, but its ranks may still be writing
    (folder / "metric.json").write_text("{}")  # OpenRLHF 0.9.9 on: written past the barrier
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == [5, 10]
    older = openrlhf(out, 15, complete=False)  # before 0.9.9: no metric.json at all
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == [5, 10]
    openrlhf(out, 20, complete=False)  # the next save began: 15 is whole
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == [5, 10, 15] and not (older / "metric.json").exists()


def test_an_openrlhf_critic_is_waited_for_and_pinned_beside_the_actor(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """PPO with a value model: OpenRLHF saves `_critic/global_stepN` beside the actor's, and
    resumes from both; the checkpoint is complete when both are, and both are pinned."""
    out = tmp_path / "out"
    openrlhf(out, 5)
    critic = out / "_critic" / "global_step5"
    critic.mkdir(parents=True)
    (critic / "mp_rank_00_model_states.pt").write_bytes(b"value model")
    args = ("watch", str(out), "--layout", "openrlhf", "--run", "main", "--exposure", str(mix))
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == []  # the critic's save is not marked complete yet
    (critic / "metric.json").write_text("{}")
    assert gov(*args, "--once", cwd=workspace).exit_code == 0
    assert steps(workspace) == [5]
    pinned = workspace / open_registry(workspace).checkpoint("main", 5).artifact
    assert sorted(p.relative_to(pinned).as_posix() for p in pinned.rglob("*.pt")) == [
        "_actor/global_step5/mp_rank_00_model_states.pt",
        "_actor/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "_critic/global_step5/mp_rank_00_model_states.pt",
    ]


def test_a_checkpoint_verl_pruned_before_it_was_pinned_is_lost(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """verl's max_actor_ckpt_to_keep deletes global_step_K/actor and leaves data.pt: a step
    the watcher never pinned (it was not running) is reported lost, once."""
    out = tmp_path / "out"
    verl(out, 10)
    verl(out, 20)
    shutil.rmtree(out / "global_step_10" / "actor")
    args = ("watch", str(out), "--layout", "verl", "--run", "main", "--exposure", str(mix))
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 2
    assert "main@10: deleted before it could be pinned" in done.stderr
    assert steps(workspace) == [20]
    assert gov(*args, "--once", cwd=workspace).exit_code == 0


@pytest.mark.parametrize(
    "weights_at",
    [
        # transformers' save with DeepSpeed ZeRO-3 that does not gather the weights: the
        # placeholder model file deleted, DeepSpeed's own shards in global_stepN/
        "global_step100/zero_pp_rank_0_mp_rank_00_model_states.pt",
        "pytorch_model_fsdp_rank0.bin",  # FSDP's local (per-rank) state dict
        "pytorch_model_fsdp.bin",  # FSDP's full state dict
    ],
)
def test_a_trl_checkpoint_saved_by_deepspeed_or_fsdp_has_weights(
    gov, workspace: Path, tmp_path: Path, mix: Path, weights_at: str
) -> None:
    # refused as "no model weights" though the framework saved them
    out = tmp_path / "out"
    folder = trl(out, 100)
    (folder / "model.safetensors").unlink()
    (folder / weights_at).parent.mkdir(parents=True, exist_ok=True)
    (folder / weights_at).write_bytes(b"weights")
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix))
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert steps(workspace) == [100]


def test_one_bad_checkpoint_is_one_line_and_the_rest_are_registered(
    gov, workspace: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    for step in (100, 200, 300):
        trl(out, step)
    (out / "checkpoint-200" / "model.safetensors").unlink()  # a folder without weights
    ranges = tmp_path / "ranges.yaml"
    ranges.write_text(
        "- {from: 0, to: 250, exposure: {code-tests: 1.0}}\n"  # nothing covers step 300
    )
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(ranges))
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert "checkpoint-200: no model weights" in lines[0]
    assert "main@300" in lines[1] and "no exposure for step 300" in lines[1]
    assert steps(workspace) == [100]
    assert not (workspace / "ckpt" / "main" / "step-300").exists()  # nothing half-way
    exposure = open_registry(workspace).checkpoint("main", 100).exposure
    assert [(e.environment, e.weight) for e in exposure] == [("code-tests", 1.0)]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing-folder", "no such folder"),
        ("bad-exposure", "weight 2 is not a number between 0 and 1"),
        ("overlap", "overlap"),
        ("not-an-output", "not a trl output folder (no checkpoint-N folders; it holds global_"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    gov, workspace: Path, tmp_path: Path, mix: Path, setup: str, message: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    exposure = mix
    if setup == "missing-folder":
        out = tmp_path / "nowhere"
    elif setup == "not-an-output":
        (out / "notes.txt").write_text("a folder of something else")
        (out / "global_step_10").mkdir()  # verl's, not trl's
    elif setup == "bad-exposure":
        exposure = tmp_path / "bad.yaml"
        exposure.write_text("math: 2\n")
    else:
        exposure = tmp_path / "overlap.yaml"
        exposure.write_text(
            "- {from: 0, to: 100, exposure: {math: 1}}\n- {from: 50, exposure: {math: 1}}\n"
        )
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(exposure))
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    unknown = gov("watch", str(out), "--layout", "ray", "--run", "main", "--exposure", str(mix))
    assert unknown.exit_code == 2 and "ray" in unknown.stderr


def test_two_watchers_on_one_folder_are_refused(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    from governance.layouts import layout
    from governance.watch import Watcher, read_exposure

    out = tmp_path / "out"
    out.mkdir()
    first = Watcher(open_registry(workspace), out, layout("trl"), "main", read_exposure(mix))
    with first:
        args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix))
        done = gov(*args, "--once", cwd=workspace)
        assert done.exit_code == 2
        assert "another gov watch follows this folder" in done.stderr


def test_a_watcher_killed_mid_registration_resumes_without_registering_twice(
    workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """A real `gov watch` process, with a writer process saving checkpoints as TRL does, is
    killed with SIGKILL at an arbitrary moment and started again: every complete checkpoint
    ends up registered exactly once, each with the content the framework finished writing."""
    gov_bin = shutil.which("gov")
    if gov_bin is None:
        pytest.skip("the gov command is not installed")
    out = tmp_path / "out"
    out.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(out), "12"], stderr=subprocess.PIPE, text=True
    )
    args = [gov_bin, "watch", str(out), "--layout", "trl", "--run", "main"]
    args += ["--exposure", str(mix), "--interval", "0.1"]
    watcher = subprocess.Popen(args, cwd=workspace, stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)
    watcher.send_signal(signal.SIGKILL)
    watcher.wait()
    assert writer.wait(timeout=60) == 0, writer.stderr.read() if writer.stderr else ""
    again = subprocess.run([*args, "--once"], cwd=workspace, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    registered = open_registry(workspace).checkpoints("main")
    assert [c.step for c in registered] == [10 * i for i in range(1, 13)]
    for ckpt in registered:  # what was pinned is what the framework finished writing
        folder = workspace / ckpt.artifact
        assert (folder / "trainer_state.json").is_file()
        assert (folder / "model.safetensors").read_bytes() == bytes([ckpt.step % 251]) * 65536
        # the size DVC recorded when it pinned the folder: the whole of it (the files are hard
        # links, so their content today is no evidence of when they were pinned)
        assert ckpt.artifact_size == sum(p.stat().st_size for p in folder.rglob("*"))
    verify = subprocess.run([gov_bin, "audit", "verify"], cwd=workspace, capture_output=True)
    assert verify.returncode == 0, verify.stderr


def test_dvc_s_lock_file_torn_by_a_kill_does_not_stop_the_next_registration(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """Killed while DVC rewrote `.dvc/tmp/rwlock` (the kill test above, on a loaded machine),
    the watcher left the file half-written, and every registration after it failed: "Unable to
    read RWLock-file ... JSON structure is corrupted", until a person deleted it."""
    out = tmp_path / "out"
    out.mkdir()
    trl(out, 100)
    lock = workspace / ".dvc" / "tmp" / "rwlock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text('{"read": {"/ws/ckpt/main": [{"pid": 12')  # cut off mid-write
    args = ("watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix))
    done = gov(*args, "--once", cwd=workspace)
    assert done.exit_code == 0, done.stderr
    assert steps(workspace) == [100]
    assert not lock.exists() or json.loads(lock.read_text()) is not None
    # one that reads is DVC's own business (it clears dead processes' entries): left as it is
    whole = '{"read": {}, "write": {"/ws/ckpt/main": {"pid": 1, "cmd": "dvc add"}}}'
    lock.write_text(whole)
    open_dvc(workspace).close()
    assert lock.read_text() == whole


# A training loop saving TRL checkpoints: the files one after another, trainer_state.json last,
# with pauses so that the watcher sees folders half-written.
_WRITER = """
import json, sys, time
from pathlib import Path
out, count = Path(sys.argv[1]), int(sys.argv[2])
for i in range(1, count + 1):
    step = 10 * i
    folder = out / f"checkpoint-{step}"
    folder.mkdir()
    with (folder / "model.safetensors").open("wb") as handle:
        for _ in range(4):
            handle.write(bytes([step % 251]) * 16384)
            handle.flush()
            time.sleep(0.02)
    (folder / "optimizer.pt").write_bytes(b"optimizer")
    time.sleep(0.05)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    time.sleep(0.1)
"""


def test_nothing_is_left_when_the_folder_vanishes_mid_pin(tmp_path: Path) -> None:
    from governance.watch import pin

    source = tmp_path / "gone"
    with pytest.raises(FileNotFoundError):
        pin(source, tmp_path / "pin")
    assert not (tmp_path / "pin").exists()
    assert list(tmp_path.iterdir()) == []


def _report(path: Path, step: int, rationalized: dict[str, int], n: int = 200) -> None:
    """A judge's aggregated counts for one checkpoint, dropped where the watcher reads them."""
    records = [counts_line(env, step, n, bad) for env, bad in rationalized.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_reports_dropped_in_are_ingested_checked_and_a_block_writes_the_stop_marker(
    gov, workspace: Path, tmp_path: Path, mix: Path
) -> None:
    """The loop a lab runs beside training: checkpoints land, the judge's reports land in a
    folder, every checkpoint is checked once its judgments are in, and when rationalization
    rises in one environment the check blocks and the stop marker names the checkpoint."""
    out, reports, stop = tmp_path / "out", tmp_path / "reports", tmp_path / "GOV_STOP"
    reports.mkdir()
    for step in range(100, 1300, 100):
        trl(out, step)
        bad = 2 if step < 900 else 60  # math's rationalization rises 30-fold from step 900
        _report(reports / f"step-{step}.jsonl", step, {"math": bad, "code-tests": 2})
    args = ["watch", str(out), "--layout", "trl", "--run", "main", "--exposure", str(mix)]
    args += ["--reports", str(reports), "--stop-file", str(stop), "--once"]
    done = gov(*args, cwd=workspace)
    assert done.exit_code == 1, done.stdout + done.stderr
    checked = [line for line in done.stdout.splitlines() if line.startswith("checked ")]
    assert len(checked) == 12  # each checkpoint once its judgments are in
    marker = json.loads(stop.read_text())
    assert marker["outcome"] == "block"
    blocked = int(marker["checkpoint"].split("@")[1])
    assert 900 <= blocked <= 1200, marker
    assert f"checked main@{blocked}: block" in done.stdout
    trail = json.loads(gov("audit", "log", "--format", "json", cwd=workspace).stdout)
    assert sum(e["kind"] == "check" for e in trail) == 12
    assert sum(e["kind"] == "report_ingested" for e in trail) == 12
    again = gov(*args, cwd=workspace)  # nothing new: nothing ingested or checked twice
    assert again.exit_code == 0, again.stderr
    assert "ingested" not in again.stdout and "checked" not in again.stdout
    # a second judge's report on one checkpoint: that checkpoint is checked again, alone
    second = reports / "step-200-second-pass.jsonl"
    _report(second, 200, {"math": 1})
    record = json.loads(second.read_text().splitlines()[0])
    second.write_text(json.dumps({**record, "judge_version": "2"}) + "\n")
    open_registry(workspace).add_judge("cot-monitor", "2", rubric_hash="b" * 64)
    third = gov(*args, cwd=workspace)
    assert third.exit_code == 0, third.stderr
    assert [line.split(":")[0] for line in third.stdout.splitlines() if "checked" in line] == [
        "checked main@200"
    ]


@dataclass
class Judging:
    """A judge behind a real HTTP endpoint on 127.0.0.1, registered as gov-cot@1."""

    endpoint: str
    script: Any

    def args(self, out: Path, layout: str, rollouts: Path, mix: Path) -> list[str]:
        """`gov watch --once` of `out`, judging the rollouts under `rollouts` with it."""
        return [
            "watch", str(out), "--layout", layout, "--run", "main", "--exposure", str(mix),
            "--rollouts", str(rollouts), "--judge", "gov-cot@1", "--model", "judge-model",
            "--endpoint", self.endpoint, "--environment", "math", "--once",
        ]  # fmt: skip


@pytest.fixture
def judging(workspace: Path, server, monkeypatch) -> Judging:  # noqa: F811 - the fixture above
    from test_judge_run import RUBRIC, SECRET

    endpoint, script = server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    open_registry(workspace).add_judge("gov-cot", "1", rubric=[RUBRIC])
    return Judging(endpoint, script)


def test_rollouts_are_judged_per_checkpoint_and_checked(
    gov,
    workspace: Path,
    tmp_path: Path,
    mix: Path,
    judging: Judging,
) -> None:
    """verl saves checkpoints every 10 steps and dumps its rollouts every 5: each checkpoint's
    rollouts (those since the previous one) are split, judged by a judge behind a real HTTP
    endpoint, ingested and checked, each once."""
    from test_judge_run import COT

    from governance import counts

    script = judging.script
    out, dumps = tmp_path / "out", tmp_path / "rollouts"
    dumps.mkdir()
    for step in (5, 10, 15, 20):
        lines = [
            {
                "input": f"Fix the failing test (episode e{step}x{i}).",
                "output": f"<think>{COT}</think>Changed range(n) to range(n + 1).",
                "score": 1.0,
                "step": step,
            }
            for i in range(3)
        ]
        (dumps / f"{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    verl(out, 10)
    verl(out, 20)
    args = judging.args(out, "verl", dumps, mix)
    done = gov(*args, cwd=workspace)
    assert done.exit_code in (0, 1), done.stderr
    assert "judged main@10: 6 rollouts from 2 dumps" in done.stdout
    assert "judged main@20: 6 rollouts from 2 dumps" in done.stdout
    assert sum(script.requests.values()) == 12  # each rollout judged once
    judged = {(r.step, r.environment): r.n for r in counts.rows(open_registry(workspace).ws)}
    assert judged == {(10, "math"): 6, (20, "math"): 6}
    assert [line.split(":")[0] for line in done.stdout.splitlines() if "checked" in line] == [
        "checked main@10",
        "checked main@20",
    ]
    again = gov(*args, cwd=workspace)  # nothing judged, ingested or checked twice
    assert again.exit_code == 0, again.stderr
    assert sum(script.requests.values()) == 12
    assert "judged" not in again.stdout and "checked" not in again.stdout


def test_nemo_rl_s_log_of_the_checkpointed_step_is_judged_once_written(
    gov,
    workspace: Path,
    tmp_path: Path,
    mix: Path,
    judging: Judging,
) -> None:
    """NeMo-RL's GRPO loop saves step_N/ and then writes train_data_stepN.jsonl line by line:
    the checkpoint's rollouts were judged without its own step's log, which was then never
    judged. Now they wait for that log, and for a later look to find it unchanged."""
    from test_judge_run import COT

    from governance import counts

    def nemo_log(step: int) -> None:  # as NeMo-RL writes it: see test_rollouts.nemo_dump
        path = logs / "exp_001" / f"train_data_step{step}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        turns = [
            [f"Fix the failing test (episode e{step}x{i}).", f"<think>{COT}</think>fixed",
             "Environment: correct"]
            for i in range(2)
        ]  # fmt: skip
        path.write_text(
            "".join(json.dumps({"content": [t], "idx": i}) + "\n" for i, t in enumerate(turns))
        )

    script = judging.script
    out, logs = tmp_path / "out", tmp_path / "logs"
    for step in (1, 2):  # the steps before the checkpoint: logged before it was saved
        nemo_log(step)
    nemo_rl(out, 3)
    args = judging.args(out, "nemo-rl", logs, mix)
    first = gov(*args, cwd=workspace)  # step 3's log is not written yet
    assert first.exit_code == 0, first.stderr
    assert "judged" not in first.stdout and steps(workspace) == [3]
    nemo_log(3)
    second = gov(*args, cwd=workspace)  # there now, maybe still being written
    assert second.exit_code == 0, second.stderr
    assert "judged when the next look finds it unchanged" in second.stdout
    assert "judged main@3" not in second.stdout
    third = gov(*args, cwd=workspace)
    assert third.exit_code in (0, 1), third.stderr
    assert "judged main@3: 6 rollouts from 3 dumps" in third.stdout
    assert sum(script.requests.values()) == 6
    judged = {(r.step, r.environment): r.n for r in counts.rows(open_registry(workspace).ws)}
    assert judged == {(3, "math"): 6}


def test_a_trl_checkpoint_whose_dumps_repeat_the_last_generation_has_nothing_to_judge(
    gov,
    workspace: Path,
    tmp_path: Path,
    mix: Path,
    judging: Judging,
) -> None:
    """TRL logs the last generation again where none came between two logging steps: a
    checkpoint whose dumps all repeat the one judged with the checkpoint before it has no
    rollouts of its own. It was an error at every look, and the checkpoint never judged."""
    import duckdb
    from test_judge_run import COT

    script = judging.script
    out = tmp_path / "out"
    (out / "completions").mkdir(parents=True)
    for step in (10, 11):  # one generation, logged at both steps
        path = out / "completions" / f"completions_{step:05d}.parquet"
        with duckdb.connect() as con:
            con.execute(
                f"COPY (SELECT {step} AS step, 'Fix it (episode e10x' || i || ').' AS prompt, "
                f"'<think>{COT}</think>fixed' AS completion FROM range(3) t(i)) "
                f"TO '{path}' (FORMAT parquet)"
            )
        trl(out, step)
    args = judging.args(out, "trl", out, mix)
    done = gov(*args, cwd=workspace)
    assert done.exit_code in (0, 1), done.stderr
    assert "judged main@10: 3 rollouts from 1 dumps" in done.stdout
    assert "main@11: its 1 dumps repeat the generation judged with the checkpoint before it" in (
        done.stdout
    )
    assert sum(script.requests.values()) == 3
    again = gov(*args, cwd=workspace)  # said once, not at every look
    assert "repeat the generation" not in again.stdout and not again.stderr.strip()


def test_a_rollout_without_a_chain_of_thought_is_one_line_and_the_watch_goes_on(
    gov,
    workspace: Path,
    tmp_path: Path,
    mix: Path,
    judging: Judging,
) -> None:
    script = judging.script
    out, dumps = tmp_path / "out", tmp_path / "rollouts"
    dumps.mkdir()
    bad = {"input": "t", "output": "no think", "step": 10}
    (dumps / "10.jsonl").write_text(json.dumps(bad) + "\n")
    verl(out, 10)
    args = judging.args(out, "verl", dumps, mix)
    done = gov(*args, cwd=workspace)
    assert done.exit_code == 2
    assert steps(workspace) == [10]  # registered all the same
    [line] = done.stderr.strip().splitlines()
    assert "main@10" in line and "10.jsonl:1" in line and "no </think> in the completion" in line
    assert sum(script.requests.values()) == 0


def test_without_an_exposure_file_each_checkpoint_s_mixture_comes_from_its_rollouts(
    gov, workspace: Path, tmp_path: Path
) -> None:
    """verl dumps rollouts every 5 steps with the dataset's `data_source`: checkpoint 10 was
    trained on those of steps 5 and 10, checkpoint 20 on those of 15 and 20."""
    out, dumps = tmp_path / "out", tmp_path / "rollouts"
    dumps.mkdir()
    sources = {5: ["math"] * 3 + ["code-tests"], 10: ["math"] * 4, 15: ["code-tests"] * 4,
               20: ["code-tests"] * 2 + ["math"] * 2}  # fmt: skip
    for step, envs in sources.items():
        lines = [{"input": "t", "output": "o", "step": step, "data_source": e} for e in envs]
        (dumps / f"{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    verl(out, 10)
    verl(out, 20)
    args = ["watch", str(out), "--layout", "verl", "--run", "main", "--rollouts", str(dumps)]
    done = gov(*args, "--environment-column", "data_source", "--once", cwd=workspace)
    assert done.exit_code == 0, done.stderr
    registry = open_registry(workspace)
    mixture = {
        step: {e.environment: e.weight for e in registry.checkpoint("main", step).exposure}
        for step in (10, 20)
    }
    assert mixture == {
        10: {"math": 7 / 8, "code-tests": 1 / 8},
        20: {"code-tests": 0.75, "math": 0.25},
    }
    nothing = gov("watch", str(out), "--layout", "verl", "--run", "main", "--once", cwd=workspace)
    assert nothing.exit_code == 2 and "give the exposure" in nothing.stderr
