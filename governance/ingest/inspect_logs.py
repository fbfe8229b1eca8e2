"""Inspect AI eval logs (`.eval`, `.json`) as judge reports: a scorer's value is the verdict, the
sample metadata carries run, step, environment and its version, the scorer is the judge and the
model that graded (the `grader` role, else the eval's model) is its version.

Read with Inspect's own reader (the `inspect` extra), so compressed `.eval` files and
attachments are handled as Inspect handles them. A log that has not finished is refused, and so
are repeated judgments of one episode (epochs) unless the scorer reduced them. A sample the
scorer left unscored (or that failed) is an episode without a verdict, never `none`. A score
edited after the fact keeps its history, in the record's note and in the ledger.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..counts import InspectSource, ScoreEdit
from ..errors import ReportRejected
from ..judgments import VERDICTS

SUFFIXES = (".eval", ".json")
KEYS = ("run", "step", "environment", "environment_version")


@dataclass
class Conversion:
    """A log read as a report: its records, where each came from, what was left unjudged."""

    records: list[dict[str, Any]]
    samples: list[Any]  # the sample id of each record, in order
    source: InspectSource
    unjudged: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    episodes: Counter[tuple[Any, ...]] = field(default_factory=Counter)


def is_inspect_log(path: Path) -> bool:
    """An Inspect log by its name and first bytes: a zip named .eval, or a JSON object named
    .json whose top holds Inspect's `eval` spec."""
    if path.suffix == ".eval":
        return True
    if path.suffix != ".json" or not path.is_file():
        return False
    with path.open("rb") as handle:
        head = handle.read(4096)
    return head.lstrip().startswith(b"{") and b'"eval"' in head


def version_label(model: str) -> str:
    """A model name as a judge version label (letters, digits and . _ + -): `/` becomes `+`."""
    return re.sub(r"[^\w.+-]", "+", model.replace("/", "+")).lstrip("._+-") or "model"


def convert(path: Path, scorer: str | None = None) -> Conversion:
    """The log's samples as episode-level report records; one line naming the log and the
    sample where it cannot be read as a report."""
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise ReportRejected(
            f"{path}: an Inspect log; reading it needs the inspect extra "
            "(pip install 'rl-gov[inspect]')"
        ) from None
    try:
        log = read_eval_log(str(path), resolve_attachments=True)
    except Exception as exc:  # Inspect's reader raises many kinds on a damaged file
        raise ReportRejected(
            f"{path}: not a readable Inspect log ({exc.__class__.__name__})"
        ) from None
    if log.status != "success":
        raise ReportRejected(
            f"{path}: the Inspect log is {log.status}, not finished: ingest it once the eval "
            "has succeeded"
        )
    names = [s.name for s in (log.eval.scorers or [])]
    if scorer is None:
        if len(names) != 1:
            raise ReportRejected(
                f"{path}: {len(names)} scorers ({', '.join(names) or 'none'}): name the one that "
                "judges"
            )
        scorer = names[0]
    elif scorer not in names:
        raise ReportRejected(f"{path}: no scorer {scorer!r} (scorers: {', '.join(names)})")
    roles = log.eval.model_roles or {}
    role: Any = roles.get("grader")
    role = role[0] if isinstance(role, list) and role else role
    grader = str(getattr(role, "model", None) or log.eval.model)
    # an installed package's scorer is named `package/scorer`: the judge is the scorer
    judge, version = scorer.rsplit("/", 1)[-1], version_label(grader)
    samples = log.samples or []
    per_id = Counter(sample.id for sample in samples)
    repeated = [i for i, n in per_id.items() if n > 1]
    # one epoch: the sample's own score (a reducer such as the mean has no meaning for a label)
    reduced = _reduced(log, scorer) if repeated else None
    if repeated and reduced is None:
        raise ReportRejected(
            f"{path}: sample {repeated[0]!r} was judged in {per_id[repeated[0]]} epochs and the "
            "scorer did not reduce them: one verdict per episode (reduce the epochs, or judge "
            "once)"
        )
    out = Conversion(
        [],
        [],
        InspectSource(
            log=path.name,
            log_md5=_md5(path),
            eval_id=str(log.eval.eval_id),
            task=str(log.eval.task),
            scorer=scorer,
            grader=grader,
        ),
    )
    done: set[Any] = set()
    for sample in samples:
        if sample.id in done:
            continue
        done.add(sample.id)
        where = f"{path}: sample {sample.id!r}"
        metadata = sample.metadata or {}
        missing = [k for k in KEYS if k not in metadata]
        if missing:
            raise ReportRejected(f"{where}: its metadata has no {missing[0]}")
        cell = tuple(metadata[k] for k in KEYS)
        out.episodes[cell] += 1
        score = reduced.get(sample.id) if reduced is not None else (sample.scores or {}).get(scorer)
        if score is None or _unscored(score.value) or getattr(sample, "error", None):
            out.unjudged[cell] += 1  # never counted as `none`
            continue
        verdict, divergent = _verdict(score.value, score.metadata or {})
        if verdict not in VERDICTS:
            raise ReportRejected(
                f"{where}: score {score.value!r} is not a verdict (one of {', '.join(VERDICTS)})"
            )
        episode = str(metadata.get("episode", sample.id))
        record: dict[str, Any] = {
            **dict(zip(KEYS, cell, strict=True)),
            "episode": episode,
            "judge": judge,
            "judge_version": version,
            "verdict": verdict,
            "divergent": divergent,
        }
        extra = score.metadata or {}
        if isinstance(extra.get("confidence"), int | float):
            record["confidence"] = extra["confidence"]
        if isinstance(extra.get("evidence"), list) and extra["evidence"]:
            record["evidence"] = extra["evidence"]
        notes = [extra["note"]] if isinstance(extra.get("note"), str) and extra["note"] else []
        edits = [e for e in _history(sample, scorer, score) if e.provenance is not None]
        if edits:
            changes = [_edit(episode, e) for e in edits]
            out.source.edited.extend(changes)
            notes.append("score edited after the fact: " + "; ".join(map(_described, changes)))
        if notes:
            record["note"] = "; ".join(notes)
        out.records.append(record)
        out.samples.append(sample.id)
    if not out.records:
        if out.unjudged:
            raise ReportRejected(
                f"{path}: none of its {sum(out.unjudged.values())} samples has a verdict from "
                f"{scorer}"
            )
        raise ReportRejected(f"{path}: the Inspect log has no samples")
    return out


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _reduced(log: Any, scorer: str) -> dict[Any, Any] | None:
    """The scorer's reduced score per sample id, where it reduced epochs (None: not reduced)."""
    for reduction in log.reductions or []:
        if reduction.scorer == scorer and reduction.reducer:
            return {s.sample_id: s for s in reduction.samples}
    return None


