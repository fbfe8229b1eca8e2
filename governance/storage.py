"""Reading and writing the registry's plain-text files.

Reads turn any YAML, JSON or validation problem into one line naming the file, the line and the
field. Writes go to a temporary file that replaces the target in one rename, so a file is always
either its old or its new content.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import RegistryFileError

M = TypeVar("M", bound=BaseModel)

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


FileStamp = tuple[int, int, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """What any write to a file, or its replacement, changes: device, inode, size, mtime.
    None when there is no such file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


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


def dump_yaml(data: Any) -> bytes:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return text.encode()


def model_yaml(model: BaseModel) -> bytes:
    return dump_yaml(model.model_dump(mode="json", exclude_none=True))


def model_json_line(model: BaseModel) -> str:
    return model.model_dump_json(exclude_none=True)


def _field(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _first_error(exc: ValidationError) -> tuple[tuple[int | str, ...], str]:
    err = exc.errors(include_url=False)[0]
    message = err["msg"]
    if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
        message = f"{message} (got {err['input']!r:.60})"
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    return tuple(err["loc"]), message


def _yaml_line(text: str, loc: Sequence[int | str]) -> int | None:
    """The line of the YAML node at `loc` (or of its nearest existing parent)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                break
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def located_error(text: str, exc: ValidationError, display: str) -> str:
    """`display:line: field F: message` for a model validated from the YAML `text`.

    A typo'd key fails twice, as an unknown field and as the missing one: the typo is named."""
    extra = [e for e in exc.errors(include_url=False) if e["type"] == "extra_forbidden"]
    loc, message = (tuple(extra[0]["loc"]), "unknown field") if extra else _first_error(exc)
    line = _yaml_line(text, loc)
    return f"{display}{f':{line}' if line else ''}: field {_field(loc)}: {message}"


def _fix_hint(display: str) -> str:
    return f"fix the file, or restore it with `git checkout -- {display}`"


def load_yaml_model(path: Path, model: type[M], display: str) -> M:
    """Read one YAML record; `display` is the path shown in errors (relative to the workspace)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RegistryFileError(f"{display}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RegistryFileError(
            f"{display}{where}: invalid YAML: {problem}; {_fix_hint(display)}"
        ) from exc
    if not isinstance(data, dict):
        raise RegistryFileError(f"{display}: expected a mapping of fields; {_fix_hint(display)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RegistryFileError(
            f"{located_error(text, exc, display)}; {_fix_hint(display)}"
        ) from exc


def iter_jsonl_models(path: Path, model: type[M], display: str) -> Iterator[M]:
    """Read a file of one JSON record a line, naming the line of any bad record."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield model.model_validate_json(raw)
            except ValidationError as exc:
                loc, message = _first_error(exc)
                if exc.errors()[0]["type"] == "json_invalid":
                    try:
                        json.loads(raw)
                    except ValueError as json_exc:
                        message = f"invalid JSON: {json_exc}"
                    except Exception:
                        pass
                    raise RegistryFileError(
                        f"{display}:{number}: {message}; {_fix_hint(display)}"
                    ) from exc
                raise RegistryFileError(
                    f"{display}:{number}: field {_field(loc)}: {message}; {_fix_hint(display)}"
                ) from exc
