"""The audit trail: entries for every gate, tamper evidence, concurrency and crashes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import git
import pytest

from conftest import TEST_EMAIL, TEST_NAME
from governance import open_registry
from governance.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ws(example_copy: Path) -> Path:
    return example_copy


def trail(ws: Path) -> list[dict]:
    return [json.loads(line) for line in (ws / "audit" / "trail.jsonl").read_text().splitlines()]


def test_every_gate_leaves_an_entry(gov, ws: Path, tmp_path: Path) -> None:
    kinds = [e["kind"] for e in trail(ws)]
    assert kinds.count("report_ingested") == 48
    assert kinds[-3:] == ["policy_change", "check", "flag_raised"]  # the example's check
    assert gov("check", "main@3000", cwd=ws).exit_code == 0
    assert gov("promote", "main@3000", cwd=ws).exit_code == 0
    assert (
        gov(
            "--actor", "release-bot", "promote", "main@11000", "--override", "--reason", "r", cwd=ws
        ).exit_code
        == 0
    )
    assert gov("flags", "ack", "code-unit-tests", "--reason", "mine", cwd=ws).exit_code == 0
    assert gov("rollback", "recommend", cwd=ws).exit_code == 0
    assert gov("rollback", "apply", "--to", str(tmp_path / "r.bin"), "--yes", cwd=ws).exit_code == 0
    env_dir = ws / "environments" / "code-unit-tests"
    (env_dir / "scoring.yaml").write_text("grader: hidden tests\n")
    assert (
        gov(
            "env", "version", "code-unit-tests", "--from", str(env_dir), "--note", "fix", cwd=ws
        ).exit_code
        == 0
    )
    entries = trail(ws)
    kinds = [e["kind"] for e in entries]
    for kind in (
        "check",
        "promotion",
        "override",
        "flag_acknowledged",
        "rollback_recommended",
        "rollback_applied",
        "redesign",
        "flag_resolved",
    ):
        assert kind in kinds, kind
    override = next(e for e in entries if e["kind"] == "override")
    assert override["actor"] == "release-bot" and override["reason"] == "r"
    assert override["inputs"]["policies"] and override["subject"]["checkpoint"] == "main@11000"
    promotion = next(e for e in entries if e["kind"] == "promotion")
    config = git.Repo(ws).config_reader()  # the actor is git's identity unless --actor says
    name, email = config.get_value("user", "name"), config.get_value("user", "email")
    assert promotion["actor"] == f"{name} <{email}>"
    assert gov("audit", "verify", cwd=ws).exit_code == 0
    logged = json.loads(
        gov("audit", "log", "--kind", "override", "--format", "json", cwd=ws).stdout
    )
    assert [e["id"] for e in logged] == [override["id"]]
    by_env = json.loads(
        gov("audit", "log", "--env", "code-unit-tests", "--format", "json", cwd=ws).stdout
    )
    assert {
        "flag_raised",
        "flag_acknowledged",
        "redesign",
        "flag_resolved",
        "rollback_applied",
    } <= {e["kind"] for e in by_env}
    pressure = json.loads(gov("audit", "pressure", "--format", "json", cwd=ws).stdout)
    assert pressure["code-unit-tests"] == {
        "flag_raised": 1,
        "redesign": 1,
        "rollback_applied": 1,
        "obfuscation_warning": 0,  # no action-view judge in the example: no CoT hiding watched
    }


def test_actor_applies_to_its_own_command_only(gov, ws: Path) -> None:
    # Two commands in one process (as a notebook or a service would run them): --actor names
    # who acts in the first, and the second, without --actor, is git's identity again.
    assert gov("--actor", "someone", "check", "main@3000", cwd=ws).exit_code == 0
    first = trail(ws)
    assert first[-1]["kind"] == "check" and first[-1]["actor"] == "someone"
    assert gov("check", "main@11000", cwd=ws).exit_code == 1
    later = trail(ws)[len(first) :]
    assert [e["kind"] for e in later] == ["check"]
    assert {e["actor"] for e in later} == {f"{TEST_NAME} <{TEST_EMAIL}>"}


def test_show_resolves_the_policies_and_decision(gov, ws: Path) -> None:
    check = next(e for e in trail(ws) if e["kind"] == "check")
    shown = json.loads(gov("audit", "show", check["id"][:16], "--format", "json", cwd=ws).stdout)
    resolved = shown["resolved"]
    assert resolved["commit"] == git.Repo(ws).git.log(
        "--format=%H", "-F", f"--grep={check['id']}", "-1"
    )
    assert (
        "name: rationalization-rate-rising"
        in resolved["policies"]["policies/rationalization-rate-rising.yaml"]
    )
    assert resolved["decision"]["outcome"] == "block"
    fired = [r for r in resolved["decision"]["results"] if r["status"] == "fired"]
    assert fired and fired[0]["seen"][-1][0] == check["subject"]["checkpoint"]
    assert len(fired[0]["seen"]) == 48  # every checkpoint of the series it evaluated
    text = gov("audit", "show", str(check["seq"]), cwd=ws).stdout
    assert "the series it saw (last 12 of 48): main@9250" in text


def test_show_reads_git_without_opening_the_registry(gov, ws: Path) -> None:
    # `gov audit show` is a reviewer's lookup: it asks git a few questions directly, without the
    # registry, GitPython or DVC, whose imports were most of its time. Its answer is the same,
    # found by searching the history, or through the commit map that `gov audit verify` makes.
    check = next(e for e in trail(ws) if e["kind"] == "check")
    code = (
        "import json, sys; from governance import api; "
        "shown = api.audit_show(sys.argv[1], sys.argv[2]); "
        "print(json.dumps({'resolved': shown.resolved, 'seq': shown.entry.seq, "
        "'loaded': sorted(m for m in ('git', 'dvc', 'governance.registry', 'numpy') "
        "if m in sys.modules)}))"
    )
    repo = git.Repo(ws)
    commit = repo.git.log("--format=%H", "-F", f"--grep={check['id']}", "-1")
    for mapped in (False, True):
        if mapped:
            assert gov("audit", "verify", cwd=ws).exit_code == 0
            assert (ws / ".gov" / "index" / "commits.of").is_file()  # the map
        out = subprocess.run(
            [sys.executable, "-c", code, str(ws), str(check["seq"])],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        shown = json.loads(out.stdout)
        assert shown["loaded"] == []
        assert shown["seq"] == check["seq"]
        assert shown["resolved"]["commit"] == commit
        for path, text in shown["resolved"]["policies"].items():
            assert text == repo.git.show(f"{commit}:{path}")
        assert shown["resolved"]["decision"]["outcome"] == check["outcome"]


def test_show_reads_a_symlinked_policy_as_the_file_it_names(gov, ws: Path) -> None:
    # A policy shared between workspaces, kept once in the repository and linked: the entry's
    # policy text is what was evaluated (the file the link names), not the link itself.
    repo = git.Repo(ws)
    shared = ws / "shared" / "overt.yaml"
    shared.parent.mkdir()
    link = ws / "policies" / "overt-rate-above.yaml"
    shared.write_text(link.read_text() + "# kept once, linked from each workspace\n")
    link.unlink()
    link.symlink_to(Path("..") / "shared" / "overt.yaml")
    repo.git.add("-A")
    repo.git.commit("-m", "share a policy")
    assert gov("check", "main@11000", cwd=ws).exit_code == 1
    check = trail(ws)[-1]
    assert check["kind"] == "check"
    shown = json.loads(gov("audit", "show", str(check["seq"]), "--format", "json", cwd=ws).stdout)
    text = shown["resolved"]["policies"]["policies/overt-rate-above.yaml"]
    assert text == shared.read_text().rstrip("\n")


def test_show_says_what_git_said_when_it_cannot_read_the_repository(
    gov, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # git refuses (here GIT_DIR names a folder that is no repository, as a stray setting would):
    # one line in git's own words, not an entry shown as if no commit had recorded it.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("GIT_DIR", str(empty))
    result = gov("audit", "show", "1", cwd=ws)
    assert result.exit_code == 2, result.stdout
    assert "not a git repository" in result.stderr and "git cat-file failed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def _rewrite(ws: Path, entries: list[dict]) -> None:
    (ws / "audit" / "trail.jsonl").write_text(
        "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
    )


def _tamper_edit(entries: list[dict]) -> list[dict]:
    entries[5]["outcome"] = "nothing to see"
    return entries


def _tamper_delete(entries: list[dict]) -> list[dict]:
    return entries[:5] + entries[6:]


def _tamper_insert(entries: list[dict]) -> list[dict]:
    return [*entries[:5], dict(entries[5]), *entries[5:]]


def _tamper_reorder(entries: list[dict]) -> list[dict]:
    entries[5], entries[6] = entries[6], entries[5]
    return entries


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_tamper_edit, "entry 6 was edited"),
        (_tamper_delete, "entry 7 is out of place"),
        (_tamper_insert, "entry 6 is out of place"),
        (_tamper_reorder, "entry 7 is out of place"),
    ],
)
def test_verify_names_the_first_bad_entry(gov, ws: Path, tamper, message: str) -> None:
    _rewrite(ws, tamper(trail(ws)))
    result = gov("audit", "verify", cwd=ws)
    assert result.exit_code == 1
    assert message in result.stderr and "audit/trail.jsonl:" in result.stderr


def test_a_rewritten_and_recommitted_chain_is_caught(gov, ws: Path) -> None:
    from governance.audit import entry_id

    entries = trail(ws)
    entries[3]["outcome"] = "forged"
    prev = entries[2]["id"]
    for entry in entries[3:]:  # a forger recomputes every hash after the edit...
        entry["prev"] = prev
        entry["id"] = entry_id(entry)
        prev = entry["id"]
    _rewrite(ws, entries)
    repo = git.Repo(ws)
    repo.index.add(["audit/trail.jsonl"])
    repo.index.commit("tidy the trail")  # ...and commits it
    result = gov("audit", "verify", cwd=ws)
    assert result.exit_code == 1
    assert "entry 4 is not what commit" in result.stderr and "rewritten" in result.stderr


APPENDER = """
import sys
from governance import audit
from governance.workspace import find
ws = find(__import__("pathlib").Path(sys.argv[1]))
for i in range(8):
    with ws.change(f"note {sys.argv[2]}-{i}") as change:
        audit.append(change, "rollback_recommended", subject={}, outcome=f"{sys.argv[2]}-{i}")
