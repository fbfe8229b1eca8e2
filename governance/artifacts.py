"""DVC at the edge: initialise it, track checkpoint artifacts with its Python API, push them.

DVC is imported lazily: most gov commands never touch an artifact and should not pay its import.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import ArtifactError

if TYPE_CHECKING:
    from dvc.repo import Repo

DVC_INIT_FILES = (".dvc/config", ".dvc/.gitignore", ".dvcignore")


@dataclass(frozen=True)
class TrackedArtifact:
    path: Path
    md5: str
    size: int | None


def _quiet() -> None:
    # Importing dvc sets its loggers to INFO, which prints hints meant for its own CLI ("To track
    # the changes with git, run ..."); gov reports what happened itself and keeps DVC's errors.
    import dvc  # noqa: F401

    for name in ("dvc", "dvc_objects", "dvc_data"):
        logging.getLogger(name).setLevel(logging.ERROR)


# What tracking an artifact imports of DVC (about a second of module loading on a busy disk).
_WARM = (
    "dvc.repo",
    "dvc.utils",
    "dvc.exceptions",
    "dvc.stage",
    "dvc.output",
    "dvc.scm",
    "dvc.cachemgr",
    "dvc.lock",
    "dvc.data_cloud",
    "scmrepo.git",
    "dulwich.repo",
)


def warm() -> threading.Thread:
    """Import DVC in a background thread, for a caller that will track an artifact after a long
    piece of work that leaves the interpreter free (a DuckDB scan): the import then costs
    nothing on the critical path. Join the thread before returning from the caller."""

    def load() -> None:
        try:
            _quiet()
            for name in _WARM:
                importlib.import_module(name)
        except Exception:  # the caller's own import raises it where it matters
            return

    thread = threading.Thread(target=load, name="gov-warm-dvc", daemon=True)
    thread.start()
    return thread


def find_dvc_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".dvc" / "config").is_file():
            return folder
    return None


def init_dvc(workspace: Path, git_root: Path) -> list[Path]:
    """Initialise DVC at the workspace unless a DVC repo already covers it; return files made."""
    if find_dvc_root(workspace) is not None:
        return []
    _quiet()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        # force: a `.dvc` folder without its config is the remains of an init that was undone.
        Repo.init(str(workspace), subdir=workspace != git_root, force=(workspace / ".dvc").exists())
    except DvcException as exc:
        raise ArtifactError(f"could not initialise DVC in {workspace}: {exc}") from exc
    return [workspace / name for name in DVC_INIT_FILES if (workspace / name).exists()]


def open_dvc(workspace: Path, link: str | None = None) -> Repo:
    """DVC's repository; `link` overrides the cache link type for this use only (say, hardlinks
    for immutable report files, so that a large report is not copied a second time)."""
    _quiet()
    from dvc.repo import Repo

    config = {"cache": {"type": f"{link},copy"}} if link else None
    repo = Repo(str(workspace), config=config)
    _mend_rwlock(repo)
    return repo


def _mend_rwlock(repo: Repo) -> None:
    """Remove DVC's read-write lock file where a process killed while writing it left it torn.

    DVC rewrites `.dvc/tmp/rwlock` (JSON: which process reads or writes which path) on every
    stage operation, in place. A `gov watch` or `gov ingest` killed at that moment left it
    half-written, and every DVC operation after it failed ("Unable to read RWLock-file ...
    JSON structure is corrupted") until a person deleted it. DVC reads and writes the file only
    while holding its guard (`rwlock.lock`); under that guard a torn file is no live process's
    doing, and holds nothing a process could still rely on (DVC itself cannot read it), so it
    is removed. A file that reads is left alone: DVC clears the entries of dead processes."""
    from dvc.lock import make_lock
    from dvc.rwlock import RWLOCK_FILE, RWLOCK_LOCK

    tmp = repo.tmp_dir
    if not tmp:
        return
    path = Path(tmp) / RWLOCK_FILE
    if _reads(path):
        return
    guard = make_lock(
        str(Path(tmp) / RWLOCK_LOCK),
        tmp_dir=tmp,
        hardlink_lock=repo.config["core"].get("hardlink_lock", False),
    )
    with guard:
        if not _reads(path):
            path.unlink()


def _reads(path: Path) -> bool:
    """Whether a DVC lock file is absent or holds whole JSON."""
    try:
        json.loads(path.read_bytes())
    except FileNotFoundError:
        return True
    except ValueError:
        return False
    return True


def links_reports(workspace: Path) -> bool:
    """Whether DVC's configured link types (`cache.type`, at any of its config levels) allow a
    hard link: a report is then linked into the workspace, not copied, as `dvc add` moves a
    file into its cache and links it back. One inode, so DVC's protection of its cache (read-only)
    applies to the report where the user wrote it, as it does to a hard-linked workspace file."""
    root = find_dvc_root(workspace)
    if root is None:
        return False
    _quiet()
    from dvc.config import Config, ConfigError

    try:
        types = Config(dvc_dir=str(root / ".dvc"))["cache"].get("type") or []
    except ConfigError as exc:
        detail = " ".join(str(exc).split())
        raise ArtifactError(f"{root / '.dvc'}: DVC's configuration: {detail}") from exc
    return "hardlink" in types


def dvc_file(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".dvc")


def touched_by_add(artifact: Path) -> list[Path]:
    """The files `dvc add` may write for an artifact: its .dvc file and the folder's .gitignore."""
    return [dvc_file(artifact), artifact.parent / ".gitignore"]


def read_dvc_file(path: Path) -> TrackedArtifact:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = data["outs"][0]
    return TrackedArtifact(path=path, md5=str(out["md5"]), size=out.get("size"))


def add(
    workspace: Path,
    artifacts: Sequence[Path],
    link: str | None = None,
    known_md5: dict[Path, str] | None = None,
) -> dict[Path, TrackedArtifact]:
    """Track `artifacts` with DVC (one call for all) and return their recorded content hashes.

    `known_md5`: hashes gov already computed while copying the files in, handed to DVC's own
    hash cache so that it does not read a multi-gigabyte report a second time."""
    from dvc.exceptions import DvcException
    from dvc.repo import lock_repo
    from dvc.utils import resolve_paths

    repo = open_dvc(workspace, link)
    if known_md5:
        _seed_hashes(repo, known_md5)
    try:
        again = [a for a in artifacts if dvc_file(a).exists()]  # tracked before: DVC's own add
        if again:
            repo.add([str(a) for a in again])
        fresh = [a for a in artifacts if a not in again]
        for artifact in fresh:
            _refuse_overlap(workspace, artifact)
        # DVC's own `add` first builds the index of every .dvc file in the repository (to find
        # an output the new one would overlap or duplicate): about 4 ms of YAML parsing each,
        # a checkpoint's and a report's, so 15 s a registration at 2,000 checkpoints. The new
        # file's stage is made, hashed, cached and written by the same DVC calls that `add`
        # makes after that; _refuse_overlap checks the places an overlapping output can be
        # declared instead. A file tracked before (its .dvc file there) goes through DVC's add.
        _git_answers(repo)
        with lock_repo(repo), repo.scm_context(quiet=True):
            for artifact in fresh:
                path, wdir, out = resolve_paths(repo, str(artifact))
                stage = repo.stage.create(
                    single_stage=True, validate=False, fname=path, wdir=wdir, outs=[out]
                )
                stage.add_outs(None, no_commit=False, relink=True)
                stage.dump()
    except (DvcException, OSError) as exc:
        detail = " ".join(str(exc).split())
        raise ArtifactError(f"DVC could not track the artifact: {detail}") from exc
    finally:
        repo.close()
    return {a: read_dvc_file(dvc_file(a)) for a in artifacts}


def _git_answers(repo: Repo) -> None:
    """Let git itself answer DVC's questions about git for this repository object: "is this
    path git-ignored?" and "does git track this path?". DVC asks its dulwich backend, which
    matches the path against every pattern of the folder's .gitignore in Python (DVC writes one
    pattern per artifact there, so each question cost 60 ms at 2,000 checkpoints, and a
    registration asks several), and reads the whole git index in Python to find one path
    (0.1 s at 2,000 checkpoints). `git check-ignore` and `git ls-files` answer the same
    questions by git's own rules in a few milliseconds."""
    import subprocess

    scm = getattr(repo, "scm", None)
    root = getattr(scm, "root_dir", None)
    if scm is None or root is None:
        return

    def is_ignored(path: str | os.PathLike[str]) -> bool:
        done = subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", "--", os.fspath(path)],
            cwd=root,
            capture_output=True,
            check=False,
        )
        if done.returncode not in (0, 1):  # git could not answer: DVC's own way
            return bool(type(scm).is_ignored(scm, path))
        return done.returncode == 0

    def is_tracked(path: str) -> bool:
        # the path itself, or anything under it, in git's index (as DVC's backend answers)
        done = subprocess.run(
            ["git", "ls-files", "--", os.fspath(path)], cwd=root, capture_output=True, check=False
        )
        if done.returncode != 0:  # git could not answer: DVC's own way
            return bool(type(scm).is_tracked(scm, path))
        return bool(done.stdout.strip())

    scm.is_ignored = is_ignored
    scm.is_tracked = is_tracked


