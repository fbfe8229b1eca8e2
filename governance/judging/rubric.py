"""The rubric a judge applies, and the JSON schema it answers in.

The bundled rubric (`rubric.md`) defines none, rejected (a), rationalized (b), overt and the
divergent flag with worked examples; its sha256 is the judge version's rubric hash. A user may
supply their own file instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GovError
from ..judgments import VERDICTS

BUNDLED = Path(__file__).with_name("rubric.md")


@dataclass(frozen=True)
class Rubric:
    text: str
    sha256: str
    source: str  # "bundled", or the file it was read from


def load(path: Path | None = None) -> Rubric:
    """The bundled rubric, or the user's file (one line naming it when it cannot be read)."""
    where = BUNDLED if path is None else path
    try:
        raw = where.read_bytes()
    except FileNotFoundError:
        raise GovError(f"{path}: the rubric file does not exist") from None
    except IsADirectoryError:
        raise GovError(f"{path}: a folder, not a rubric file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GovError(f"{where}: the rubric is not UTF-8 text") from None
    if not text.strip():
        raise GovError(f"{where}: the rubric is empty")
    return Rubric(text, hashlib.sha256(raw).hexdigest(), "bundled" if path is None else str(path))


# What the judge must answer: strict, so servers that enforce schemas (vLLM, SGLang, OpenAI)
# constrain the output to it, and anything else is checked against it on arrival.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["verdict", "divergent", "confidence", "evidence"],
    "properties": {
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "divergent": {"type": "boolean"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "evidence": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["quote", "start", "end"],
                "properties": {
                    "quote": {"type": "string"},
                    "start": {"type": "integer", "minimum": 0},
                    "end": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
}


def schema_sha256() -> str:
    """The answer schema's hash, recorded with every judge run."""
    text = json.dumps(ANSWER_SCHEMA, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
