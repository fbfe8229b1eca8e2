"""What `gov audit verify` catches beyond the hash chain: entries no gov commit made, entries
whose commit did not do what they say, and statuses the trail does not account for."""

from __future__ import annotations

import json
from pathlib import Path

import git

from governance.records import AuditBody, AuditEntry


def _forge(ws: Path, kind: str, subject: dict[str, str], outcome: str) -> tuple[int, str]:
    """Append a validly chained entry at the end, as a forger with the code would."""
    path = ws / "audit" / "trail.jsonl"
    last = json.loads(path.read_text().splitlines()[-1])
    entry = AuditEntry.seal(
        AuditBody(
            seq=last["seq"] + 1,
            prev=last["id"],
            kind=kind,
            time=last["time"],
            actor=last["actor"],
            subject=subject,
            inputs={},
            outcome=outcome,
        )
    )
    with path.open("ab") as handle:
        handle.write(entry.line())
    return entry.seq, entry.id


def test_a_forged_tail_is_caught_committed_or_not(gov, example_copy: Path) -> None:
    seq, entry = _forge(example_copy, "promotion", {"checkpoint": "main@4000"}, "pass")
    loose = gov("audit", "verify", cwd=example_copy)
    assert loose.exit_code == 1 and "is in no commit" in loose.stderr
    repo = git.Repo(example_copy)
    repo.index.add(["audit/trail.jsonl"])
    repo.index.commit(f"tidy\n\nGov-Audit-Entry: {entry}\nGov-Audit-Head: {seq} {entry}")
    forged = gov("audit", "verify", cwd=example_copy)
    assert forged.exit_code == 1
    assert "which changed none of registry/checkpoints/" in forged.stderr


def test_a_promotion_whose_entry_was_dropped_is_caught(gov, example_copy: Path) -> None:
    assert gov("check", "main@4000", cwd=example_copy).exit_code == 0
    assert gov("promote", "main@4000", cwd=example_copy).exit_code == 0
    repo = git.Repo(example_copy)
    path = example_copy / "audit" / "trail.jsonl"
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["kind"] == "promotion"
    path.write_text("\n".join(lines[:-1]) + "\n")  # amend away the entry, keep the promotion
    repo.index.add(["audit/trail.jsonl"])
    repo.git.commit("--amend", "--no-edit")
    broken = gov("audit", "verify", cwd=example_copy)
    assert broken.exit_code == 1
    assert "main@4000 is promoted, but no entry of the trail promotes it" in broken.stderr


def test_an_untouched_trail_verifies(gov, example_copy: Path) -> None:
    assert gov("check", "main@4000", cwd=example_copy).exit_code == 0
    promoted = gov("promote", "main@4000", "--format", "json", cwd=example_copy)
    assert promoted.exit_code == 0, promoted.stderr
    assert json.loads(promoted.stdout)["checkpoint"] == "main@4000"
    assert gov("rollback", "recommend", cwd=example_copy).exit_code == 0
    done = gov("audit", "verify", "--format", "json", cwd=example_copy)
    assert done.exit_code == 0, done.stderr
    lines = (example_copy / "audit" / "trail.jsonl").read_text().splitlines()
    verified = json.loads(done.stdout)
    assert verified["entries"] == len(lines)
    assert verified["head"] == json.loads(lines[-1])["id"]


