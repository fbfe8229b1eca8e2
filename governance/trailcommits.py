"""Which commit carries each audit entry: derived local state, so that `gov audit show` finds an
early entry's commit without walking the whole history (`git log --grep` reads every commit
back to it: the history of a long run holds tens of thousands).

The commits (their messages' Gov-Audit-Entry trailers) stay the only source of truth. The map
lives in the workspace's local state (.gov/index/, never committed): for each entry of the
trail, in trail order, the newest commit that names it (as `git log --grep` finds it), and the
HEAD it was read at. `gov audit verify`, which reads the whole history anyway, makes it; history
only grows, so it is extended by the commits made since that HEAD while it is an ancestor of the
current one (anything else leaves the search to git until the next verify). Every hit is
checked against the commit's own message by the caller, which falls back to the walk on a
mismatch: a stale map can cost time, never give a wrong commit.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from pathlib import Path

from .storage import read_index, write_index

NONE = 0xFFFFFFFF  # no commit names the entry (yet)


def _files(state: Path) -> tuple[Path, Path, Path]:
    folder = state / "index"
    return folder / "commits.shas", folder / "commits.of", folder / "commits.json"


class CommitMap:
    """Per entry position, an index into `shas` (20 bytes each) or NONE; read at `head`."""

    def __init__(self, head: str, shas: bytes, of: array[int]) -> None:
        self.head = head
        self.shas = shas
        self.of = of

    def commit(self, position: int) -> str | None:
        if not 0 <= position < len(self.of) or self.of[position] == NONE:
            return None
        at = self.of[position] * 20
        return self.shas[at : at + 20].hex()

    @classmethod
    def load(cls, state: Path) -> CommitMap | None:
        found = read_index(_files(state), "I")
        if found is None:
            return None
        shas, of, meta = found
        try:
            head, count = str(meta["head"]), int(meta["count"])
        except (ValueError, KeyError, TypeError):
            return None
        if len(of) != count or len(shas) % 20:
            return None
        return cls(head, shas, of)

    def save(self, state: Path) -> None:
        """Write the map (local state: a folder that cannot be written costs only speed)."""
        write_index(_files(state), self.shas, self.of, {"head": self.head, "count": len(self.of)})


def build(head: str, carried: Sequence[str | None]) -> CommitMap:
    """The map at `head` from each entry's commit, in trail order (None: no commit names it)."""
    numbers: dict[str, int] = {}
    shas = bytearray()
    of = array("I", [NONE] * len(carried))
    for position, commit in enumerate(carried):
        if commit is None:
            continue
        number = numbers.get(commit)
        if number is None:
            number = numbers[commit] = len(numbers)
            shas += bytes.fromhex(commit)
        of[position] = number
    return CommitMap(head, bytes(shas), of)


# The commits made after a base commit that name entries, newest first: (sha, the entry ids)
Log = Callable[[str], Sequence[tuple[str, Sequence[str]]]]


def current(
    state: Path,
    head: str,
    positions: Callable[[str], int | None],
    entries: int,
    log: Log,
    is_ancestor: Callable[[str], bool],
) -> CommitMap | None:
    """The map at `head` for a trail of `entries` entries (`positions`: an entry id's place in
    the trail, None if it is not there): as kept, or extended by the commits made since it was
    read. None where there is none, or history was rewritten under it: the caller then
    searches the history itself (`gov audit verify`, which reads all of it, makes the map)."""
    found = CommitMap.load(state)
    if found is None:
        return None
    if found.head == head and len(found.of) == entries:
        return found
    if not is_ancestor(found.head):
        return None
    shas = bytearray(found.shas)
    of = array("I", found.of)
    of.extend([NONE] * max(0, entries - len(of)))
    del of[entries:]
    # Oldest first, so that the newest commit naming an entry is the one kept.
    for commit, ids in reversed(log(found.head)):
        number = len(shas) // 20
        shas += bytes.fromhex(commit)  # once per commit, however many entries it names
        for entry_id in ids:
            position = positions(entry_id)
            if position is not None and position < entries:
                of[position] = number
    extended = CommitMap(head, bytes(shas), of)
    extended.save(state)
    return extended
