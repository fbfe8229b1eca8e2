"""Registry records parsed by earlier gov processes, kept in the workspace's local state
(.gov/index/records.pickle, never committed) by file and content hash: a check reads 300
environment files, and parsing their YAML costs far more than reading and hashing them. A record
is used only while its file's bytes are the ones it was parsed from, and by the same models
(their source's hash is part of the key), so the cache can only save time, never change an
answer: the files stay the one source of truth."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import pickle
from pathlib import Path
from typing import Any

from . import models
from .storage import atomic_write, seal, unseal
from .workspace import Workspace

FILE = "records.pickle"


def _models_fingerprint() -> str:
    return hashlib.sha256(Path(models.__file__).read_bytes()).hexdigest()


class KeptRecords:
    """Parsed records by workspace-relative path: (sha256 of the file's bytes, record)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fingerprint = _models_fingerprint()
        self.records: dict[str, tuple[str, Any]] = {}
        self.dirty = False
        with contextlib.suppress(Exception):  # absent, unreadable or stale: start empty
            sealed = unseal(path.read_bytes())  # a damaged or edited file: never unpickled
            kept = pickle.loads(sealed) if sealed is not None else {}
            if kept["models"] == self.fingerprint:
                self.records = dict(kept["records"])

    def get(self, rel: str, digest: str, model: type) -> Any | None:
        found = self.records.get(rel)
        if found is None or found[0] != digest or not isinstance(found[1], model):
            return None
        return found[1]

    def put(self, rel: str, digest: str, record: Any) -> None:
        """Keep a parsed record; written by `save`, or when the process ends."""
        self.records[rel] = (digest, record)
        if not self.dirty:
            self.dirty = True
            atexit.register(self.save)

    def save(self) -> None:
        """Write the cache if it changed (a folder that cannot be written costs only speed)."""
        if not self.dirty:
            return
        self.dirty = False
        atexit.unregister(self.save)
        if not self.path.parent.parent.is_dir():
            return  # the workspace's local state is gone (the workspace deleted): not remade
        data = pickle.dumps({"models": self.fingerprint, "records": self.records}, protocol=5)
        with contextlib.suppress(OSError):
            atomic_write(self.path, seal(data))


_OPEN: dict[Path, KeptRecords] = {}


def kept_records(ws: Workspace) -> KeptRecords:
    """The workspace's kept records, read once per process."""
    path = ws.local("index", FILE)
    if path not in _OPEN:
        _OPEN[path] = KeptRecords(path)
    return _OPEN[path]
