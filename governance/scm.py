"""git at the edge: every registry change becomes one commit of exactly the files it touched.

Commits use `git commit --only`, so whatever else the user has staged stays staged and out of
gov's commit, and the user's hooks, identity and signing settings apply as for any commit.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import GitError, NotAGitRepository

if TYPE_CHECKING:
    import git

# GitPython is imported by the functions that need it: its import is a tenth of a second, and a
# reader such as `gov audit show` asks git a few questions without it (`output`).


def open_repo(folder: Path) -> git.Repo:
    import git

    try:
        return git.Repo(folder, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise _outside(folder) from exc


def check_inside(folder: Path) -> None:
    """Refuse a folder outside any git repository, as `open_repo` does, without opening one:
    the nearest `.git` above that is a repository (a folder with a HEAD, or a file naming
    one, as a worktree's or a submodule's is). One naming nothing (a deleted worktree) is
    passed over, as GitPython's search passes over it."""
    here = folder.resolve()
    if not any(_repository_at(p / ".git") for p in (here, *here.parents)):
        raise _outside(folder)


def _repository_at(dot_git: Path) -> bool:
    if dot_git.is_dir():
        return (dot_git / "HEAD").is_file()
    if not dot_git.is_file():
        return False
    try:
        line = dot_git.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return False
    named = line.removeprefix("gitdir:").strip() if line.startswith("gitdir:") else ""
    return bool(named) and (dot_git.parent / named / "HEAD").is_file()


def _outside(folder: Path) -> NotAGitRepository:
    return NotAGitRepository(
        f"{folder} is not inside a git repository: run `git init` there first "
        "(gov keeps the registry's history in git)"
    )


# core.fsync's words that name loose objects (git-config(1)); git's default leaves them out.
_LOOSE_OBJECT_WORDS = {"loose-object", "objects", "committed", "added", "all"}


def syncs_objects(repo: git.Repo) -> bool:
    """Whether git, as configured here, flushes the objects it writes to disk (fsync).

    gov holds the content it stores (a report kept in DVC) to the same durability: git's default
    (`core.fsync` without loose objects) trusts the OS to write it back, and so does gov; a repo
    set to flush objects (`core.fsync=objects`, `all`, ... or `core.fsyncObjectFiles`) gets the
    stored reports flushed too."""
    reader = repo.config_reader()
    flushed = False
    if reader.has_option("core", "fsyncObjectFiles"):
        flushed = str(reader.get_value("core", "fsyncObjectFiles")).lower() in {
            "true",
            "1",
            "yes",
            "on",
        }
    if reader.has_option("core", "fsync"):
        for word in str(reader.get_value("core", "fsync")).split(","):
            word = word.strip()
            if word == "none" or (word.startswith("-") and word[1:] in _LOOSE_OBJECT_WORDS):
                flushed = False
            elif word in _LOOSE_OBJECT_WORDS:
                flushed = True
    return flushed


def work_tree(repo: git.Repo) -> Path:
    if repo.bare or repo.working_tree_dir is None:
        raise NotAGitRepository(f"{repo.git_dir} is a bare git repository: gov needs a work tree")
    return Path(repo.working_tree_dir).resolve()


def head(repo: git.Repo) -> str | None:
    try:
        return repo.head.commit.hexsha
    except ValueError:  # an unborn branch: no commit yet
        return None


def check_identity(repo: git.Repo) -> None:
    """Fail before touching anything if git could not author a commit."""
    import git

    try:
        repo.git.var("GIT_AUTHOR_IDENT")
        repo.git.var("GIT_COMMITTER_IDENT")
    except git.GitCommandError as exc:
        raise GitError(
            "git has no identity to record this change: set it with "
            '`git config user.name "Your Name"` and `git config user.email you@example.com`'
        ) from exc


