"""The governance workspace: where it is, how it is set up, and how a change is whole or absent.

A change runs under the workspace lock. Before it touches a file it notes the file's old content in
a journal (`.gov/journal.json`); when the change is committed to git the journal is removed. If a
process dies in between, the next gov command finds the journal and puts every file back, so the
registry and the git history are always as they were before the change or as they are after it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from . import artifacts, scm
from .errors import NotAWorkspace, WorkspaceBusy
from .models import WorkspaceConfig, utc_now
from .storage import atomic_write, load_yaml_model, model_yaml

if TYPE_CHECKING:
    import git

    from .records import AuditEntry

CONFIG_FILE = "gov.yaml"
STATE_DIR = ".gov"
IGNORE_STATE = b"# gov's local state (lock, journal, caches): never committed\n*\n"
LOCK_TIMEOUT_S = 60.0
_TRAILER = "Gov-Change"

REGISTRY_README = """\
# Registry

Written by `gov`; one git commit per change. Plain files, meant to be read in a pull request.

- `runs/<run>.yaml`: a training run and its lineage (parent run, step it was forked from).
- `checkpoints/<run>.jsonl`: one JSON line per checkpoint of the run, by step: artifact path and
  its DVC content hash, exposure (environment versions and mixture weights), status.
- `environments/<env>.yaml`: an environment, its status and its versions (content hashes).
- `judges/<judge>.yaml`: a judge and its versions (rubric hashes).
"""

AUDIT_README = """\
# Audit trail

The append-only, hash-chained record of gov's decisions, promotions, overrides, flags, redesigns
and rollbacks lives here. Do not edit these files by hand.
"""


MONITOR_README = """\
# Monitor output

