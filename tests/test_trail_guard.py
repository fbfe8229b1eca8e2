"""Nothing is written on top of an audit trail that fails verification."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest


def _edit(ws: Path, seq: int) -> None:
    """Change one entry's outcome by hand, keeping the line otherwise as it was."""
    path = ws / "audit" / "trail.jsonl"
    lines = path.read_text().splitlines()
    entry = json.loads(lines[seq - 1])
    entry["outcome"] = "pass" if entry["outcome"] != "pass" else "block"
    lines[seq - 1] = json.dumps(entry, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("verified_before", [False, True])
@pytest.mark.parametrize(
    "command",
    [
        ("check", "main@4000"),
        ("promote", "main@4000", "--override", "--reason", "testing the guard"),
        ("rollback", "recommend"),
    ],
)
def test_a_broken_trail_refuses_every_write(
    gov, example_copy: Path, command: tuple[str, ...], verified_before: bool
) -> None:
    if verified_before:  # a write verified the trail once: the next one checks from there on
        assert gov("check", "main@1000", cwd=example_copy).exit_code in (0, 1)
    repo = git.Repo(example_copy)
    head = repo.head.commit.hexsha
    _edit(example_copy, 3)
    before = (example_copy / "audit" / "trail.jsonl").read_bytes()
    refused = gov(*command, cwd=example_copy)
    assert refused.exit_code == 2, refused.stdout
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in refused.stderr
    assert "refusing to write" in message and "entry 3" in message
    assert repo.head.commit.hexsha == head  # nothing committed
    assert (example_copy / "audit" / "trail.jsonl").read_bytes() == before  # nothing appended


def test_a_trail_verified_once_is_checked_from_there_on(gov, example_copy: Path) -> None:
    # An entry appended by hand after a verified write is caught by the cheap path too.
    assert gov("check", "main@1000", cwd=example_copy).exit_code in (0, 1)
    path = example_copy / "audit" / "trail.jsonl"
    last = json.loads(path.read_text().splitlines()[-1])
    forged = {**last, "seq": last["seq"] + 1, "prev": "0" * 64, "outcome": "pass"}
    path.write_text(path.read_text() + json.dumps(forged) + "\n")
    refused = gov("check", "main@2000", cwd=example_copy)
    assert refused.exit_code == 2
    assert f"entry {last['seq'] + 1} does not follow entry {last['seq']}" in refused.stderr
