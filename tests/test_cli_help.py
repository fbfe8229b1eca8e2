"""Every command and option explains itself; `--help` teaches by example."""

from __future__ import annotations

from collections.abc import Iterator

import click

import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path
        if isinstance(command, click.Group):
            yield from _commands(command, path)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli.cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


ALL = list(_commands(cli.cli))


def test_the_issue_commands_exist() -> None:
    wanted = {
        ("init",),
        ("run", "list"),
        ("run", "show"),
        ("checkpoint", "add"),
        ("checkpoint", "list"),
        ("checkpoint", "show"),
        ("env", "add"),
        ("env", "list"),
        ("env", "show"),
        ("env", "version"),
        ("judge", "add"),
        ("judge", "list"),
        ("example",),
    }
    assert wanted <= set(ALL)


def test_every_command_and_option_has_help(gov) -> None:
    for path in ALL:
        command = _command(path)
        assert command.help, f"gov {' '.join(path)} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"gov {' '.join(path)} {param.opts[0]} has no help"
        result = gov(*path, "--help")
        assert result.exit_code == 0
        assert "Usage: gov " + " ".join(path) in result.stdout
        if not isinstance(command, click.Group):
            assert "Example:" in result.stdout, f"gov {' '.join(path)} --help has no example"


# What prints no record of its own: text the user asked for verbatim (a rubric, a JSON schema),
# a page written to a file, and the long-running jobs that write their results to files and say
# how far they are.
NO_RECORD = {("judge", "rubric"), ("schema",), ("report",), ("judge", "run"), ("watch",)}


def test_every_command_that_reports_speaks_json() -> None:
    commands = [p for p in ALL if not isinstance(_command(p), click.Group)]
    assert len(commands) > 40 and set(commands) >= NO_RECORD
    for path in commands:
        options = {o for p in _command(path).params for o in p.opts}
        if path not in NO_RECORD:
            assert "--format" in options, f"gov {' '.join(path)} lacks --format"
