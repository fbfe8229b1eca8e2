"""Checkpoints in object storage: a real S3 endpoint (moto's server, over HTTP on 127.0.0.1)
holds the framework's output; gov registers its checkpoints by each object's version (or
ETag), names a restore point only while every recorded object is still there, and restores
the recorded versions after the framework has deleted or overwritten them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_watch import _report, steps

from conftest import bucket
from governance import open_registry

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

MIX = "code-tests: 0.5\nmath: 0.5\n"


def verl(
    s3: Any, where: str, step: int, *, tracked: bool = True, fill: int | None = None
) -> dict[str, bytes]:
    """verl's save, into a bucket (its checkpoint folder synced there as written): the actor,
    the dataloader's state, then the tracker. Returns the files written, by path in the step."""
    name, _, prefix = where.partition("/")
    files = {
        "actor/model_world_size_1_rank_0.pt": bytes([(fill or step) % 251]) * 4096,
        "data.pt": b"dataloader %d" % step,
    }
    for rel, data in files.items():
        s3.put_object(Bucket=name, Key=f"{prefix}/global_step_{step}/{rel}", Body=data)
    if tracked:
        s3.put_object(
            Bucket=name, Key=f"{prefix}/latest_checkpointed_iteration.txt", Body=b"%d" % step
        )
    return files


def delete_step(s3: Any, where: str, step: int) -> None:
    name, _, prefix = where.partition("/")
    listed = s3.list_objects_v2(Bucket=name, Prefix=f"{prefix}/global_step_{step}/")
    for item in listed.get("Contents", []):
        s3.delete_object(Bucket=name, Key=item["Key"])


@pytest.fixture
def mix(tmp_path: Path) -> Path:
    path = tmp_path / "mix.yaml"
    path.write_text(MIX)
    return path


def look(gov: Any, workspace: Path, uri: str, mix: Path, *extra: str, layout: str = "verl") -> Any:
    args = ("watch", uri, "--layout", layout, "--run", "main", "--exposure", str(mix))
    return gov(*args, "--once", *extra, cwd=workspace)


def watch(gov: Any, workspace: Path, uri: str, mix: Path, *extra: str, layout: str = "verl") -> Any:
    """Two looks, as cron would make them: a bucket has no rename, so a checkpoint marked
    complete is registered when the next look finds it unchanged."""
    first = look(gov, workspace, uri, mix, *extra, layout=layout)
    assert first.exit_code in (0, 2), first.stdout + first.stderr
    return look(gov, workspace, uri, mix, *extra, layout=layout)


def test_checkpoints_in_a_versioned_bucket_are_registered_by_version_once_complete(
    gov, workspace: Path, s3: Any, mix: Path
) -> None:
    bucket(s3, "runs-versioned", versioned=True)
    verl(s3, "runs-versioned/grpo", 10)
    verl(s3, "runs-versioned/grpo", 20, tracked=False)  # still being written
    first = look(gov, workspace, "s3://runs-versioned/grpo/", mix)
    assert first.exit_code == 0, first.stderr
    assert "main@10 is complete in s3://runs-versioned/grpo/global_step_10/" in first.stdout
    assert steps(workspace) == []  # not before a second look finds it unchanged
    done = look(gov, workspace, "s3://runs-versioned/grpo/", mix)
    assert done.exit_code == 0, done.stderr
    assert steps(workspace) == [10]
    assert "pinned by version" in done.stdout
    registry = open_registry(workspace)
    ckpt = registry.checkpoint("main", 10)
    assert ckpt.artifact == "s3://runs-versioned/grpo/global_step_10/"
    assert ckpt.artifact_pinned == "version"
    objects = registry.objects(ckpt)
    assert sorted(o.path for o in objects.objects) == [
        "actor/model_world_size_1_rank_0.pt",
        "data.pt",
    ]
    for o in objects.objects:  # each object's current version, as the store names it
        head = s3.head_object(Bucket="runs-versioned", Key=o.key)
        assert (o.version, o.etag, o.size) == (
            head["VersionId"],
            head["ETag"],
            head["ContentLength"],
        )
    assert ckpt.artifact_size == 4096 + len(b"dataloader 10")
    verl(s3, "runs-versioned/grpo", 20)  # the tracker now names it
    assert watch(gov, workspace, "s3://runs-versioned/grpo/", mix).exit_code == 0
    assert watch(gov, workspace, "s3://runs-versioned/grpo/", mix).exit_code == 0  # nothing twice
    assert steps(workspace) == [10, 20]
    shown = gov("checkpoint", "show", "main@10", "--format", "json", cwd=workspace)
    assert json.loads(shown.stdout)["artifact"] == "s3://runs-versioned/grpo/global_step_10/"


