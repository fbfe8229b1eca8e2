"""YAML text to a validated pydantic model, with every error naming the file, line and field.

The one load-and-validate sequence of gov: registry files, policies, policy tests and exposure
files all go through `parse`. The strict loader (policies, policy tests, exposure files: files
people write by hand) also refuses anchors and aliases (no alias bombs) and duplicate keys (a
typo'd key is refused, not ignored).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import GovError

M = TypeVar("M", bound=BaseModel)

FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FastDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class StrictLoader(yaml.SafeLoader):
    """Safe, and also without anchors, aliases or duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        # An alias, or a node that declares an anchor: both are how alias bombs are built.
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                problem="anchors and aliases are not allowed here",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class NumberLoader(StrictLoader):
    """StrictLoader that also reads 1e-2 (no dot) as a number, as YAML 1.2 does (YAML 1.1,
    which PyYAML reads, takes it for a string): for files read with exact types (policies), so
    that `level: 1e-2` is the 0.01 its writer meant, while a quoted '1e-2' stays a string. Not
    for the registry's files, whose names and versions gov writes unquoted ("1e3" is a judge
    version there)."""


NumberLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def dump(data: Any) -> bytes:
    text = yaml.dump(data, Dumper=FastDumper, sort_keys=False, allow_unicode=True, width=100)
    return text.encode()


def field_name(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def first_error(exc: ValidationError) -> tuple[tuple[int | str, ...], str]:
    """The first error's location and a message that shows what was given."""
    err = exc.errors(include_url=False)[0]
    message = err["msg"]
    if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
        message = f"{message} (got {err['input']!r:.60})"
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    return error_loc(err), message


# How pydantic names the member of a union it tried, in an error's location: not a field the
# user wrote (`episode.constrained-str`, `judge.function-after[_check_name(), str]`)
# (not `none`: a count column is named so)
_UNION_MEMBERS = frozenset({
    "str", "int", "float", "bool", "bytes", "constrained-str", "constrained-int",
    "constrained-float", "strict-str", "strict-int", "is-instance", "nullable",
})  # fmt: skip


def error_loc(err: Mapping[str, Any]) -> tuple[int | str, ...]:
    """A pydantic error's location as the user wrote it: the union members left out."""
    return tuple(
        part
        for part in err["loc"]
        if isinstance(part, int) or ("[" not in part and part not in _UNION_MEMBERS)
    )


def _line(text: str, loc: Sequence[int | str]) -> int | None:
    """The line of the YAML node at `loc` (or of its nearest existing parent)."""
    try:
        node = yaml.compose(text, Loader=FastLoader)
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
    loc, message = (tuple(extra[0]["loc"]), "unknown field") if extra else first_error(exc)
    line = _line(text, loc)
    return f"{display}{f':{line}' if line else ''}: field {field_name(loc)}: {message}"


def load(
    text: str,
    display: str,
    error: type[GovError],
    *,
    strict: bool,
    suffix: str = "",
    loader: type[yaml.SafeLoader] | None = None,
) -> Any:
    """YAML text to plain data; a syntax error is `error`, naming the file and line."""
    try:
        return yaml.load(text, Loader=loader or (StrictLoader if strict else FastLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{display}{where}: invalid YAML: {problem}{suffix}") from exc


def parse(
    text: str,
    model: type[M],
    display: str,
    error: type[GovError],
    *,
    strict: bool = True,
    what: str = "expected a mapping of fields",
    suffix: str = "",
    exact_types: bool = False,
) -> M:
    """YAML text to a validated `model`; every problem is one `error` line naming the file,
    the line and the field. `suffix` is appended to each message (how to fix it).
    `exact_types`: a value of the wrong kind is an error, not converted (`level: '0.02'`, a
    string, is not the number 0.02; `schema_version: true` is not 1), as JSON's strict mode
    reads them (where enums are their values and lists stand for tuples)."""
    loader = NumberLoader if exact_types and strict else None
    data = load(text, display, error, strict=strict, suffix=suffix, loader=loader)
    if not isinstance(data, dict):
        raise error(f"{display}: {what}{suffix}")
    try:
        if exact_types:
            return model.model_validate_json(json.dumps(data, default=str), strict=True)
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{located_error(text, exc, display)}{suffix}") from exc
