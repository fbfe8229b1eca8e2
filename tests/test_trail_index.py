"""`gov audit show` through the trail's index (.gov/index/): the same entry as reading the whole
trail, whatever state the index is in; the trail stays the only source of truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from governance import api
from governance.trailindex import ID_WIDTH


def _trail(root: Path) -> list[dict[str, Any]]:
    lines = (root / "audit" / "trail.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _shown(root: Path, key: str) -> dict[str, Any]:
    return api.audit_show(root, key).entry.model_dump(mode="json", exclude_none=True)


def _expected(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if v is not None}


def test_show_by_id_and_number_matches_the_trail(example_copy: Path) -> None:
    shutil.rmtree(example_copy / ".gov" / "index", ignore_errors=True)  # as in a fresh clone
    entries = _trail(example_copy)
    for entry in (entries[0], entries[len(entries) // 2], entries[-1]):
        by_id = _shown(example_copy, entry["id"][:12])  # (shorter and all digits: a seq)
        by_seq = _shown(example_copy, str(entry["seq"]))
        assert by_id["id"] == by_seq["id"] == entry["id"]
        assert by_id["kind"] == entry["kind"] and by_id["seq"] == entry["seq"]
    assert (example_copy / ".gov" / "index" / "trail.ids").stat().st_size == ID_WIDTH * len(entries)


def test_entries_appended_later_are_found(example_copy: Path) -> None:
    first = _trail(example_copy)
    _shown(example_copy, "1")  # the index now covers the trail as it was
    api.rollback_recommend(example_copy)  # gov appends an entry
    after = _trail(example_copy)
    assert len(after) == len(first) + 1
    newest = after[-1]
    assert _shown(example_copy, newest["id"][:12])["seq"] == newest["seq"]
    assert _shown(example_copy, str(newest["seq"]))["id"] == newest["id"]


def test_a_forged_or_stale_index_never_gives_a_wrong_entry(example_copy: Path) -> None:
    entries = _trail(example_copy)
    _shown(example_copy, "1")
    index = example_copy / ".gov" / "index"
    ids = bytearray((index / "trail.ids").read_bytes())
    # swap the ids of entries 2 and 3 in the index: each now points at the other's line
    second, third = ids[ID_WIDTH : 2 * ID_WIDTH], ids[2 * ID_WIDTH : 3 * ID_WIDTH]
    ids[ID_WIDTH : 2 * ID_WIDTH], ids[2 * ID_WIDTH : 3 * ID_WIDTH] = third, second
    (index / "trail.ids").write_bytes(bytes(ids))
    assert _shown(example_copy, entries[1]["id"][:12])["seq"] == 2
    assert _shown(example_copy, entries[2]["id"][:12])["seq"] == 3
    # offsets that point nowhere sensible
    (index / "trail.offsets").write_bytes(bytes(8 * len(entries)))
    assert _shown(example_copy, str(entries[-1]["seq"]))["id"] == entries[-1]["id"]
    # a trail restored to an older, shorter state: the index covers more than there is
    trail = example_copy / "audit" / "trail.jsonl"
    text = trail.read_text().splitlines(keepends=True)
    _shown(example_copy, "1")
    trail.write_text("".join(text[:5]))
    assert _shown(example_copy, "5")["id"] == entries[4]["id"]
    with pytest.raises(Exception, match="no audit entry"):
        _shown(example_copy, entries[-1]["id"][:12])


def test_an_ambiguous_prefix_is_refused(example_copy: Path) -> None:
    entries = _trail(example_copy)
    letters = {e["id"][0] for e in entries} & set("abcdef")  # (a number is an entry's seq)
    shared = next(d for d in letters if sum(e["id"][0] == d for e in entries) > 1)
    with pytest.raises(Exception, match="ambiguous"):
        _shown(example_copy, shared)


def test_the_pressure_and_policies_a_check_reads_match_the_whole_trail(
    example_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summaries kept in the index equal what reading every entry gives, before and after
    gov appends to the trail (the index extended, not rebuilt)."""
    from governance import audit, open_registry, trailindex

    ws = open_registry(example_copy).ws
    counted: dict[str, dict[str, int]] = {}
    policies: dict[str, str] = {}
    for entry in _trail(example_copy):
        if entry["kind"] in audit.PRESSURE_KINDS:
            env = entry["subject"]["environment"]
            counts = counted.setdefault(env, dict.fromkeys(audit.PRESSURE_KINDS, 0))
            counts[entry["kind"]] += 1
        if entry["kind"] in ("check", "policy_change"):
            policies = entry["inputs"]["policies"]
    assert counted and any(c["flag_raised"] for c in counted.values())
    audit._index_seen.clear()
    assert audit.pressure(ws) == counted
    index = trailindex.TrailIndex.load(ws.state)
    assert index is not None and index.policies == policies
    assert audit.policy_change(ws, policies) is None
    size = index.size
    flagged = next(env for env, c in counted.items() if c["flag_raised"])
    api.flag_ack(example_copy, flagged, reason="seen, redesign planned")
    api.rollback_recommend(example_copy)
    audit._index_seen.clear()
    extended = audit.pressure(ws)
    reloaded = trailindex.TrailIndex.load(ws.state)
    assert reloaded is not None and reloaded.size > size
    # the slow path (no index to be had) gives the same
    monkeypatch.setattr(trailindex, "current", lambda *_: (_ for _ in ()).throw(ValueError()))
    audit._index_seen.clear()
    assert audit.pressure(ws) == extended


