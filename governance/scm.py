"""git at the edge: every registry change becomes one commit of exactly the files it touched.

Commits use `git commit --only`, so whatever else the user has staged stays staged and out of
gov's commit, and the user's hooks, identity and signing settings apply as for any commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import git

from .errors import GitError, NotAGitRepository


def open_repo(folder: Path) -> git.Repo:
    try:
        return git.Repo(folder, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise NotAGitRepository(
            f"{folder} is not inside a git repository: run `git init` there first "
            "(gov keeps the registry's history in git)"
        ) from exc


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
