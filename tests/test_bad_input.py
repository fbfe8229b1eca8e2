"""Every bad input: one clear line, exit code 2, no traceback, the workspace exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, snapshot


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gov: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _add(workspace: Path, *extra: str) -> list[str]:
    return ["checkpoint", "add", *extra]


CASES: dict[str, tuple[Callable[[Path], list[str]], tuple[str, ...]]] = {
    "missing artifact": (
        lambda ws: ["checkpoint", "add", "main@1", "ckpt/nope.pt", "-e", "math=1"],
        ("ckpt/nope.pt", "does not exist"),
    ),
    "duplicate step": (
        lambda ws: ["checkpoint", "add", "main@100", "ckpt/other.pt", "-e", "math=1"],
        ("already has a checkpoint at step 100",),
    ),
    "unknown environment in exposure": (
        lambda ws: ["checkpoint", "add", "main@2", "ckpt/other.pt", "-e", "chess=1"],
        ("environment 'chess' is not registered", "gov env add chess"),
    ),
    "unknown environment version": (
        lambda ws: ["checkpoint", "add", "main@2", "ckpt/other.pt", "-e", "math@v7=1"],
        ("no version 'v7'", "v1"),
    ),
    # an empty version after '@' was taken for the latest
    "empty environment version": (
        lambda ws: ["checkpoint", "add", "main@2", "ckpt/other.pt", "-e", "math@=1"],
        ("exposure 'math@': no version after '@'",),
    ),
    "weights not summing to one": (
        lambda ws: ["checkpoint", "add", "main@2", "ckpt/other.pt", "-e", "math=0.5"],
        ("sum to 0.5",),
    ),
    "malformed exposure flag": (
        lambda ws: ["checkpoint", "add", "main@2", "ckpt/other.pt", "-e", "math"],
        ("--exposure", "ENV[@VERSION]=WEIGHT"),
    ),
    "bad checkpoint reference": (
        lambda ws: ["checkpoint", "show", "main-100"],
        ("RUN@STEP",),
    ),
    "unknown run": (
        lambda ws: ["checkpoint", "add", "ghost@2", "ckpt/other.pt", "-e", "math=1"],
        ("run 'ghost' is not registered",),
    ),
    "unknown judge": (lambda ws: ["judge", "show", "oracle"], ("judge 'oracle'",)),
    "artifact outside workspace": (
        lambda ws: ["checkpoint", "add", "main@2", str(ws.parent / "outside.pt"), "-e", "math=1"],
        ("outside the workspace",),
    ),
    "run name with a path separator": (
        lambda ws: ["run", "add", "team/main"],
        ("'team/main'", "path separator"),
    ),
    "environment name with ..": (
        lambda ws: ["env", "add", "..evil", "--hash", "a" * 64],
        ("'..evil'", "'..'"),
    ),
    "judge name with a backslash": (
        lambda ws: ["judge", "add", "a\\b", "--version", "1", "--rubric-hash", "a" * 64],
        ("path separator",),
    ),
    "checkpoint reference with ..": (
        lambda ws: ["checkpoint", "show", "../main@1"],
        ("path separator",),
    ),
    "hash that is not sha256": (
        lambda ws: ["env", "add", "chess", "--hash", "xyz"],
        ("not a sha256",),
    ),
    "environment already registered": (
        lambda ws: ["env", "add", "math", "--hash", "b" * 64],
        ("already registered", "gov env version math"),
    ),
    "unknown parent checkpoint": (
        lambda ws: ["run", "add", "r1", "--parent", "main@555"],
        ("main@555",),
    ),
    "workspace flag pointing nowhere": (
        lambda ws: ["--workspace", str(ws / "nope"), "env", "list"],
        ("no such folder",),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_whole(case: str, gov, registry, workspace: Path, artifact) -> None:
    registry.add_checkpoint("main", 100, artifact("m100.pt"), {"math": 1.0})
    artifact("other.pt")
    (workspace.parent / "outside.pt").write_bytes(b"x")
    before = snapshot(workspace)
    args, fragments = CASES[case]
    assert_refused(gov(*args(workspace), cwd=workspace), *fragments)
    assert snapshot(workspace) == before


# (file, edit, a read that must name the problem, what it says, whether a checkpoint add reads it)
HAND_EDITS: dict[str, tuple[str, Callable[[str], str], list[str], tuple[str, ...], bool]] = {
    "yaml syntax": (
        "registry/environments/math.yaml",
        lambda text: text.replace("status: active", "status: [active"),
        ["env", "list"],
        ("registry/environments/math.yaml:", "invalid YAML"),
        True,
    ),
    "unknown status": (
        "registry/environments/math.yaml",
        lambda text: text.replace("status: active", "status: flaged"),
        ["env", "show", "math"],
        ("registry/environments/math.yaml:4", "field status", "flaged"),
        True,
    ),
    "id not matching file": (
        "registry/environments/math.yaml",
        lambda text: text.replace("id: math", "id: maths"),
        ["env", "list"],
        ("registry/environments/math.yaml", "does not match the file name"),
        True,
    ),
    "truncated checkpoint line": (
        "registry/checkpoints/main.jsonl",
        lambda text: text[: len(text) // 2],
        ["checkpoint", "list"],
        ("registry/checkpoints/main.jsonl:1", "invalid JSON"),
        True,
    ),
    "bad checkpoint field": (
        "registry/checkpoints/main.jsonl",
        lambda text: text.replace('"step":100', '"step":-4'),
        ["checkpoint", "show", "main@100"],
        ("registry/checkpoints/main.jsonl:1", "field step", "-4"),
        True,
    ),
    "bad weight in a checkpoint's mixture": (
        "registry/checkpoints/main.jsonl",
        lambda text: text.replace('"weight":1.0', '"weight":1.5'),
        ["checkpoint", "list"],
        ("registry/checkpoints/main.jsonl:1", "field exposure.0.weight", "1"),
        True,
    ),
    "lineage cycle": (
        "registry/runs/main.yaml",
        lambda text: text + "parent_run: main\nforked_from_step: 100\n",
        ["run", "show", "main"],
        ("cycle", "main -> main"),
        False,
    ),
    "unknown field": (
        "registry/judges/cot-monitor.yaml",
        lambda text: text + "colour: blue\n",
        ["judge", "list"],
        ("registry/judges/cot-monitor.yaml:", "field colour", "unknown field"),
        False,
    ),
}


@pytest.mark.parametrize("case", list(HAND_EDITS))
def test_hand_edited_registry_file_is_named(
    case: str, gov, registry, workspace: Path, artifact
) -> None:
    registry.add_checkpoint("main", 100, artifact("m100.pt"), {"math": 1.0})
    rel, edit, args, fragments, write_reads_it = HAND_EDITS[case]
    path = workspace / rel
    path.write_text(edit(path.read_text()))
    before = snapshot(workspace)
    result = gov(*args, cwd=workspace)
    assert_refused(result, *fragments)
    assert f"git checkout -- {rel}" in result.stderr or "cycle" in case
    # A write on top of a broken registry is refused too, and leaves everything as it was.
    artifact("later.pt")
    before = snapshot(workspace)
    write = gov("checkpoint", "add", "main@200", "ckpt/later.pt", "-e", "math=1", cwd=workspace)
    if write_reads_it:
        assert_refused(write, rel)
        assert snapshot(workspace) == before
    else:
        assert write.exit_code == 0, write.stderr


def test_traceback_only_when_asked(gov, workspace: Path) -> None:
    quiet = gov("env", "show", "chess", cwd=workspace)
    assert "Traceback" not in quiet.stderr
    with pytest.raises(Exception, match="chess"):
        gov("--traceback", "env", "show", "chess", cwd=workspace)


def test_missing_git_identity_is_refused_before_any_write(
    gov, workspace: Path, artifact, monkeypatch
) -> None:
    import git

    repo = git.Repo(workspace)
    with repo.config_writer() as config:
        config.remove_section("user")
    monkeypatch.setenv("HOME", str(workspace.parent))  # no global identity either
    (workspace.parent / "empty.gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(workspace.parent / "empty.gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("EMAIL", "")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    with repo.config_writer() as config:
        config.set_value("user", "useConfigOnly", "true")
    artifact("id.pt")
    before = snapshot(workspace)
    result = gov("checkpoint", "add", "main@1", "ckpt/id.pt", "-e", "math=1", cwd=workspace)
    assert_refused(result, "git has no identity", "git config user.name")
    assert snapshot(workspace) == before