def commit_paths(repo: git.Repo, paths: Iterable[Path], message: str) -> str | None:
    """Commit the current content of `paths` (and only them); return the new commit's sha,
    or None when they already are as HEAD has them."""
    root = work_tree(repo)
    rel = sorted({p.resolve().relative_to(root).as_posix() for p in paths})
    import git

    try:
        repo.git.add("-A", "--", *rel)
        if head(repo) is not None and not repo.git.diff(
            "--cached", "--name-only", "HEAD", "--", *rel
        ):
            return None
        repo.git.commit("--only", "-m", message, "--", *rel)
    except git.GitCommandError as exc:
        detail = " ".join((exc.stderr or exc.stdout or str(exc)).split())
        raise GitError(f"git refused to commit the registry change: {detail[:300]}") from exc
    return head(repo)


def unstage(repo: git.Repo, paths: Iterable[Path]) -> None:
    """Put the index entries of `paths` back as HEAD has them (after a failed change)."""
    root = work_tree(repo)
    rel = [p.resolve().relative_to(root).as_posix() for p in paths]
    if not rel:
        return
    if head(repo) is None:
        repo.git.rm("--cached", "-q", "--ignore-unmatch", "-r", "--", *rel)
    else:
        repo.git.reset("-q", "HEAD", "--", *rel)


def commit_message(sha: str, repo: git.Repo) -> str:
    message = repo.commit(sha).message
    return message if isinstance(message, str) else message.decode()


def output(folder: Path, *args: str, refused: Collection[int] = ()) -> str | None:
    """git's answer to `args`, run in `folder`, as GitPython's `repo.git` gives it (the final
    newline dropped): for readers that need no repository object, and so not GitPython's
    import. None where git exits with one of the codes in `refused` (an answer the caller
    expects, such as 1 from `merge-base --is-ancestor`); any other failure is a GitError in
    git's own words."""
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, check=False, env=_env()
    )
    if done.returncode in refused:
        return None
    if done.returncode != 0:
        raise _failed(folder, args[0], done.stderr)
    text = done.stdout.decode(errors="replace")
    return text[:-1] if text.endswith("\n") else text


# What `git cat-file --batch --follow-symlinks` says of a path whose link it cannot follow
# inside the commit (a link out of the repository, a loop, a dangling link, a file where a
# folder should be): the word, the size, then that many bytes.
_UNFOLLOWED = {b"symlink", b"loop", b"dangling", b"notdir"}
_KINDS = {b"blob", b"tree", b"commit", b"tag"}


def objects(folder: Path, names: Sequence[str]) -> list[tuple[str, bytes] | None]:
    """Each named object (`HEAD`, a sha, `REV:./PATH` from `folder`, a symbolic link followed
    within REV) as its id and content, or None where git has no such object: any number of
    reads in one git process (`git cat-file --batch`), where `git show` is one per file. A
    name is one line: one holding a line break is refused (ValueError)."""
    if any("\n" in n or "\r" in n for n in names):
        raise ValueError("an object name is one line")
    if not names:
        return []
    done = subprocess.run(
        ["git", "-C", str(folder), "cat-file", "--batch", "--follow-symlinks"],
        input="".join(f"{n}\n" for n in names).encode(errors="surrogateescape"),
        capture_output=True,
        check=False,
        env=_env(),
    )
    if done.returncode != 0:
        raise _failed(folder, "cat-file", done.stderr)
    out, at = done.stdout, 0
    found: list[tuple[str, bytes] | None] = []
    for _ in names:
        end = out.index(b"\n", at)
        header = out[at:end].split(b" ")
        at = end + 1
        if len(header) == 3 and header[1] in _KINDS and header[2].isdigit():
            size = int(header[2])
            found.append((header[0].decode(), out[at : at + size]))
            at += size + 1
            continue
        if len(header) == 2 and header[0] in _UNFOLLOWED and header[1].isdigit():
            at += int(header[1]) + 1  # the link or name it could not follow
        found.append(None)  # "NAME missing", "NAME ambiguous", or a link not followed
    return found


# Paths git reads from the environment: made absolute from this process's folder, as the
# user meant them, before git runs in another (`-C`): a hook exports GIT_DIR=.git.
_PATH_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in _PATH_VARIABLES:
        if env.get(name):
            env[name] = str(Path(env[name]).absolute())
    return env


def _failed(folder: Path, verb: str, stderr: bytes) -> GitError:
    said = " ".join(stderr.decode(errors="replace").split())[:300] or "no message"
    return GitError(f"git {verb} failed in {folder}: {said}")