def test_a_restore_point_the_framework_deleted_is_restored_from_its_versions(
    gov, workspace: Path, s3: Any, mix: Path, tmp_path: Path
) -> None:
    """The whole loop on a versioned bucket: the framework's retention deletes old steps and
    overwrites one, rationalization rises, and `gov rollback apply` restores the restore point
    exactly as it was registered, from the versions gov recorded."""
    bucket(s3, "runs-retained", versioned=True)
    reports = tmp_path / "reports"
    reports.mkdir()
    written = {}
    for step in range(100, 900, 100):
        written[step] = verl(s3, "runs-retained/grpo", step)
        bad = 2 if step < 500 else 60  # math's rationalization rises 30-fold from step 500
        _report(reports / f"step-{step}.jsonl", step, {"math": bad, "code-tests": 2})
    done = watch(gov, workspace, "s3://runs-retained/grpo/", mix, "--reports", str(reports))
    assert done.exit_code == 1, done.stdout + done.stderr  # the rise blocked
    recommended = json.loads(
        gov("rollback", "recommend", "--run", "main", "--format", "json", cwd=workspace).stdout
    )
    restore = recommended["restore"]
    assert restore is not None and int(restore.split("@")[1]) < 500, recommended
    # the restore point written over, the rest deleted by retention, which keeps the last two
    verl(s3, "runs-retained/grpo", int(restore.split("@")[1]), tracked=False, fill=7)
    for step in range(100, 700, 100):
        if step != int(restore.split("@")[1]):
            delete_step(s3, "runs-retained/grpo", step)
    again = json.loads(
        gov("rollback", "recommend", "--run", "main", "--format", "json", cwd=workspace).stdout
    )
    assert again["restore"] == restore and not again["skipped"]
    target = tmp_path / "restored"
    applied = gov("rollback", "apply", "--run", "main", "--to", str(target), "--yes", cwd=workspace)
    assert applied.exit_code == 0, applied.stderr
    expected = written[int(restore.split("@")[1])]
    restored = {
        p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()
    }
    assert restored == expected


def test_without_versioning_a_deleted_or_changed_checkpoint_is_no_restore_point(
    gov, workspace: Path, s3: Any, mix: Path, tmp_path: Path
) -> None:
    bucket(s3, "runs-plain", versioned=False)
    reports = tmp_path / "reports"
    reports.mkdir()
    for step in range(100, 900, 100):
        verl(s3, "runs-plain/grpo", step)
        bad = 2 if step < 500 else 60
        _report(reports / f"step-{step}.jsonl", step, {"math": bad, "code-tests": 2})
    done = watch(gov, workspace, "s3://runs-plain/grpo/", mix, "--reports", str(reports))
    assert "by ETag only" in done.stdout  # said when it registers, with what to do
    assert {c.artifact_pinned for c in open_registry(workspace).checkpoints("main")} == {"etag"}
    before = json.loads(
        gov("rollback", "recommend", "--run", "main", "--format", "json", cwd=workspace).stdout
    )
    first = int(before["restore"].split("@")[1])
    delete_step(s3, "runs-plain/grpo", first)  # the framework's retention: gone for good
    verl(s3, "runs-plain/grpo", first - 100, tracked=False, fill=9)  # one written over
    after = json.loads(
        gov("rollback", "recommend", "--run", "main", "--format", "json", cwd=workspace).stdout
    )
    skipped = " ".join(after["skipped"])
    assert (
        f"main@{first}: s3://runs-plain/grpo/global_step_{first}/" in skipped
        and "is gone" in skipped
    )
    assert f"main@{first - 100}: " in skipped and "changed since it was registered" in skipped
    assert after["restore"] is None or int(after["restore"].split("@")[1]) < first - 100