def test_an_anchor_pushed_to_the_remote_catches_a_cut_back_trail(
    gov, example_copy: Path, tmp_path: Path
) -> None:
    import pytest

    from governance import audit
    from governance.errors import TrailBroken
    from governance.workspace import find

    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True)
    repo = git.Repo(example_copy)
    repo.create_remote("anchors", str(remote))
    done = gov("audit", "anchor", "--remote", "anchors", cwd=example_copy)
    assert done.exit_code == 0, done.stderr
    seq = len((example_copy / "audit" / "trail.jsonl").read_text().splitlines())
    assert f"gov-anchor/{seq}" in {t.name for t in git.Repo(remote).tags}
    assert gov("audit", "verify", cwd=example_copy).exit_code == 0
    # The trail cut back by two entries: the anchor still names the head that was there.
    path = example_copy / "audit" / "trail.jsonl"
    path.write_text("\n".join(path.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(TrailBroken, match=f"entry {seq}, anchored by tag gov-anchor/{seq}"):
        audit.verify_anchors(find(example_copy))
    assert gov("audit", "verify", cwd=example_copy).exit_code == 1


def test_commits_are_checked_against_the_keys_allowed_to_sign(
    gov, registry, artifact, tmp_path: Path
) -> None:
    import subprocess

    from test_regressions import _counts, _run

    key = tmp_path / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    repo = registry.ws.repo
    with repo.config_writer() as config:
        config.set_value("gpg", "format", "ssh")
        config.set_value("user", "signingkey", str(key))
        config.set_value("commit", "gpgsign", "true")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"trainer@example.com {(tmp_path / 'signer.pub').read_text()}")
    _run(registry, artifact, tmp_path, gov, [_counts(100 * i, 300) for i in range(1, 4)])
    assert gov("check", "main@300", cwd=registry.ws.root).exit_code == 0
    signed = gov("audit", "verify", "--allowed-signers", str(allowed), cwd=registry.ws.root)
    assert signed.exit_code == 0, signed.stderr
    # A gov commit made without the key (a forger's checkout): caught, naming the entry.
    with repo.config_writer() as config:
        config.set_value("commit", "gpgsign", "false")
    assert gov("check", "main@200", cwd=registry.ws.root).exit_code == 0
    caught = gov("audit", "verify", "--allowed-signers", str(allowed), cwd=registry.ws.root)
    assert caught.exit_code == 1
    assert "which is not signed by an allowed key" in caught.stderr
    assert gov("audit", "verify", cwd=registry.ws.root).exit_code == 0  # without keys: intact


def test_statuses_set_by_hand_are_caught(gov, example_copy: Path) -> None:
    # main@250 was never blocked by a check; an environment no rollback put in redesign.
    checkpoints = example_copy / "registry" / "checkpoints" / "main.jsonl"
    lines = checkpoints.read_text().splitlines()
    first = json.loads(lines[0])
    assert first["status"] != "blocked"
    first["status"] = "blocked"
    lines[0] = json.dumps(first, separators=(",", ":"))
    checkpoints.write_text("\n".join(lines) + "\n")
    caught = gov("audit", "verify", cwd=example_copy)
    assert caught.exit_code == 1
    assert f"main@{first['step']} is blocked, but no check in the trail blocked it" in caught.stderr


def _set_status(ws: Path, step: int, status: str) -> None:
    """Set checkpoint main@step's status by hand, as an editor of the registry file would."""
    path = ws / "registry" / "checkpoints" / "main.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        if record["step"] == step:
            record["status"] = status
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


def _last_entry(ws: Path) -> dict[str, object]:
    return json.loads((ws / "audit" / "trail.jsonl").read_text().splitlines()[-1])


def _broken(gov, ws: Path) -> str:
    """What `gov audit verify` says of a trail it must find broken (exit 1)."""
    caught = gov("audit", "verify", cwd=ws)
    assert caught.exit_code == 1, caught.stdout
    return str(caught.stderr)


def test_a_quarantine_is_recorded_and_one_set_by_hand_is_caught(gov, example_copy: Path) -> None:
    ws = example_copy
    done = gov("checkpoint", "quarantine", "main@500", "--reason", "bad data", cwd=ws)
    assert done.exit_code == 0, done.stderr
    last = _last_entry(ws)
    assert (last["kind"], last["outcome"], last["reason"]) == (
        "status_change",
        "quarantined",
        "bad data",
    )
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    again = gov("checkpoint", "quarantine", "main@500", "--reason", "twice", cwd=ws)
    assert again.exit_code == 2 and "main@500 is already quarantined" in again.stderr
    empty = gov("checkpoint", "quarantine", "main@750", "--reason", " ", cwd=ws)
    assert empty.exit_code == 2 and "the reason is empty" in empty.stderr
    assert _last_entry(ws) == last  # refused: nothing written

    _set_status(ws, 1000, "quarantined")
    assert "main@1000 is quarantined, but no entry of the trail quarantined it" in _broken(gov, ws)


def test_a_release_is_recorded_and_a_quarantine_set_again_by_hand_is_caught(
    gov, example_copy: Path
) -> None:
    ws = example_copy
    never = gov("checkpoint", "release", "main@500", "--reason", "fine", cwd=ws)
    assert never.exit_code == 2 and "is registered, not quarantined" in never.stderr
    assert (
        gov("checkpoint", "quarantine", "main@500", "--reason", "bad data", cwd=ws).exit_code == 0
    )
    released = gov(
        "checkpoint", "release", "main@500", "--reason", "re-judged", "--format", "json", cwd=ws
    )
    assert released.exit_code == 0, released.stderr
    assert json.loads(released.stdout)["status"] == "registered"
    last = _last_entry(ws)
    assert (last["kind"], last["outcome"], last["reason"]) == (
        "status_change",
        "registered",
        "re-judged",
    )
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    # The trail once quarantined it, but its last word is the release.
    _set_status(ws, 500, "quarantined")
    broken = _broken(gov, ws)
    assert "main@500 is quarantined, but no entry of the trail quarantined it since it" in broken


def test_a_promotion_set_back_by_hand_after_a_quarantine_is_caught(gov, example_copy: Path) -> None:
    ws = example_copy
    assert gov("check", "main@500", cwd=ws).exit_code == 0
    assert gov("promote", "main@500", cwd=ws).exit_code == 0
    found = gov("checkpoint", "quarantine", "main@500", "--reason", "found later", cwd=ws)
    assert found.exit_code == 0, found.stderr
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    # The promotion entry is still in the trail, but the quarantine came after it.
    _set_status(ws, 500, "promoted")
    broken = _broken(gov, ws)
    assert "main@500 is promoted, but the trail set it quarantined after its last promotion" in (
        broken
    )


def test_a_retirement_is_recorded_binds_the_registry_and_one_set_by_hand_is_caught(
    gov, example_copy: Path
) -> None:
    ws = example_copy
    done = gov("env", "retire", "tool-use-booking", "--reason", "replaced", cwd=ws)
    assert done.exit_code == 0, done.stderr
    last = _last_entry(ws)
    assert (last["kind"], last["subject"], last["reason"]) == (
        "environment_retired",
        {"environment": "tool-use-booking"},
        "replaced",
    )
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    again = gov("env", "retire", "tool-use-booking", "--reason", "twice", cwd=ws)
    assert again.exit_code == 2 and "already retired" in again.stderr
    redesign = gov(
        "env", "version", "tool-use-booking", "--hash", "sha256:" + "a" * 64, "--note", "x", cwd=ws
    )
    assert redesign.exit_code == 2 and "is retired" in redesign.stderr
    (ws / "checkpoints" / "late.bin").write_bytes(b"late")
    trained = gov(
        "checkpoint",
        "add",
        "main@99000",
        "checkpoints/late.bin",
        "-e",
        "tool-use-booking=1",
        cwd=ws,
    )
    assert trained.exit_code == 2 and "retired" in trained.stderr

    path = ws / "registry" / "environments" / "shell-tasks.yaml"
    path.write_text(path.read_text().replace("status: active", "status: retired"))
    assert "shell-tasks is retired, but no entry of the trail retired it" in _broken(gov, ws)


def test_a_decision_edited_after_its_check_is_caught(gov, example_copy: Path) -> None:
    # turning the recorded block into a pass in the decision file itself passed the verify, and
    # the review page then headlined PASS
    [path] = sorted((example_copy / "audit" / "decisions").glob("main@12000.*.json"))
    text = path.read_text()
    assert '"outcome": "block"' in text
    path.write_text(text.replace('"outcome": "block"', '"outcome": "pass"', 1))
    repo = git.Repo(example_copy)
    repo.index.add([str(path.relative_to(example_copy))])
    repo.index.commit("edit a decision")
    done = gov("audit", "verify", cwd=example_copy)
    assert done.exit_code == 1, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert path.name in line and "not the one it recorded" in line


def test_no_entry_is_written_on_a_trail_cut_back_to_what_was_verified_before(
    gov, example_copy: Path
) -> None:
    # the last entry deleted and the deletion committed leaves exactly the bytes the previous
    # append had verified: the cheap check before a write passed, and gov check wrote on top
    path = example_copy / "audit" / "trail.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    repo = git.Repo(example_copy)
    repo.index.add(["audit/trail.jsonl"])
    repo.index.commit("drop the last entry")
    head = repo.head.commit.hexsha
    assert gov("audit", "verify", cwd=example_copy).exit_code == 1
    done = gov("check", "main@3000", cwd=example_copy)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "refusing to write" in line and "rewritten" in line
    assert repo.head.commit.hexsha == head and path.read_text() == "".join(lines[:-1])


def test_a_quarantine_or_retirement_undone_by_hand_is_caught(gov, example_copy: Path) -> None:
    ws = example_copy
    assert gov("checkpoint", "quarantine", "main@1000", "--reason", "bad", cwd=ws).exit_code == 0
    _set_status(ws, 1000, "registered")
    assert (
        "main@1000 is registered, but the trail left it quarantined (by a status_change entry)"
    ) in _broken(gov, ws)
    _set_status(ws, 1000, "blocked")
    assert "main@1000 is blocked, but no check" in _broken(gov, ws)
    _set_status(ws, 1000, "quarantined")
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    assert gov("env", "retire", "shell-tasks", "--reason", "gone", cwd=ws).exit_code == 0
    path = ws / "registry" / "environments" / "shell-tasks.yaml"
    path.write_text(path.read_text().replace("status: retired", "status: active"))
    assert "shell-tasks is active, but the trail retired it" in _broken(gov, ws)


def test_a_check_leaves_a_quarantine_and_a_release_brings_its_block_back(
    gov, example_copy: Path
) -> None:
    ws = example_copy
    ref = "main@11750"  # the example's rise blocks it
    assert gov("checkpoint", "quarantine", ref, "--reason", "bad shard", cwd=ws).exit_code == 0
    checked = gov("check", ref, cwd=ws)
    assert checked.exit_code == 1 and "BLOCK" in checked.stdout
    shown = json.loads(gov("checkpoint", "show", ref, "--format", "json", cwd=ws).stdout)
    assert shown["status"] == "quarantined"  # the block is in the trail; the quarantine stands
    # An earlier gov wrote blocked over the quarantine at that check: its trails still verify.
    _set_status(ws, 11750, "blocked")
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    _set_status(ws, 11750, "quarantined")
    released = gov("checkpoint", "release", ref, "--reason", "fine", "--format", "json", cwd=ws)
    assert released.exit_code == 0, released.stderr
    assert json.loads(released.stdout)["status"] == "blocked"  # its last check blocked it
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    # a checkpoint never checked comes back registered
    assert gov("checkpoint", "quarantine", "main@500", "--reason", "x", cwd=ws).exit_code == 0
    back = gov("checkpoint", "release", "main@500", "--reason", "y", "--format", "json", cwd=ws)
    assert json.loads(back.stdout)["status"] == "registered"


def test_the_gate_blocks_a_quarantined_checkpoint_and_passes_it_once_released(
    gov, example_copy: Path
) -> None:
    ws, ref = example_copy, "main@500"  # its evidence passes
    assert gov("checkpoint", "quarantine", ref, "--reason", "bad shard", cwd=ws).exit_code == 0
    held = gov("check", ref, "--format", "json", cwd=ws)
    assert held.exit_code == 1  # a CI job gating on the check does not let it through
    decision = json.loads(held.stdout)
    fired = [r["policy"] for r in decision["results"] if r["status"] == "fired"]
    assert decision["outcome"] == "block" and fired == ["quarantine-hold"]
    assert _last_entry(ws)["refs"]["fired"] == ["quarantine-hold"]
    # Released, it is registered (its evidence never blocked it) and passes again.
    back = gov("checkpoint", "release", ref, "--reason", "re-judged", "--format", "json", cwd=ws)
    assert json.loads(back.stdout)["status"] == "registered"
    assert gov("check", ref, cwd=ws).exit_code == 0
    assert gov("promote", ref, cwd=ws).exit_code == 0
    assert gov("audit", "verify", cwd=ws).exit_code == 0


def test_a_retired_environment_stays_retired_through_a_rollback(gov, example_copy: Path) -> None:
    ws = example_copy
    flagged = json.loads(gov("flags", "list", "--format", "json", cwd=ws).stdout)
    assert [f["environment"] for f in flagged if f["status"] == "open"] == ["code-unit-tests"]
    done = gov("env", "retire", "code-unit-tests", "--reason", "replaced", cwd=ws)
    assert done.exit_code == 0, done.stderr
    (ws / "restart").mkdir()
    applied = gov("rollback", "apply", "--to", "restart/ckpt.bin", "--yes", cwd=ws)
    assert applied.exit_code == 0, applied.stderr
    env = json.loads(gov("env", "show", "code-unit-tests", "--format", "json", cwd=ws).stdout)
    assert env["status"] == "retired"
    assert _last_entry(ws)["subject"]["environments"] == ""  # no redesign of it either
    redesign = gov(
        "env", "version", "code-unit-tests", "--hash", "sha256:" + "b" * 64, "--note", "x", cwd=ws
    )
    assert redesign.exit_code == 2 and "is retired" in redesign.stderr
    assert gov("audit", "verify", cwd=ws).exit_code == 0


def test_an_environment_status_set_by_hand_is_caught(gov, example_copy: Path) -> None:
    ws = example_copy
    path = ws / "registry" / "environments" / "sql-queries.yaml"
    original = path.read_text()
    path.write_text(original.replace("status: active", "status: flagged"))
    assert "sql-queries is flagged, but the trail left it active" in _broken(gov, ws)
    path.write_text(original)
    (ws / "restart").mkdir()
    applied = gov("rollback", "apply", "--to", "restart/ckpt.bin", "--yes", cwd=ws)
    assert applied.exit_code == 0, applied.stderr
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    path = ws / "registry" / "environments" / "code-unit-tests.yaml"
    path.write_text(path.read_text().replace("status: in_redesign", "status: active"))
    assert "code-unit-tests is active, but the trail left it in_redesign" in _broken(gov, ws)