def _refuse_overlap(workspace: Path, artifact: Path) -> None:
    """Refuse an artifact inside a folder DVC tracks, or that a pipeline declares as an output,
    as DVC's own `add` would: a .dvc file of any folder above it, and the outputs of a dvc.yaml
    in any of those folders (where such outputs are declared in a DVC project)."""
    artifact = artifact.absolute()
    top = workspace.absolute()
    for folder in artifact.parents:
        if dvc_file(folder).is_file():
            raise ArtifactError(
                f"{artifact} lies inside {folder}, which DVC already tracks ({dvc_file(folder)})"
            )
        pipeline = folder / "dvc.yaml"
        if pipeline.is_file():
            for out in _pipeline_outs(pipeline):
                if out == artifact or out in artifact.parents:
                    raise ArtifactError(
                        f"{artifact} is an output of a stage of {pipeline} ({out}): "
                        "DVC tracks it there"
                    )
        if folder == top or (folder / ".dvc").is_dir() or folder.parent == folder:
            break


def _pipeline_outs(pipeline: Path) -> list[Path]:
    """The outputs a dvc.yaml declares, as absolute paths."""
    try:
        data: Any = yaml.safe_load(pipeline.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ArtifactError(f"{pipeline}: not readable YAML: {exc}") from exc
    found = []
    for stage in (data.get("stages") or {}).values():
        if not isinstance(stage, dict):
            continue
        wdir = pipeline.parent / str(stage.get("wdir", "."))
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind) or []:
                name = next(iter(out)) if isinstance(out, dict) else out
                if isinstance(name, str):
                    found.append(Path(os.path.normpath(wdir / name)))
    return found


