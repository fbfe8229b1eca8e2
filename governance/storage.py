"""Reading and writing gov's plain-text files: YAML and JSON records, JSONL logs.

Reads turn any YAML, JSON or validation problem into one line naming the file, the line and the
field (YAML through `yamlio`). Writes go to a temporary file that replaces the target in one
rename, so a file is always either its old or its new content.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import yamlio
from .errors import GovError, RegistryFileError

M = TypeVar("M", bound=BaseModel)


FileStamp = tuple[int, int, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """What any write to a file, or its replacement, changes: device, inode, size, mtime.
    None when there is no such file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


# -- local state that is a copy: sealed -------------------------------------------------------
# What gov keeps in .gov/ is derived from the committed files and must never change an answer:
# each cache file carries a digest of what it holds (and of the key it is kept under), and one
# damaged or edited in place reads as absent, so it is computed again from the source of truth.
def seal(data: bytes, context: bytes = b"") -> bytes:
    """`data` with a first line that vouches for it (and for `context`, e.g. its key)."""
    return _seal_digest(data, context) + b"\n" + data


def unseal(raw: bytes, context: bytes = b"") -> bytes | None:
    """What `seal` sealed, or None where `raw` is not whole and unedited."""
    digest, _, data = raw.partition(b"\n")
    return data if digest == _seal_digest(data, context) else None


def _seal_digest(data: bytes, context: bytes) -> bytes:
    import hashlib

    digest = hashlib.sha256(context)  # sha256: the fastest hashlib has on x86 (SHA extensions)
    digest.update(b"\0")
    digest.update(data)
    return digest.hexdigest().encode()


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename; a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); keep the target's mode, or the usual 0644.
        Path(tmp).chmod(path.stat().st_mode & 0o777 if path.exists() else 0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, data: bytes) -> None:
    """Write a file the user named (a page, transcripts) whole or not at all; a path that cannot
    be written is one GovError naming it."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise GovError(f"{path}: cannot be written: {exc.strerror or exc}") from None


def write_index(
    paths: tuple[Path, Path, Path], blob: bytes, numbers: array[int], meta: dict[str, Any]
) -> None:
    """Write a piece of derived local state (an index in .gov/): a blob, an array of numbers
    and a JSON header, each file atomically. A folder that cannot be written costs only speed,
    so a failure is not an error."""
    raw = numbers.tobytes()
    header = seal(json.dumps(meta).encode(), blob + b"\0" + raw)  # vouches for all three
    with contextlib.suppress(OSError):
        for path, data in zip(paths, (blob, raw, header), strict=True):
            atomic_write(path, data)


def read_index(
    paths: tuple[Path, Path, Path], typecode: str
) -> tuple[bytes, array[int], dict[str, Any]] | None:
    """What write_index wrote (numbers of `typecode`), or None where a file cannot be read or
    is not what it should be: the caller rebuilds the index."""
    try:
        blob, raw, sealed = (path.read_bytes() for path in paths)
        header = unseal(sealed, blob + b"\0" + raw)
        if header is None:  # damaged or edited in place, or written by another (older) gov
            return None
        numbers = array(typecode)
        numbers.frombytes(raw)
        meta = json.loads(header)
    except (OSError, ValueError):
        return None
    return (blob, numbers, meta) if isinstance(meta, dict) else None


def model_yaml(model: BaseModel) -> bytes:
    return yamlio.dump(model.model_dump(mode="json", exclude_none=True))


def model_json_line(model: BaseModel) -> str:
    return model.model_dump_json(exclude_none=True)


def model_json(model: BaseModel) -> bytes:
    """A document of the audit side (a decision, an override, a rollback): indented JSON."""
    return (model.model_dump_json(indent=2) + "\n").encode()


def _fix_hint(display: str) -> str:
    return f"; fix the file, or restore it with `git checkout -- {display}`"


def load_yaml_model(path: Path, model: type[M], display: str) -> M:
    """Read one YAML record; `display` is the path shown in errors (relative to the workspace)."""
    return parse_yaml_model(path.read_bytes(), model, display)


def parse_yaml_model(data: bytes, model: type[M], display: str) -> M:
    """One YAML record from the bytes of the file `display`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RegistryFileError(f"{display}: not UTF-8 text ({exc.reason})") from exc
    return yamlio.parse(
        text, model, display, RegistryFileError, strict=False, suffix=_fix_hint(display)
    )


def iter_jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every line of a JSON-lines file that is not blank: what each
    reader of one names in its errors."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, raw


def iter_jsonl_lines_reversed(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The lines of a file that are not blank, last first, read in blocks from its end (for the
    newest records of a long, append-only file)."""
    with path.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        carry = b""
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            lines = (handle.read(end - start) + carry).split(b"\n")
            carry = lines.pop(0) if start > 0 else b""  # may be cut: joined with the next block
            for raw in reversed(lines):
                if raw.strip():
                    yield raw
            end = start


def iter_jsonl_models(path: Path, model: type[M], display: str) -> Iterator[M]:
    """Read a file of one JSON record a line, naming the line of any bad record."""
    for _, record in iter_jsonl_numbered(path, model, display):
        yield record


def iter_jsonl_numbered(path: Path, model: type[M], display: str) -> Iterator[tuple[int, M]]:
    """(line number, record) of a file of one JSON record a line; a bad line is an error."""
    for number, raw in iter_jsonl_lines(path):
        yield number, validate_jsonl_line(raw, number, model, display)


def validate_jsonl_line(raw: bytes, number: int, model: type[M], display: str) -> M:
    """Line `number` of the JSON-lines file `display` as a `model`; else one error naming them."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        loc, message = yamlio.first_error(exc)
        if exc.errors()[0]["type"] == "json_invalid":
            try:
                json.loads(raw)
            except ValueError as json_exc:
                message = f"invalid JSON: {json_exc}"
            except Exception:
                pass
            raise RegistryFileError(f"{display}:{number}: {message}{_fix_hint(display)}") from exc
        raise RegistryFileError(
            f"{display}:{number}: field {yamlio.field_name(loc)}: {message}{_fix_hint(display)}"
        ) from exc


def duckdb_connect(config: dict[str, Any] | None = None) -> Any:
    """An in-process DuckDB connection whose own progress bar never prints into gov's output.
    Progress is still tracked, so that `query_progress()` tells gov's own bar how far a long
    query has got (with tracking off it answers -1 until the query ends)."""
    import duckdb

    con = duckdb.connect(config=config or {})
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    return con