"""


def test_concurrent_appends_lose_nothing(gov, ws: Path) -> None:
    before = len(trail(ws))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(ws), tag], env=env) for tag in "ab"
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    entries = trail(ws)
    assert len(entries) == before + 16
    assert sorted(e["outcome"] for e in entries[before:]) == sorted(
        f"{t}-{i}" for t in "ab" for i in range(8)
    )
    assert gov("audit", "verify", cwd=ws).exit_code == 0


KILLED = """
import os, signal, sys
import governance.scm as scm
from governance import audit
from governance.workspace import find
scm.commit_paths = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
ws = find(__import__("pathlib").Path(sys.argv[1]))
with ws.change("doomed") as change:
    audit.append(change, "policy_change", subject={}, outcome="never")
"""


def test_a_killed_append_leaves_the_trail_whole(gov, ws: Path) -> None:
    before = (ws / "audit" / "trail.jsonl").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert (
        subprocess.run([sys.executable, "-c", KILLED, str(ws)], env=env, check=False).returncode
        == -9
    )
    assert (ws / "audit" / "trail.jsonl").read_bytes() != before  # the half-made append
    assert gov("audit", "verify", cwd=ws).exit_code == 0  # the next command undoes it
    assert (ws / "audit" / "trail.jsonl").read_bytes() == before


def test_audit_bad_input(gov, ws: Path) -> None:
    bad = gov("audit", "log", "--since", "last tuesday", cwd=ws)
    assert bad.exit_code == 2 and "--since 'last tuesday': not a date" in bad.stderr
    assert gov("audit", "log", "--since", "7d", "--kind", "check", cwd=ws).exit_code == 0
    unknown = gov("audit", "log", "--kind", "coup", cwd=ws)
    assert unknown.exit_code == 2 and "unknown kind 'coup'" in unknown.stderr
    (ws / "audit" / "trail.jsonl").write_text(
        (ws / "audit" / "trail.jsonl").read_text() + "{oops\n"
    )
    broken = gov("audit", "verify", cwd=ws)
    assert broken.exit_code == 2 and "not a JSON entry" in broken.stderr
    shutil.rmtree(ws / "audit")
    missing = gov("audit", "log", cwd=ws)
    assert missing.exit_code == 2 and "the audit folder is missing" in missing.stderr


def test_verify_names_reports_no_longer_present(gov, ws: Path) -> None:
    entry = next(e for e in trail(ws) if e["kind"] == "report_ingested")
    md5 = entry["inputs"]["reports"][0]
    for path in (ws / "reports").glob(f"{md5}.*"):
        if not path.name.endswith(".dvc"):
            path.unlink()
    result = gov("audit", "verify", cwd=ws)
    assert result.exit_code == 0
    assert f"report {md5} named by an entry is not in the workspace" in result.stdout


READS = (
    ("status", "--format", "json"),
    ("status",),
    ("checkpoint", "list", "--format", "json"),
    ("checkpoint", "list"),
    ("checkpoint", "show", "main@6000", "--format", "json"),
    ("env", "list", "--format", "json"),
)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "edited", "empty", "deleted"])
def test_registry_reads_stay_independent_of_the_trail(gov, ws: Path, damage: str) -> None:
    # Reading the registry never replays the trail: whatever the trail holds, the same answers.
    before = {args: gov(*args, cwd=ws) for args in READS}
    assert all(r.exit_code == 0 for r in before.values()), before
    assert len(json.loads(before[READS[2]].stdout)) == 48
    path = ws / "audit" / "trail.jsonl"
    text = path.read_text()
    if damage == "garbage":
        path.write_bytes(b"\x00\xffnot json at all\n" + text.encode() + b"{oops\n")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])  # ends in the middle of an entry
    elif damage == "edited":
        _rewrite(ws, _tamper_edit(trail(ws)))
    elif damage == "empty":
        path.write_text("")
    else:
        path.unlink()
    damaged = path.read_bytes() if path.exists() else None
    assert gov("audit", "verify", cwd=ws).exit_code != 0  # the trail really is broken
    for args, expected in before.items():
        after = gov(*args, cwd=ws)
        assert (after.exit_code, after.stdout) == (expected.exit_code, expected.stdout), args
    assert (path.read_bytes() if path.exists() else None) == damaged  # reads leave it alone


def test_the_pressure_policy_warns_after_repeated_redesigns(gov, ws: Path) -> None:
    env_dir = ws / "environments" / "math-proofs"
    for i in range(3):
        (env_dir / "scoring.yaml").write_text(f"grader: v{i + 2}\n")
        assert (
            gov(
                "env", "version", "math-proofs", "--from", str(env_dir), "--note", f"r{i}", cwd=ws
            ).exit_code
            == 0
        )
    data = json.loads(gov("check", "main@3000", "--dry-run", "--format", "json", cwd=ws).stdout)
    fired = [
        r for r in data["results"] if r["policy"] == "monitor-pressure" and r["status"] == "fired"
    ]
    assert [r["series"]["environment"] for r in fired] == ["math-proofs"]
    assert "independent held-out judge" in fired[0]["reason"]
    assert data["outcome"] == "warn"


def test_entries_are_signed_when_git_signs(gov, registry, workspace: Path, tmp_path: Path) -> None:
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is needed to make a signing key")
    key = tmp_path / "signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"trainer@example.com {(tmp_path / 'signing.pub').read_text()}")
    repo = git.Repo(workspace)
    with repo.config_writer() as config:
        config.set_value("gpg", "format", "ssh")
        config.set_value("user", "signingkey", str(key))
        config.set_value("commit", "gpgsign", "true")
        config.set_value("gpg.ssh", "allowedSignersFile", str(allowed))
    assert gov("flags", "list", cwd=workspace).exit_code == 0
    registry.add_environment("chess", content_hash="c" * 64)  # a registry change: one commit
    env_dir = workspace / "envs" / "math"
    (env_dir / "task.py").write_text("TASK = 'math v2'\n")
    assert (
        gov(
            "env", "version", "math", "--from", str(env_dir), "--note", "v2", cwd=workspace
        ).exit_code
        == 0
    )
    head = repo.head.commit
    assert "Gov-Audit-Head:" in head.message  # the redesign's audit entry is in this commit
    verified = subprocess.run(
        ["git", "verify-commit", "HEAD"], cwd=workspace, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    assert 'Good "git" signature' in verified.stderr


@pytest.mark.parametrize("block", [7, 64, 1 << 16])
def test_the_latest_policies_are_read_from_the_end_of_the_trail(tmp_path: Path, block) -> None:
    """A check compares the policies with the newest decision's, reading the trail backwards;
    it must find what a read from the start finds, whatever the block boundaries cut."""
    from governance.audit import _last_policies

    path = tmp_path / "trail.jsonl"
    lines, expected = [], {}
    for i in range(40):
        kind = ["check", "flag_raised", "policy_change", "override"][i % 4]
        entry = {"seq": i, "id": f"e{i}", "kind": kind, "inputs": {}}
        if kind in ("check", "policy_change") and i % 3:
            entry["inputs"]["policies"] = {f"policies/p{i % 5}.yaml": "x" * (i % 9)}
        lines.append(json.dumps(entry))
        if "policies" in entry["inputs"]:
            expected = entry["inputs"]["policies"]
        path.write_text("\n".join(lines) + "\n")
        assert _last_policies([path], block) == expected, i
    path.write_text("\n".join(lines[:3]) + "\nnot json\n")
    assert _last_policies([path], block) is None  # the forward read then names the line
    path.write_text("not json\n" + "\n".join(lines[:1]) + "\n")
    assert _last_policies([path], block) is None  # met before any decision: the same


def test_pressure_follows_every_append(ws: Path) -> None:
    from governance import audit

    workspace = open_registry(ws).ws
    before = audit.pressure(workspace).get("math-proofs", {}).get("redesign", 0)
    for i in (1, 2):
        with workspace.change(f"redesign {i}") as change:
            audit.append(
                change, "redesign", subject={"environment": "math-proofs"}, outcome=f"r{i}"
            )
        assert audit.pressure(workspace)["math-proofs"]["redesign"] == before + i


# Three entries as the trail wrote them before entries were built through the AuditEntry model
# (a None inside inputs, non-ASCII text, an empty reason and refs left out): written again, the
# bytes, and so every id of an existing chain, must be the same.
WRITTEN_BEFORE = [
    '{"actor":"alice <alice@example.com>","id":"80a36ff32cea1e85b36770906bf892d7aff78ce3bc814a810b6a8db8dfe2fdc2","inputs":{"k":3,"policies":{"policies/a.yaml":"abababababababababababababababababababababababababababababababab"},"reports":["00000000000000000000000000000000"],"x":null},"kind":"check","outcome":"pass","prev":"0000000000000000000000000000000000000000000000000000000000000000","schema_version":1,"seq":1,"subject":{"checkpoint":"main@1000","run":"main"},"time":"2026-11-02T09:30:00+00:00"}',
    '{"actor":"alice <alice@example.com>","id":"2243d59a8b96b4fbc96c04fc271b1d2fd02177c949ad8af699ba93cb6ff3a8b7","inputs":{},"kind":"override","outcome":"promoted","prev":"80a36ff32cea1e85b36770906bf892d7aff78ce3bc814a810b6a8db8dfe2fdc2","reason":"judge misfires; see #12 \\u2014 \\u00fcn\\u00efcode","refs":{"decision":"audit/decisions/main@1000.abc.json"},"schema_version":1,"seq":2,"subject":{"checkpoint":"main@1000"},"time":"2026-11-02T09:30:00+00:00"}',
    '{"actor":"alice <alice@example.com>","id":"3e251ae34e4bf4b25f0813f1575b59667a2aa7373855e73f0bda479b99c02aac","inputs":{},"kind":"redesign","outcome":"v2","prev":"2243d59a8b96b4fbc96c04fc271b1d2fd02177c949ad8af699ba93cb6ff3a8b7","schema_version":1,"seq":3,"subject":{"environment":"math"},"time":"2026-11-02T09:30:00+00:00"}',
]


def _append_the_three(ws: Workspace) -> None:
    from governance import audit

    with ws.change("two entries") as change:
        audit.append(
            change,
            "check",
            subject={"run": "main", "checkpoint": "main@1000", "environment": None},
            outcome="pass",
            inputs={
                "policies": {"policies/a.yaml": "ab" * 32},
                "reports": ["0" * 32],
                "k": 3,
                "x": None,
            },
        )
        audit.append(
            change,
            "override",
            subject={"checkpoint": "main@1000"},
            outcome="promoted",
            reason="judge misfires; see #12 \u2014 \u00fcn\u00efcode",
            refs={"decision": "audit/decisions/main@1000.abc.json"},
        )
    with ws.change("empty reason") as change:
        audit.append(
            change, "redesign", subject={"environment": "math"}, outcome="v2", reason="", refs={}
        )


def test_entries_are_written_byte_for_byte_as_before(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance import audit

    monkeypatch.setattr(audit, "utc_now", lambda: datetime(2026, 11, 2, 9, 30, tzinfo=UTC))
    ws = open_registry(workspace, actor="alice <alice@example.com>").ws
    assert not audit.trail_path(ws).exists()
    _append_the_three(ws)
    assert audit.trail_path(ws).read_text().splitlines() == WRITTEN_BEFORE
    assert audit.verify(ws).entries == 3


def test_a_trail_written_before_still_verifies_and_reads(workspace: Path) -> None:
    from governance import audit

    ws = open_registry(workspace).ws
    path = audit.trail_path(ws)
    path.write_text("\n".join(WRITTEN_BEFORE) + "\n")
    repo = git.Repo(workspace)
    repo.index.add([str(path)])
    repo.index.commit("a trail from an earlier gov")
    checked = audit.verify(ws)
    assert (checked.entries, checked.head) == (3, json.loads(WRITTEN_BEFORE[-1])["id"])
    entries = audit.log(ws)
    assert [e.line().decode().rstrip("\n") for e in entries] == WRITTEN_BEFORE
    assert (
        entries[0].inputs["x"] is None
        and entries[1].reason == "judge misfires; see #12 \u2014 \u00fcn\u00efcode"
    )


def test_lines_read_from_the_end_are_the_lines_last_first(tmp_path: Path) -> None:
    from governance.storage import iter_jsonl_lines, iter_jsonl_lines_reversed

    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a":1}\n\n  \n{"b":22}\n{"c":333}')
    assert [n for n, _ in iter_jsonl_lines(path)] == [1, 4, 5]
    for block in (1, 2, 3, 5, 8, 64):
        found = list(iter_jsonl_lines_reversed(path, block))
        assert found == [b'{"c":333}', b'{"b":22}', b'{"a":1}'], block
