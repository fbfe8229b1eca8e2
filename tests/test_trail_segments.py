"""A long trail in sealed segments: every SEGMENT entries the active file's entries move,
unchanged, to audit/trail/<first seq>.jsonl. The chain, verification, lookups and the guard work
across them; a commit stores only what changed."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from governance import api, audit


def _recommend_many(root: Path, times: int, start: int = 0) -> None:
    """Append entries through gov (each a recommendation recorded anew: the alpha differs)."""
    for i in range(start, start + times):
        api.rollback_recommend(root, alpha=0.01 + i / 1000)


def _all_lines(root: Path) -> list[dict]:
    files = [*sorted((root / "audit" / "trail").glob("*.jsonl")), root / "audit" / "trail.jsonl"]
    return [json.loads(line) for p in files for line in p.read_text().splitlines() if line]


@pytest.fixture
def segmented(example_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(audit, "SEGMENT", 8)
    before = len(_all_lines(example_copy))
    _recommend_many(example_copy, 20)
    assert len(_all_lines(example_copy)) > before
    return example_copy


def test_entries_move_to_sealed_segments_and_read_as_one_trail(segmented: Path) -> None:
    sealed = sorted((segmented / "audit" / "trail").glob("*.jsonl"))
    assert len(sealed) >= 2
    entries = _all_lines(segmented)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    for path in sealed:  # each named by its first entry; the later ones hold SEGMENT entries
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        assert int(path.stem) == lines[0]["seq"]
    assert [int(p.stem) for p in sealed] == sorted(int(p.stem) for p in sealed)
    assert all(len(p.read_text().splitlines()) == 8 for p in sealed[1:])
    active = (segmented / "audit" / "trail.jsonl").read_text().splitlines()
    assert 0 < len(active) <= 8
    done = api.audit_verify(segmented)
    assert done.entries == len(entries)
    assert [e.seq for e in api.audit_log(segmented)] == [e["seq"] for e in entries]
    for entry in (entries[0], entries[len(entries) // 2], entries[-1]):
        assert api.audit_show(segmented, entry["id"][:12]).entry.seq == entry["seq"]


def test_a_commit_stores_only_the_active_file_between_seals(segmented: Path) -> None:
    repo = git.Repo(segmented)
    _recommend_many(segmented, 1, start=20)
    changed = set(repo.head.commit.stats.files)
    active = len((segmented / "audit" / "trail.jsonl").read_text().splitlines())
    if active > 1:  # not the append that sealed
        assert not any(f.startswith("audit/trail/") for f in changed), changed
    assert "audit/trail.jsonl" in changed


def test_an_edited_sealed_segment_is_named_and_refused(
    segmented: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = sorted((segmented / "audit" / "trail").glob("*.jsonl"))[1]
    lines = sealed.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["outcome"] = "none (edited)"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    sealed.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match=rf"audit/trail/{sealed.name}:3: entry \d+ was edited"):
        api.audit_verify(segmented)
    with pytest.raises(Exception, match="refusing to write"):
        _recommend_many(segmented, 1, start=20)


def test_a_deleted_sealed_segment_breaks_the_chain(segmented: Path) -> None:
    sealed = sorted((segmented / "audit" / "trail").glob("*.jsonl"))
    sealed[0].unlink()
    with pytest.raises(Exception, match="out of place"):
        api.audit_verify(segmented)


def test_appends_read_only_the_active_file_and_a_seal_keeps_what_was_verified(
    segmented: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard before an append reads the sealed segments only when they changed (after a
    seal): an append costs the same at any length of trail, and none verifies it in full again.
    (An edited segment is refused: test_an_edited_sealed_segment_is_named_and_refused.)"""
    folder = segmented / "audit" / "trail"
    read_whole: list[int] = []
    contents = audit._contents

    def counted(ws):  # the guard's read of every file of the trail
        read_whole.append(1)
        return contents(ws)

    def never(ws):
        raise AssertionError("the trail was verified in full before an append")

    monkeypatch.setattr(audit, "_contents", counted)
    monkeypatch.setattr(audit, "verify", never)
    segments = [{p.name for p in folder.glob("*.jsonl")}]
    for i in range(12):  # SEGMENT is 8: at least one seal
        read_whole.clear()
        _recommend_many(segmented, 1, start=30 + i)
        segments.append({p.name for p in folder.glob("*.jsonl")})
        if segments[-3:-1] == [segments[-2], segments[-2]]:  # no seal since the last append
            assert not read_whole, f"append {i} read the sealed segments"
    assert len(segments[-1]) > len(segments[0])
