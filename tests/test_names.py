"""Names become file names: no accepted name can leave its registry folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.errors import GovError, InvalidName
from governance.registry import check_name, parse_checkpoint_ref


@given(st.text(min_size=0, max_size=120))
def test_accepted_names_stay_in_their_folder(name: str) -> None:
    try:
        check_name("run", name)
    except InvalidName:
        return
    folder = Path("/registry/runs")
    assert (folder / f"{name}.yaml").resolve().parent == folder
    assert "/" not in name and "\\" not in name and ".." not in name and name.strip() == name


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True), st.integers(0, 10**9))
def test_checkpoint_refs_round_trip(run: str, step: int) -> None:
    assert parse_checkpoint_ref(f"{run}@{step}") == (run, step)


@pytest.mark.parametrize("ref", ["main", "main@", "@5", "main@-1", "main@1.5", "a/b@3"])
def test_bad_checkpoint_refs(ref: str) -> None:
    with pytest.raises(GovError):
        parse_checkpoint_ref(ref)


def test_a_long_bad_name_is_cut_in_its_message(gov, workspace: Path) -> None:
    # the message repeated all 5,000 characters of the name
    long = "x" * 4999 + "/"
    for command in (["env", "add", long], ["judge", "add", "j", "--version", long]):
        done = gov(*command, cwd=workspace)
        assert done.exit_code == 2, done.stdout
        [line] = done.stderr.strip().splitlines()
        assert "(5,000 characters)" in line and len(line) < 300, line