def _unscored(value: Any) -> bool:
    """Inspect's sentinel for a sample its scorer could not score (NaN), or no value at all."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _verdict(value: Any, metadata: dict[str, Any]) -> tuple[Any, bool]:
    """A score's verdict and divergent flag: a verdict string (divergent from the metadata), or
    a mapping holding both."""
    if isinstance(value, dict):
        return value.get("verdict"), bool(value.get("divergent", False))
    return value, bool(metadata.get("divergent", False))


def _history(sample: Any, scorer: str, score: Any) -> list[Any]:
    """The score's edit history: the sample's own score keeps it (a reduced score does not)."""
    own = (sample.scores or {}).get(scorer)
    return list(getattr(own if own is not None else score, "history", None) or [])


def _edit(episode: str, edit: Any) -> ScoreEdit:
    provenance = edit.provenance
    when = getattr(provenance, "timestamp", None)
    return ScoreEdit(
        episode=episode,
        value=json.dumps(edit.value, default=str),
        author=str(getattr(provenance, "author", "") or "unknown"),
        at=when.isoformat() if when is not None else None,
        reason=getattr(provenance, "reason", None),
    )


def _described(edit: ScoreEdit) -> str:
    parts = [f"to {edit.value}", f"by {edit.author}"]
    parts += [f"at {edit.at}"] if edit.at else []
    parts += [f"({edit.reason})"] if edit.reason else []
    return " ".join(parts)


def write_report(conversion: Conversion, target: Path) -> None:
    """The records as a JSONL report, and beside it the `.meta.json` that tells ingest which
    episodes the scorer left without a verdict (as `gov judge run` writes it)."""
    target.write_text("".join(json.dumps(r, default=str) + "\n" for r in conversion.records))
    first = conversion.records[0]
    cells = [
        {
            **dict(zip(KEYS, cell, strict=True)),
            "episodes": conversion.episodes[cell],
            "unjudged": n,
        }
        for cell, n in conversion.unjudged.items()
    ]
    meta = {
        "judge": first["judge"],
        "judge_version": first["judge_version"],
        "unjudged_by_checkpoint": cells,
    }
    target.with_name(target.name + ".meta.json").write_text(json.dumps(meta, default=str))
