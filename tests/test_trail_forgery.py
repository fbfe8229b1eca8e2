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
    assert gov("promote", "main@4000", cwd=example_copy).exit_code == 0
    assert gov("rollback", "recommend", cwd=example_copy).exit_code == 0
    done = gov("audit", "verify", cwd=example_copy)
    assert done.exit_code == 0, done.stderr
