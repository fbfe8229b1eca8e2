"""Reports that are mostly nothing: blank stretches are read in blocks (a bad record after them
is still named by its line), and a gzip that inflates far past any report, or a file of more
lines than gov reads, is refused whole with one line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from test_bad_input import assert_refused
from test_ingest import episode

from conftest import snapshot
from governance.ingest import formats


@pytest.fixture
def reports(registry, artifact, tmp_path: Path) -> Path:
    """A workspace whose run has a checkpoint at step 100; returns a folder for reports."""
    registry.add_checkpoint("main", 100, artifact("s100.pt"), {"math": 1.0})
    folder = tmp_path / "incoming"
    folder.mkdir()
    return folder


def test_a_bad_record_after_megabytes_of_blank_lines_is_named_by_its_line(
    gov, reports: Path, workspace: Path
) -> None:
    path = reports / "mostly-blank.jsonl"
    blank = 3 * formats.BLOCK + 12_345  # blank lines across several blocks, then two records
    good = json.dumps(episode(100, 1))
    bad = json.dumps(episode(100, 2, verdict="maybe"))
    path.write_bytes(b"\n" * blank + good.encode() + b"\n\n" + bad.encode() + b"\n")
    before = snapshot(workspace)
    result = gov("ingest", str(path), cwd=workspace)
    assert result.exit_code == 2
    assert f"mostly-blank.jsonl:{blank + 3}" in result.stderr, result.stderr
    assert snapshot(workspace) == before


def test_records_split_across_blocks_are_read_whole(gov, reports: Path, workspace: Path) -> None:
    path = reports / "many.jsonl"
    records = [json.dumps(episode(100, i, note="x" * (i % 700))) for i in range(6000)]
    assert sum(len(r) + 2 for r in records) > 2 * formats.BLOCK
    path.write_text("\n\n".join(records) + "\n")  # a blank line between each
    result = gov("ingest", str(path), cwd=workspace)
    assert result.exit_code == 0, result.stderr
    assert "6000 records" in result.stdout


def test_only_blank_lines_is_refused(gov, reports: Path, workspace: Path) -> None:
    path = reports / "blank.jsonl"
    path.write_bytes(b"\n \n\t\n" * (formats.BLOCK // 2))
    assert_refused(gov("ingest", str(path), cwd=workspace), "blank.jsonl", "empty")


def test_a_gzip_that_inflates_to_gigabytes_is_refused_before_reading(
    gov, reports: Path, workspace: Path
) -> None:
    path = reports / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write((json.dumps(episode(100, 1)) + "\n").encode())
        block = b"\n" * (64 << 20)
        for _ in range(4):  # 256 MiB of newlines in about 250 KB
            handle.write(block)
    before = snapshot(workspace)
    assert_refused(
        gov("ingest", str(path), cwd=workspace), "bomb.jsonl.gz", "inflates to", "over 200 times"
    )
    assert snapshot(workspace) == before


def test_a_gzip_cut_short_is_said_to_be_cut_short(gov, reports: Path, workspace: Path) -> None:
    # Its last four bytes, read as gzip's size field, are stream bytes: it was refused as a
    # report that "inflates to 1,014,721,736 bytes".
    whole = gzip.compress(
        b"".join((json.dumps(episode(100, i)) + "\n").encode() for i in range(2000))
    )
    path = reports / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    before = snapshot(workspace)
    done = gov("ingest", str(path), cwd=workspace)
    assert_refused(done, "cut.jsonl.gz", "a gzip file cut short")
    assert "inflates" not in done.stderr
    assert snapshot(workspace) == before


def test_a_wrapped_size_field_is_caught_while_reading(
    registry, reports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzip past 4 GiB records its size modulo 4 GiB: the limit then holds while reading."""
    from governance.errors import ReportRejected
    from governance.ingest import ingest

    path = reports / "wrapped.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(b"\n" * (16 << 20))
    monkeypatch.setattr(formats, "_check_inflation", lambda _: None)  # as if its field wrapped
    monkeypatch.setattr(formats, "_probe_inflation", lambda _: None)  # and its start looked fine
    monkeypatch.setattr(formats, "INFLATION_SLACK", 1 << 20)
    with pytest.raises(ReportRejected, match=r"inflates to over 200 times its compressed size \("):
        ingest(registry, [path])


def test_a_wrapped_size_field_is_caught_by_inflating_the_start(
    gov, reports: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 4 GiB the size field wraps: the first megabytes inflated tell (before DuckDB's
    reader would inflate all of it)."""
    path = reports / "wrapped.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write((json.dumps(episode(100, 1)) + "\n").encode())
        handle.write(b"\n" * (80 << 20))
    monkeypatch.setattr(formats, "_check_inflation", lambda _: None)  # as if its field wrapped
    before = snapshot(workspace)
    assert_refused(gov("ingest", str(path), cwd=workspace), "wrapped.jsonl.gz", "bytes gave")
    assert snapshot(workspace) == before


def test_more_lines_than_gov_reads_is_refused(
    registry, reports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance.errors import ReportRejected
    from governance.ingest import ingest

    monkeypatch.setattr(formats, "MAX_LINES", 1000)
    path = reports / "long.jsonl"
    path.write_bytes(b"\n" * 5000 + json.dumps(episode(100, 1)).encode() + b"\n")
    with pytest.raises(ReportRejected, match="over 1,000 lines"):
        ingest(registry, [path])