def _grep(root: Path, entry_id: str) -> str | None:
    """The newest commit whose message names the entry, by git's own walk of the history."""
    import git

    found = git.Repo(root).git.log("--format=%H", "-F", f"--grep=Gov-Audit-Entry: {entry_id}", "-1")
    return found.strip() or None


def _commit(root: Path, key: str) -> str | None:
    return api.audit_show(root, key).resolved.get("commit")


def test_the_commit_of_an_entry_is_the_one_git_finds_whatever_the_map_says(
    example_copy: Path,
) -> None:
    import git

    from governance import trailcommits

    shutil.rmtree(example_copy / ".gov" / "index", ignore_errors=True)  # as in a fresh clone
    entries = _trail(example_copy)
    picked = (entries[0], entries[len(entries) // 2], entries[-1])
    index = example_copy / ".gov" / "index"
    for entry in picked:  # no map yet: git searches the history
        assert _commit(example_copy, entry["id"][:12]) == _grep(example_copy, entry["id"])
    assert not (index / "commits.of").exists()
    api.audit_verify(example_copy)  # reads every commit, and keeps the map
    assert (index / "commits.of").stat().st_size == 4 * len(entries)
    for entry in picked:
        assert _commit(example_copy, entry["id"][:12]) == _grep(example_copy, entry["id"])
    # more commits: the map is extended, and names the new entry's commit
    api.rollback_recommend(example_copy)
    newest = _trail(example_copy)[-1]
    assert _commit(example_copy, newest["id"][:12]) == _grep(example_copy, newest["id"])
    repo = git.Repo(example_copy)
    loaded = trailcommits.CommitMap.load(example_copy / ".gov")
    assert loaded is not None and loaded.head == repo.head.commit.hexsha
    assert loaded.commit(len(entries)) == _grep(example_copy, newest["id"])
    # a forged map (every entry pointing at one commit that names none of them) changes nothing
    forged = bytes.fromhex(repo.git.rev_list("--max-parents=0", "HEAD"))
    trailcommits.CommitMap(
        loaded.head, forged, loaded.of.__class__("I", [0] * len(loaded.of))
    ).save(example_copy / ".gov")
    for entry in (*picked, newest):
        assert _commit(example_copy, entry["id"][:12]) == _grep(example_copy, entry["id"])
    # history rewritten under the map (its HEAD no longer an ancestor): git searches again
    api.audit_verify(example_copy)
    repo.git.commit("--amend", "-m", repo.head.commit.message + "\n(amended)")
    assert _commit(example_copy, newest["id"][:12]) == _grep(example_copy, newest["id"])
    assert _commit(example_copy, entries[0]["id"][:12]) == _grep(example_copy, entries[0]["id"])
