"""One way to render: a command's view declares its formats, `--format` offers exactly those,
and `render.emit` draws any of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest

import cli
from governance import api, render


def _commands(group: click.Group, path: str = "gov") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}")
        else:
            found.append((f"{path} {name}", command))
    return found


def _format_choices(command: click.Command) -> tuple[str, ...] | None:
    for param in command.params:
        if param.name == "fmt":
            assert isinstance(param.type, click.Choice)
            return tuple(str(c) for c in param.type.choices)
    return None


def test_each_view_offers_its_formats_the_table_first() -> None:
    assert render.SUMMARY.formats == ("table", "json")
    assert render.METRICS.formats == ("table", "json", "csv")
    assert render.DECISION.formats == ("table", "json", "junit", "github", "markdown")
    views = [v for v in vars(render).values() if isinstance(v, render.View)]
    assert len(views) >= 20 and all(v.formats[:2] == ("table", "json") for v in views)


def test_the_format_option_offers_what_the_view_draws() -> None:
    offered = {path: _format_choices(c) for path, c in _commands(cli.cli)}
    assert offered["gov check"] == render.DECISION.formats
    assert offered["gov metrics"] == render.METRICS.formats
    assert offered["gov audit pressure"] == render.PRESSURE.formats
    assert offered["gov policy explain"] == render.EXPLANATION.formats
    # Every command with --format offers at least the table and JSON, the table by default.
    for path, choices in offered.items():
        if choices is not None:
            assert choices[:2] == ("table", "json"), path


def test_emit_refuses_a_format_the_view_does_not_draw(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="no csv view"):
        render.emit({"a": 1}, "csv", render.SUMMARY)
    render.emit({"a": 1}, "json", render.SUMMARY)
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    render.emit([1, 2], "table", lambda found, sep=",": click.echo(sep.join(map(str, found))))
    assert capsys.readouterr().out == "1,2\n"


def test_a_format_a_command_lacks_is_a_one_line_error(gov, example_template: Path) -> None:
    for args in (("check", "main@3000", "--dry-run"), ("run", "list"), ("audit", "pressure")):
        bad = gov(*args, "--format", "csv", cwd=example_template)
        assert bad.exit_code == 2, args
        assert bad.stderr.count("\n") == 1 and "'csv' is not one of" in bad.stderr


def test_json_of_the_commands_that_pick_their_data(gov, example_template: Path) -> None:
    runs = json.loads(gov("run", "list", "--format", "json", cwd=example_template).stdout)
    assert [(r["id"], r["checkpoints"]) for r in runs] == [("main", 48)]
    pressure = json.loads(gov("audit", "pressure", "--format", "json", cwd=example_template).stdout)
    assert pressure == {
        "code-unit-tests": {
            "flag_raised": 1,
            "redesign": 0,
            "rollback_applied": 0,
            "obfuscation_warning": 0,
        }
    }
    explained = json.loads(
        gov(
            "policy",
            "explain",
            "rationalization-rate-rising",
            "main@11000",
            "--env",
            "code-unit-tests",
            "--format",
            "json",
            cwd=example_template,
        ).stdout
    )
    assert explained["checkpoint"] == "main@11000" and explained["min_evidence"] >= 1
    [step] = explained["series"]
    assert step["status"] == "fired" and step["at"] == [20, 282]
    assert step["series"].startswith("code-unit-tests v1")


def test_the_review_page_goes_to_the_workspace_by_default(
    gov, example_template: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(example_template, ws, symlinks=True)
    (ws / "report.html").unlink()
    done = gov("report", cwd=ws / "environments")  # from a folder inside the workspace
    assert done.exit_code == 0, done.stderr
    assert (ws / "report.html").is_file() and not (ws / "environments" / "report.html").exists()
    assert api.report(ws).path == (ws / "report.html").resolve()


def test_junit_text_and_attributes_survive_an_xml_parser() -> None:
    import xml.etree.ElementTree as ET

    awkward = "a \"quoted\" <policy> & 'its' label\nline two\tend\r"
    parsed = ET.fromstring(
        f"<case name={render._xml_attr(awkward)}>{render._xml_text(awkward)}</case>"
    )
    # An attribute keeps its newline and tab only when they are written as references.
    assert parsed.get("name") == awkward
    assert parsed.text == awkward.replace("\r", "\n")  # XML reads a raw CR in text as LF