def test_gov_checkpoint_add_takes_an_s3_folder(
    gov, workspace: Path, s3: Any, tmp_path: Path
) -> None:
    bucket(s3, "runs-added", versioned=True)
    verl(s3, "runs-added/grpo", 5)
    uri = "s3://runs-added/grpo/global_step_5"
    added = gov("checkpoint", "add", "main@5", uri, "-e", "math=1", cwd=workspace)
    assert added.exit_code == 0, added.stderr
    assert "pinned by each object's version" in added.stdout
    ckpt = open_registry(workspace).checkpoint("main", 5)
    assert ckpt.artifact == uri + "/"
    # the manifest is committed with the record, and a hand edit of it is refused
    manifest = workspace / "registry" / "objects" / "main" / "5.json"
    assert manifest.is_file()
    manifest.write_text(manifest.read_text().replace('"size": 4096', '"size": 1'))
    with pytest.raises(Exception, match="does not match checkpoint main@5's record"):
        open_registry(workspace).objects(ckpt)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://runs-bad/nothing-here/", "s3://runs-bad/nothing-here/: no objects under it"),
        ("s3://no-such-bucket-here/x/", "NoSuchBucket"),
    ],
)
def test_a_bad_s3_checkpoint_is_one_line_and_nothing_is_registered(
    gov, workspace: Path, s3: Any, uri: str, message: str
) -> None:
    bucket(s3, "runs-bad", versioned=True)
    done = gov("checkpoint", "add", "main@5", uri, "-e", "math=1", cwd=workspace)
    assert done.exit_code == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert steps(workspace) == []


def test_watching_a_missing_bucket_is_one_line(gov, workspace: Path, s3: Any, mix: Path) -> None:
    done = watch(gov, workspace, "s3://no-such-bucket-here/grpo/", mix)
    assert done.exit_code == 2
    assert "NoSuchBucket" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_checkpoint_deleted_before_it_was_listed_is_recorded_lost(
    gov, workspace: Path, s3: Any, mix: Path
) -> None:
    bucket(s3, "runs-lost", versioned=False)
    verl(s3, "runs-lost/grpo", 10)
    verl(s3, "runs-lost/grpo", 20, tracked=False)
    assert watch(gov, workspace, "s3://runs-lost/grpo/", mix).exit_code == 0
    delete_step(s3, "runs-lost/grpo", 20)  # gone before it was ever complete
    done = look(gov, workspace, "s3://runs-lost/grpo/", mix)
    assert done.exit_code == 2
    assert "main@20: deleted before it could be pinned" in done.stderr
    assert steps(workspace) == [10]


def test_a_folder_synced_in_any_order_is_registered_once_it_stops_changing(
    gov, workspace: Path, s3: Any, mix: Path
) -> None:
    """NeMo-RL marks a step complete by renaming tmp_step_N to step_N; a bucket has no rename,
    and a sync job uploads a step's files in any order: a step_N folder with one shard of two
    is not complete, and a look that finds it changed since the last one waits again."""
    bucket(s3, "runs-synced", versioned=True)
    shard = "grpo/step_10/policy/weights/model-0000{}-of-00002.safetensors"
    s3.put_object(Bucket="runs-synced", Key=shard.format(1), Body=b"\x01" * 4096)
    args = ("s3://runs-synced/grpo/", mix)
    assert look(gov, workspace, *args, layout="nemo-rl").exit_code == 0
    s3.put_object(Bucket="runs-synced", Key=shard.format(2), Body=b"\x02" * 4096)
    assert look(gov, workspace, *args, layout="nemo-rl").exit_code == 0
    assert steps(workspace) == []  # it changed since the last look: not yet
    assert look(gov, workspace, *args, layout="nemo-rl").exit_code == 0
    assert steps(workspace) == [10]
    objects = open_registry(workspace).objects(open_registry(workspace).checkpoint("main", 10))
    assert [o.path for o in objects.objects] == [
        "policy/weights/model-00001-of-00002.safetensors",
        "policy/weights/model-00002-of-00002.safetensors",
    ]