def _config(workspace: Path) -> Any | None:
    """DVC's configuration of the repository (every level: system, global, repository, local),
    read by DVC's own Config without opening the repository (a tenth of the time); None where
    it cannot be read (the caller then opens the repository, which says why)."""
    root = find_dvc_root(workspace)
    if root is None:
        return None
    _quiet()
    from dvc.config import Config

    try:
        return Config(dvc_dir=str(root / ".dvc"))
    except Exception:  # a config DVC refuses: opening the repository reports it
        return None


def default_remote(workspace: Path) -> str | None:
    config = _config(workspace)
    if config is not None:
        return _remote_of(config)
    repo = open_dvc(workspace)
    try:
        return default_remote_name(repo)
    finally:
        repo.close()


def set_default_remote(workspace: Path, url: str, name: str = "storage") -> Path:
    """Point DVC's default remote at `url`; returns the config file it wrote."""
    repo = open_dvc(workspace)
    try:
        with repo.config.edit() as conf:
            conf["remote"][name] = {"url": url}
            conf["core"]["remote"] = name
        return Path(repo.dvc_dir) / "config"
    finally:
        repo.close()


def push(workspace: Path, artifacts: Sequence[Path]) -> int:
    """Push `artifacts` to the default remote; returns how many files were sent."""
    from dvc.exceptions import DvcException

    repo = open_dvc(workspace)
    try:
        return int(repo.push(targets=[str(dvc_file(a)) for a in artifacts]))
    except (DvcException, OSError) as exc:  # a local remote fails with the OS's own errors
        detail = " ".join(str(exc).split())
        raise ArtifactError(f"DVC could not push the artifact to its remote: {detail}") from exc
    finally:
        repo.close()