Drop the judges' reports here (`*.jsonl`, `*.jsonl.gz`, `*.parquet`): `dvc repro` ingests them
(`gov ingest --dir monitor-output`), re-checks the latest checkpoint, re-places the restore
point and redraws `report.html`. Reports already ingested change nothing.
"""


def bundled(name: str) -> Path:
    """A file or folder shipped with gov (`policies`, `registry`, `dvc.yaml`): inside the package
    once installed, beside it in a source checkout."""
    packaged = Path(str(resources.files("governance"))) / "bundled" / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent / name


# The folders and files gov keeps, relative to the workspace root: never symbolic links.
MANAGED = (
    "registry",
    "registry/checkpoints",
    "registry/counts",
    "registry/runs",
    "registry/environments",
    "registry/judges",
    "registry/flags",
    "registry/reports.jsonl",
    "audit",
    "audit/trail.jsonl",
    "audit/trail",
    "audit/decisions",
    "audit/rollbacks",
    "policies",
    "reports",
    STATE_DIR,
)


@dataclass
class Workspace:
    root: Path
    # the repository, once asked for (not part of what makes two workspaces the same)
    opened: git.Repo | None = field(default=None, repr=False, compare=False)
    actor: str | None = None  # who the audit trail names (default: git's identity)

    @property
    def repo(self) -> git.Repo:
        """The git repository, opened when first asked for: a reader that only reads files (or
        asks git through `scm.output`) does not pay for GitPython."""
        if self.opened is None:
            self.opened = scm.open_repo(self.root)
        return self.opened

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    def check_layout(self) -> None:
        """gov's own folders and files are plain ones inside the workspace: a symbolic link in
        their place would have gov read or write somewhere else (another workspace's trail, a
        file outside the repository). One line naming it, before anything is read."""
        for rel in MANAGED:
            path = self.root / rel
            if path.is_symlink():
                raise NotAWorkspace(
                    f"{rel} is a symbolic link (to {path.readlink()}): gov keeps its records "
                    "in the workspace itself; put the real folder or file back in its place"
                )
        if self.state.exists() and not self.state.is_dir():
            raise NotAWorkspace(
                f"{STATE_DIR} is not a folder: it is gov's local state (its lock and caches, "
                "never committed); remove that file and run again"
            )

    @property
    def policies(self) -> Path:
        return self.root / "policies"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    def local(self, *parts: str) -> Path:
        """A path in the local state (caches, indexes), the folder made with the .gitignore that
        keeps it out of git if it is not there yet: a read in a fresh clone may write a cache,
        and must not leave the work tree with an untracked folder."""
        with contextlib.suppress(OSError):  # a read-only workspace: no cache, same answers
            self._make_state()
        return self.state.joinpath(*parts)

    def _make_state(self) -> None:
        """The local state folder, with the .gitignore that keeps it out of git."""
        ignore = self.state / ".gitignore"
        if not ignore.exists():
            self.state.mkdir(exist_ok=True)
            atomic_write(ignore, IGNORE_STATE)

    def rel(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        from filelock import FileLock, Timeout  # only a writer pays for its import

        self._make_state()
        lock = FileLock(str(self.state / "lock"))
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout as exc:
            raise WorkspaceBusy(
                f"another gov process has held {self.rel(self.state / 'lock')} for "
                f"{LOCK_TIMEOUT_S:.0f} s; retry when it has finished"
            ) from exc
        try:
            self._recover()
            # Scratch files of a writer that died; no other writer can be using them now (an
            # ingest copies its reports into reports/.incoming-* while it holds this lock).
            scratch = self.state / "tmp"
            if scratch.is_dir():
                shutil.rmtree(scratch, ignore_errors=True)
            for partial in (self.root / "reports").glob(".incoming-*"):
                partial.unlink(missing_ok=True)
            yield
        finally:
            lock.release()

    def ensure_consistent(self) -> None:
        """Called by readers: finish undoing a change a killed process left half made, and
        remove the partial copies of reports a killed ingest left (when no writer holds the
        lock: a live ingest's copies are its own)."""
        if (self.state / "journal.json").exists():
            with self.locked():
                pass
        elif any((self.root / "reports").glob(".incoming-*")):
            from filelock import FileLock, Timeout

            lock = FileLock(str(self.state / "lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return  # a writer is at work: the next one to take the lock cleans up
            try:
                for partial in (self.root / "reports").glob(".incoming-*"):
                    partial.unlink(missing_ok=True)
            finally:
                lock.release()

    @contextmanager
    def change(self, summary: str, body: str = "") -> Iterator[Change]:
        """Make one registry change: all its writes and one git commit, or nothing."""
        with self.locked():
            scm.check_identity(self.repo)
            change = Change(self, summary, body)
            try:
                yield change
                change.commit()
            except BaseException:
                change.undo()
                raise

    def _recover(self) -> None:
        journal = self.state / "journal.json"
        if not journal.exists():
            return
        try:
            data = json.loads(journal.read_text())
        except ValueError:
            # A journal is written atomically, so this is a hand-made file: nothing we can undo.
            journal.unlink()
            return
        now = scm.head(self.repo)
        if (
            now is not None
            and now != data["head"]
            and f"{_TRAILER}: {data['id']}" in scm.commit_message(now, self.repo)
        ):
            journal.unlink()  # the commit landed; only the clean-up was missed
            return
        _restore(self, data["files"], data.get("sizes", {}))
        journal.unlink()


def _restore(ws: Workspace, files: dict[str, str | None], sizes: dict[str, int]) -> None:
    paths = [ws.root / rel for rel in files]
    for path, old in zip(paths, files.values(), strict=True):
        if old is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, base64.b64decode(old))
    for rel, size in sizes.items():
        with (ws.root / rel).open("r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())
        paths.append(ws.root / rel)
    scm.unstage(ws.repo, [p for p in paths if _tracked_or_staged(ws.repo, p)])


def _tracked_or_staged(repo: git.Repo, path: Path) -> bool:
    rel = path.resolve().relative_to(scm.work_tree(repo)).as_posix()
    return bool(repo.git.ls_files("--", rel))


@dataclass
class Change:
    """One registry change in progress; see `Workspace.change`."""

    ws: Workspace
    summary: str
    body: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    originals: dict[str, str | None] = field(default_factory=dict)
    touched: list[Path] = field(default_factory=list)
    artifact_paths: list[Path] = field(default_factory=list)
    data_files: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)  # appended files: their size before
    trailers: list[str] = field(default_factory=list)  # extra commit trailers (the audit head)
    audit: list[AuditEntry] = field(default_factory=list)  # entries this change appends
    head: str | None = None
    sha: str | None = None

    def expect(self, paths: Sequence[Path], *, data: bool = False) -> None:
        """Journal the current content (or absence) of `paths` before anything writes them.

        `data`: files DVC tracks (git ignores them): put back on failure, never committed."""
        if data:
            self.data_files.update(self.ws.rel(p) for p in paths)
        if not self.touched:
            self.head = scm.head(self.ws.repo)
        new = False
        for path in paths:
            rel = self.ws.rel(path)
            if rel in self.originals:
                continue
            new = True
            self.originals[rel] = (
                base64.b64encode(path.read_bytes()).decode() if path.is_file() else None
            )
            self.touched.append(path)
        if new:
            self._journal()

    def _journal(self) -> None:
        record = {"id": self.id, "head": self.head, "files": self.originals, "sizes": self.sizes}
        atomic_write(self.ws.state / "journal.json", json.dumps(record).encode())

    def append(self, path: Path, data: bytes) -> None:
        """Append to a file as part of this change; undone by cutting it back to its old size
        (so a large append-only file is never copied into the journal)."""
        rel = self.ws.rel(path)
        if rel not in self.originals and rel not in self.sizes:
            if not self.touched:
                self.head = scm.head(self.ws.repo)
            if path.is_file():
                self.sizes[rel] = path.stat().st_size
            else:
                self.originals[rel] = None
            self.touched.append(path)
            self._journal()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def write(self, path: Path, data: bytes) -> None:
        self.expect([path])
        atomic_write(path, data)

    def track(
        self,
        paths: Sequence[Path],
        link: str | None = None,
        known_md5: dict[Path, str] | None = None,
    ) -> dict[Path, artifacts.TrackedArtifact]:
        """Track artifacts with DVC as part of this change; returns their content hashes."""
        if not paths:
            return {}
        self.expect([p for a in paths for p in artifacts.touched_by_add(a)])
        self.artifact_paths.extend(paths)
        return artifacts.add(self.ws.root, paths, link, known_md5)

    def commit(self) -> str | None:
        if not self.touched:
            return None
        if self.artifact_paths and artifacts.default_remote(self.ws.root):
            artifacts.push(self.ws.root, self.artifact_paths)
        trailers = "\n".join([f"{_TRAILER}: {self.id}", *self.trailers])
        message = f"gov: {self.summary}\n\n{self.body}\n\n{trailers}\n".replace("\n\n\n\n", "\n\n")
        self.sha = scm.commit_paths(
            self.ws.repo,
            [
                p
                for p in self.touched
                if self.ws.rel(p) not in self.data_files
                and (p.exists() or _tracked_or_staged(self.ws.repo, p))
            ],
            message,
        )
        (self.ws.state / "journal.json").unlink(missing_ok=True)
        return self.sha

    def undo(self) -> None:
        if self.originals or self.sizes:
            _restore(self.ws, self.originals, self.sizes)
        (self.ws.state / "journal.json").unlink(missing_ok=True)


def find(start: Path | None = None) -> Workspace:
    """The workspace at `start` or its nearest parent holding gov.yaml (like git finds .git)."""
    origin = (start or Path.cwd()).resolve()
    if start is not None and not origin.is_dir():
        raise NotAWorkspace(f"{start}: no such folder", remedy="workspace_folder")
    for folder in (origin, *origin.parents):
        if (folder / CONFIG_FILE).is_file():
            load_yaml_model(folder / CONFIG_FILE, WorkspaceConfig, CONFIG_FILE)
            scm.check_inside(folder)
            ws = Workspace(folder)
            ws.check_layout()
            ws.ensure_consistent()
            return ws
    raise NotAWorkspace(
        f"no gov workspace in {origin} or any folder above it: run `gov init` in your "
        "training repository",
        remedy="workspace",
    )


@dataclass(frozen=True)
class InitResult:
    root: Path
    created: list[str]
    commit: str | None


def init(folder: Path) -> InitResult:
    """Make `folder` (inside a git work tree) a workspace. Idempotent: only adds what is missing."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise NotAWorkspace(f"{folder}: no such folder")
    repo = scm.open_repo(folder)
    git_root = scm.work_tree(repo)
    ws = Workspace(folder, repo)
    wanted: dict[Path, bytes] = {
        folder / CONFIG_FILE: model_yaml(WorkspaceConfig(created=utc_now())),
        ws.registry / "README.md": REGISTRY_README.encode(),
        ws.audit / "README.md": AUDIT_README.encode(),
        folder / "monitor-output" / "README.md": MONITOR_README.encode(),
    }
    if artifacts.find_dvc_root(folder) in (None, folder):
        # A pipeline file belongs at the DVC root; in a monorepo whose DVC root is higher up,
        # the user's pipeline there stays theirs.
        wanted[folder / "dvc.yaml"] = bundled("dvc.yaml").read_bytes()
    source = bundled("policies")
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            wanted[ws.policies / path.relative_to(source)] = path.read_bytes()
    missing = {path: data for path, data in wanted.items() if not path.exists()}
    needs_dvc = artifacts.find_dvc_root(folder) is None
    if not missing and not needs_dvc:
        return InitResult(folder, [], None)
    with ws.change("initialise governance workspace") as change:
        for path, data in missing.items():
            change.write(path, data)
        if needs_dvc:
            change.expect([folder / name for name in artifacts.DVC_INIT_FILES])
            artifacts.init_dvc(folder, git_root)
    created = [ws.rel(p) for p in change.touched if p.exists()]
    return InitResult(folder, created, change.sha)