def test_a_sharded_trl_save_in_a_bucket_holds_its_weights(
    gov, workspace: Path, s3: Any, mix: Path
) -> None:
    """An FSDP save is a folder of shards (pytorch_model_fsdp_0/): the layout rule finds the
    weights in a bucket as on disk."""
    bucket(s3, "runs-fsdp", versioned=True)
    base = "out/checkpoint-10"
    s3.put_object(Bucket="runs-fsdp", Key=f"{base}/pytorch_model_fsdp_0/__0_0.distcp", Body=b"w")
    s3.put_object(Bucket="runs-fsdp", Key=f"{base}/optimizer_0/__0_0.distcp", Body=b"o")
    s3.put_object(Bucket="runs-fsdp", Key=f"{base}/trainer_state.json", Body=b'{"global_step": 10}')
    done = watch(gov, workspace, "s3://runs-fsdp/out/", mix, layout="trl")
    assert done.exit_code == 0, done.stderr
    assert steps(workspace) == [10]


def test_objects_from_before_versioning_are_pinned_by_their_null_version(
    gov, workspace: Path, s3: Any
) -> None:
    from governance.objectstore import problem

    bucket(s3, "runs-late", versioned=False)
    verl(s3, "runs-late/grpo", 5)
    s3.put_bucket_versioning(Bucket="runs-late", VersioningConfiguration={"Status": "Enabled"})
    uri = "s3://runs-late/grpo/global_step_5/"
    assert gov("checkpoint", "add", "main@5", uri, "-e", "math=1", cwd=workspace).exit_code == 0
    registry = open_registry(workspace)
    ckpt = registry.checkpoint("main", 5)
    objects = registry.objects(ckpt)
    assert ckpt.artifact_pinned == "version"
    assert {o.version for o in objects.objects} == {"null"}
    verl(s3, "runs-late/grpo", 5, tracked=False, fill=3)  # written over: the null version stays
    assert problem(objects) is None


def test_an_object_whose_name_leaves_its_folder_is_refused(gov, workspace: Path, s3: Any) -> None:
    bucket(s3, "runs-escape", versioned=True)
    s3.put_object(Bucket="runs-escape", Key="grpo/step_1/../../escape.pt", Body=b"x")
    done = gov(
        "checkpoint",
        "add",
        "main@1",
        "s3://runs-escape/grpo/step_1/",
        "-e",
        "math=1",
        cwd=workspace,
    )
    assert done.exit_code == 2
    assert "has a name no folder can hold" in done.stderr and "Traceback" not in done.stderr
    assert steps(workspace) == []


def test_a_bad_aws_setting_is_one_line(
    gov, workspace: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    done = gov("checkpoint", "add", "main@1", "s3://runs-any/x/", "-e", "math=1", cwd=workspace)
    assert done.exit_code == 2
    assert "cannot set up the S3 client" in done.stderr and "no-such-profile" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_watching_an_empty_prefix_once_is_one_line(
    gov, workspace: Path, s3: Any, mix: Path
) -> None:
    bucket(s3, "runs-typo", versioned=True)
    verl(s3, "runs-typo/grpo", 10)
    done = look(gov, workspace, "s3://runs-typo/gpro/", mix)  # the data is under grpo/
    assert done.exit_code == 2
    assert "s3://runs-typo/gpro/: no objects under it" in done.stderr


def test_a_store_that_cannot_be_listed_for_a_while_does_not_end_the_watch(
    workspace: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network blip or an expired token: the look says so in one line, and the next one goes
    on (a watcher that died would leave later checkpoints to the framework's retention)."""
    from governance.layouts import layout
    from governance.watch import Watcher, read_exposure

    own = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    own.start()
    host, port = own.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retries with backoff: the test's time
    client = boto3.client("s3")
    bucket(client, "runs-blip", versioned=True)
    verl(client, "runs-blip/grpo", 10)
    lines: list[str] = []
    watcher = Watcher(
        open_registry(workspace),
        "s3://runs-blip/grpo/",
        layout("verl"),
        "main",
        read_exposure({"math": 1.0}),
        lines.append,
    )
    with watcher:
        assert watcher.look().waiting == [10]
        own.stop()
        blip = watcher.look()
        assert blip.problems and "cannot list s3://runs-blip/grpo/" in blip.problems[0]
    assert steps(workspace) == []
