"""What gov prints: user text escaped, names wrapped not cut, counts in words, hints that run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from governance import render


def test_control_characters_in_user_text_are_shown_escaped(gov, example_copy: Path) -> None:
    reason = "\x1b[31mall clear\x1b[0m\nreally"
    forced = gov("promote", "main@4000", "--override", "--reason", reason, cwd=example_copy)
    assert forced.exit_code == 0, forced.stderr
    assert "\x1b" not in forced.stdout and "\\x1b[31mall clear" in forced.stdout
    shown = gov("audit", "log", cwd=example_copy).stdout
    assert "\x1b" not in shown and "\\x1b[31mall" in shown


def test_brackets_in_user_text_are_not_markup(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(render, "_console", lambda: Console(file=out, width=200))
    render.table("t", ["reason"], [["[bold]kept[/bold] as typed"]])
    assert "[bold]kept[/bold] as typed" in out.getvalue()


def test_a_narrow_terminal_wraps_names_instead_of_cutting_them(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(render, "_console", lambda: Console(file=out, width=60))
    name = "rationalization-rate-rising-in-the-long-named-environment"
    render.table("t", ["policy", "environment", "status"], [[name, "code-unit-tests-v7", "ok"]])
    shown = out.getvalue()
    assert "…" not in shown and "code-unit-tests-v7" in shown
    assert all(word in shown for word in name.split("-"))  # every piece, on its own line


def test_counts_are_written_in_words() -> None:
    assert render.count(1, "entry") == "1 entry"
    assert render.count(2, "entry") == "2 entries"
    assert render.count(0, "group") == "0 groups"
    assert render.count(1, "series", "series") == "1 series"


def test_traceback_works_after_the_subcommand_too(gov, example_copy: Path) -> None:
    with pytest.raises(Exception, match="not a date"):
        gov("audit", "log", "--since", "someday", "--traceback", cwd=example_copy)
    plain = gov("audit", "log", "--since", "someday", cwd=example_copy)
    assert plain.exit_code == 2 and "not a date" in plain.stderr


def test_a_rollback_dry_run_checks_where_it_would_write(gov, example_copy: Path, tmp_path) -> None:
    missing = tmp_path / "no-such-folder" / "restart.bin"
    dry = gov("rollback", "apply", "--to", str(missing), cwd=example_copy)
    assert dry.exit_code == 2 and "does not exist: create it first" in dry.stderr


def test_the_example_s_next_hint_runs_the_recommendation_after_a_block(gov, tmp_path) -> None:
    done = gov("example", str(tmp_path / "ex"))
    assert done.exit_code == 0, done.stderr
    hint = next(line for line in done.stdout.splitlines() if line.startswith("next:"))
    assert "; gov rollback recommend" in hint and "&& gov rollback" not in hint
