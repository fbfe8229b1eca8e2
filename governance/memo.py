"""Posteriors computed by earlier gov processes, kept in the workspace's local state
(.gov/index/posteriors/, never committed) by a key that names their inputs whole (the counts
and the prior): a cache of a pure function, so it can only save time, never change an answer.
A check computes the newest checkpoint's posteriors and finds the earlier ones, which a policy
that must hold for several checkpoints asks for again, where the previous check left them."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from .storage import atomic_write, seal, unseal
from .workspace import Workspace

KEEP = 4096  # posteriors kept; the oldest go first


class DiskMemo:
    def __init__(self, folder: Path, keep: int = KEEP) -> None:
        self.folder = folder
        self.keep = keep

    def _path(self, key: str) -> Path:
        return self.folder / key[-2:] / f"{key}.json"

    def get(self, key: str) -> bytes | None:
        """The value kept under `key`, if its file is whole and its own (else None: computed
        again). Each file begins with a digest of its key and value: a file damaged or edited in
        place, or copied under another key's name, is never read as an answer."""
        try:
            found = self._path(key).read_bytes()
        except OSError:
            return None
        return unseal(found, key.encode())

    def put(self, key: str, value: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, seal(value, key.encode()))
        if random.random() < 0.02:
            self.prune()

    def prune(self) -> None:
        """Keep the newest `keep` posteriors."""
        files = list(self.folder.glob("*/*.json"))
        if len(files) <= self.keep:
            return
        stamped = []
        for path in files:
            with contextlib.suppress(OSError):
                stamped.append((path.stat().st_mtime_ns, path))
        stamped.sort()
        for _, path in stamped[: len(stamped) - self.keep]:
            with contextlib.suppress(OSError):
                path.unlink()


def install(ws: Workspace) -> None:
    """Let the statistics keep and find posteriors in this workspace's local state."""
    from .stats import evaluate

    evaluate.MEMO = DiskMemo(ws.local("index", "posteriors"))