def _seed_hashes(repo: Repo, known: dict[Path, str]) -> None:
    try:
        from dvc_data.hashfile.hash_info import HashInfo

        for path, md5 in known.items():
            repo.state.save(str(path), repo.fs, HashInfo("md5", md5))
    except Exception:  # an internal API: without it DVC only hashes the file again
        logging.getLogger(__name__).debug("could not seed DVC's hash cache", exc_info=True)


def locate(workspace: Path, md5: str) -> str | None:
    """Where an artifact's content can be had: "cache", "remote", or None (gone)."""
    if _in_default_cache(workspace, md5):
        return "cache"  # found where DVC keeps it, without loading DVC (half a second)
    repo = open_dvc(workspace)
    try:
        if repo.cache.local.exists(md5):
            return "cache"
        if default_remote_name(repo):
            try:
                if repo.cloud.get_remote_odb(command="fetch").exists(md5):
                    return "remote"
            except Exception:  # an unreachable remote: the artifact cannot be had from it
                return None
        return None
    finally:
        repo.close()


def _in_default_cache(workspace: Path, md5: str) -> bool:
    """The artifact's content is in DVC's cache at its default place (.dvc/cache/files/md5/,
    DVC 3's layout) and DVC's configuration does not move the cache. False only means "ask
    DVC"."""
    root = find_dvc_root(workspace)
    if root is None or not md5 or md5.endswith(".dir") or len(md5) != 32:
        return False
    config = _config(workspace)
    if config is None or config["cache"].get("dir"):
        return False
    path = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    return path.is_file()


def default_remote_name(repo: Repo) -> str | None:
    return _remote_of(repo.config)


def _remote_of(config: Any) -> str | None:
    name = config["core"].get("remote")
    return str(name) if name else None


def checkout(workspace: Path, artifact: str, md5: str, target: Path) -> None:
    """Copy an artifact's content (fetched from the remote if need be) to `target`: a file, or
    for a directory artifact (a framework's checkpoint folder) a folder, made whole in a
    temporary sibling and renamed into place."""
    from dvc.exceptions import DvcException

    repo = open_dvc(workspace)
    try:
        cache = repo.cache.local
        files = _cached_files(cache, md5) if cache.exists(md5) else None
        if files is None or not all(cache.exists(oid) for _, oid in files):
            try:
                repo.fetch(targets=[str(dvc_file(workspace / artifact))])
            except DvcException as exc:
                raise ArtifactError(f"DVC could not fetch {artifact}: {exc}") from exc
            files = _cached_files(cache, md5)
        tmp = target.with_name(f".{target.name}.tmp")
        _remove(tmp)
        try:
            if md5.endswith(".dir"):
                tmp.mkdir()
                for relpath, oid in files:
                    dest = tmp / relpath
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    _copy_checked(Path(cache.oid_to_path(oid)), dest, oid, artifact)
            else:
                _copy_checked(Path(cache.oid_to_path(md5)), tmp, md5, artifact)
            tmp.replace(target)
        except BaseException:
            _remove(tmp)
            raise
    finally:
        repo.close()


def _copy_checked(source: Path, dest: Path, md5: str, artifact: str) -> None:
    """Copy a file of the cache, hashing what is copied: a cache file damaged since DVC wrote it
    is refused rather than restored as the checkpoint (it was read once, so this costs no
    second pass over a checkpoint of many gigabytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with source.open("rb") as src, dest.open("wb") as out:
        while chunk := src.read(16 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != md5:
        raise ArtifactError(
            f"{artifact}: DVC's cached copy {source} is damaged (md5 {digest.hexdigest()}, "
            f"not {md5}): nothing restored; delete that file and run this again, which fetches "
            "it from the DVC remote"
        )


def _cached_files(cache: Any, md5: str) -> list[tuple[str, str]]:
    """(path inside the artifact, content hash) of each file an artifact holds: one for a file,
    a directory's from its manifest in the cache (DVC's `.dir` object, a JSON list)."""
    if not md5.endswith(".dir"):
        return [("", md5)]
    import json

    path = Path(cache.oid_to_path(md5))
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        found = [(str(e["relpath"]), str(e["md5"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"DVC's manifest of {md5} cannot be read: {exc}") from None
    for relpath, _ in found:
        if Path(relpath).is_absolute() or ".." in Path(relpath).parts:
            raise ArtifactError(f"DVC's manifest of {md5} names a path outside it: {relpath}")
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
