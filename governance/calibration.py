"""`gov judge calibrate`: how right a judge version is, from labelled episodes, recorded with it.

A label file (CSV or JSONL, gzip too) gives each episode its true class and the judge's verdict;
or the verdicts come from a report the judge wrote (`verdicts`), matched by episode id. Maps
translate other vocabularies: the true classes to gov's (none, rejected = (a), rationalized =
(b), overt), a judge's verdicts to gov's or to a binary monitor's flagged / clean. The
confusion matrix is stored in `registry/calibrations/JUDGE@VERSION.json` with the label file's
sha256, in one commit with its audit entry; the estimates are computed from it when read
(governance.stats.calibration).
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from . import audit
from .errors import GovError, NotFound
from .judgments import VERDICTS, repeated_key
from .models import utc_now
from .registry import Registry
from .stats.calibration import (
    BINARY,
    TRUE_A,
    TRUE_B,
    Confusion,
    ErrorRates,
    Share,
    corrected,
    error_rates,
)
from .stats.series import Series
from .storage import model_json
from .workspace import Workspace

CLASSES = VERDICTS  # the true classes are gov's verdicts: none, rejected, rationalized, overt


class Calibration(BaseModel):
    """A judge version's confusion matrix on labelled episodes, and where the labels came from."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    judge: str
    version: str
    labels: str  # the label file's name
    labels_sha256: str
    verdicts_from: str | None = None  # the report the verdicts were read from, if not the labels
    where: dict[str, str] = {}
    truth_map: dict[str, str] = {}
    verdict_map: dict[str, str] = {}
    vocabulary: Literal["gov", "binary"]
    episodes: int
    confusion: dict[str, dict[str, int]]  # true class -> verdict -> count
    created: datetime

    def matrix(self) -> Confusion:
        return Confusion(self.confusion, BINARY if self.vocabulary == "binary" else tuple(VERDICTS))

    def errors(self) -> ErrorRates | str:
        return error_rates(self.matrix())


@dataclass(frozen=True)
class Columns:
    """Which columns of the label file hold what."""

    episode: tuple[str, ...] = ("episode",)  # joined with | where several make the id
    truth: str = "truth"
    verdict: str = "verdict"


def path_of(ws: Workspace, judge: str, version: str) -> Path:
    return ws.registry / "calibrations" / f"{judge}@{version}.json"


def load(ws: Workspace, judge: str, version: str) -> Calibration | None:
    """The version's calibration (None: never calibrated); one line naming a damaged file."""
    path = path_of(ws, judge, version)
    if not path.is_file():
        return None
    try:
        return Calibration.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise GovError(f"{ws.rel(path)}: not a calibration ({exc.__class__.__name__})") from None


def every(ws: Workspace) -> list[Calibration]:
    """Every judge version's calibration."""
    folder = ws.registry / "calibrations"
    found = []
    for path in sorted(folder.glob("*@*.json")) if folder.is_dir() else []:
        judge, version = path.stem.split("@", 1)
        record = load(ws, judge, version)
        if record is not None:
            found.append(record)
    return found


def all_errors(ws: Workspace) -> dict[tuple[str, str], ErrorRates | str]:
    """Every calibrated judge version's error rates (or why it cannot correct a rate)."""
    return {(c.judge, c.version): c.errors() for c in every(ws)}


def calibrate(
    registry: Registry,
    judge: str,
    version: str,
    labels: Path,
    *,
    columns: Columns = Columns(),
    where: Mapping[str, str] | None = None,
    truth_map: Mapping[str, str] | None = None,
    verdict_map: Mapping[str, str] | None = None,
    verdicts: Path | None = None,
) -> Calibration:
    """Compute the judge version's confusion matrix on the labels and record it (one commit, an
    audit entry); nothing is written when any of it is wrong."""
    known = registry.judge(judge)
    if version not in [v.version for v in known.versions]:
        raise NotFound(
            f"judge {judge!r} has no version {version!r} "
            f"(known: {', '.join(v.version for v in known.versions)})"
        )
    where = dict(where or {})
    tmap = {**{c: c for c in CLASSES}, **dict(truth_map or {})}
    vmap = dict(verdict_map or {})
    for label, target in tmap.items():
        if target not in CLASSES:
            raise GovError(
                f"truth map: {label}={target}: a true class is one of {', '.join(CLASSES)}"
            )
    for label, target in vmap.items():
        if target not in (*VERDICTS, *BINARY):
            raise GovError(
                f"verdict map: {label}={target}: a verdict is one of "
                f"{', '.join((*VERDICTS, *BINARY))}"
            )
    raw, digest = _read(labels)
    rows = _labelled(labels, raw, columns, where, need_verdict=verdicts is None)
    if verdicts is not None:
        judged = _report_verdicts(verdicts, judge, version)
        missing = [e for e in rows if e not in judged]
        if missing:
            raise GovError(
                f"{labels}: {len(missing)} of {len(rows)} labelled episodes have no verdict of "
                f"{judge}@{version} in {verdicts} (first: {missing[0]!r}): the episode ids do "
                "not match"
            )
        rows = {e: (truth, judged[e], line) for e, (truth, _, line) in rows.items()}
    confusion: dict[str, dict[str, int]] = {}
    used: set[str] = set()
    for episode, (truth_label, verdict_label, line) in rows.items():
        where_ = f"{labels}:{line}" if verdicts is None else f"{labels}:{line} ({episode})"
        truth = tmap.get(truth_label)
        if truth is None:
            raise GovError(
                f"{where_}: true class {truth_label!r} is not in the truth map "
                f"(map it: --truth-map {truth_label}=CLASS, CLASS one of {', '.join(CLASSES)})"
            )
        verdict = vmap.get(verdict_label, verdict_label if not vmap else None)
        if verdict is None or verdict not in (*VERDICTS, *BINARY):
            raise GovError(
                f"{where_}: verdict {verdict_label!r} is not "
                + ("in the verdict map" if vmap else f"one of {', '.join(VERDICTS)}")
                + f" (map it: --verdict-map {verdict_label}=VERDICT)"
            )
        used.add(verdict)
        row = confusion.setdefault(truth, {})
        row[verdict] = row.get(verdict, 0) + 1
    binary = used <= set(BINARY)
    if not binary and used & set(BINARY):
        flagged, gov = sorted(used & set(BINARY)), sorted(used - set(BINARY))
        raise GovError(
            f"{labels}: the verdicts mix a binary monitor's ({', '.join(flagged)}) with gov's "
            f"({', '.join(gov)}): map them to one vocabulary"
        )
    for truth, name in ((TRUE_B, "(b) rationalized"), (TRUE_A, "(a) rejected")):
        if truth not in confusion:
            raise GovError(
                f"{labels}: no labelled {name} episodes: sensitivity to (b) and false alarms on "
                "(a) both need labels; the judge's rate stays uncorrected (nothing recorded)"
            )
    record = Calibration(
        judge=judge,
        version=version,
        labels=labels.name,
        labels_sha256=digest,
        verdicts_from=verdicts.name if verdicts is not None else None,
        where=where,
        truth_map={k: v for k, v in tmap.items() if k != v},
        verdict_map=vmap,
        vocabulary="binary" if binary else "gov",
        episodes=len(rows),
        confusion={t: dict(sorted(r.items())) for t, r in sorted(confusion.items())},
        created=utc_now(),
    )
    errors = record.errors()
    assert isinstance(errors, ErrorRates)
    se, fa = errors.sensitivity, errors.false_alarm
    outcome = (
        f"flags {se.count}/{se.total} of (b) and {fa.count}/{fa.total} of (a) "
        f"on {record.episodes} labelled episodes"
    )
    ws = registry.ws
    with ws.change(f"calibrate judge {judge} version {version}") as change:
        change.write(path_of(ws, judge, version), model_json(record))
        change.body = f"Labels {labels.name} (sha256:{digest}): {outcome}"
        audit.append(
            change,
            "judge_calibrated",
            subject={"judge": judge, "judge_version": version},
            outcome=outcome,
            inputs={"labels": f"sha256:{digest}", "episodes": record.episodes},
            refs={"labels": labels.name, "path": ws.rel(path_of(ws, judge, version))},
        )
    return record


def _read(path: Path) -> tuple[bytes, str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GovError(f"{path}: no such label file") from None
    except IsADirectoryError:
        raise GovError(f"{path}: a folder, not a label file") from None
    digest = hashlib.sha256(raw).hexdigest()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            raise GovError(f"{path}: not a readable gzip file") from None
    return raw, digest


def _records(path: Path, raw: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, record) of a CSV or JSONL file; one line naming the first unreadable one."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GovError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    name = path.name.removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise GovError(f"{path}:{number}: a label must be a JSON object")
                twice = repeated_key(line.encode(), len(record))
            except json.JSONDecodeError as exc:
                raise GovError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            except (RecursionError, ValueError):
                raise GovError(
                    f"{path}:{number}: a value is nested too deeply to read (over "
                    f"{sys.getrecursionlimit()} levels)"
                ) from None
            if twice is not None:
                raise GovError(f"{path}:{number}: field {twice}: given twice in one record")
            yield number, record
    elif name.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        try:
            header = reader.fieldnames or []
        except csv.Error as exc:
            raise GovError(f"{path}:{reader.line_num}: not CSV: {exc}") from None
        doubled = sorted({c for c in header if header.count(c) > 1})
        if doubled:
            raise GovError(
                f"{path}:1: column {doubled[0]!r} appears twice in the header (which one is meant?)"
            )
        while True:
            start = reader.line_num + 1  # where the next record begins
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # an unterminated quote: not the rest of the file as text
                raise GovError(f"{path}:{start}: not CSV: {exc}") from None
            yield reader.line_num, record
    else:
        raise GovError(f"{path}: a label file is .csv or .jsonl (gzip too)")


def _labelled(
    path: Path,
    raw: bytes,
    columns: Columns,
    where: Mapping[str, str],
    *,
    need_verdict: bool,
) -> dict[str, tuple[str, str, int]]:
    """episode id -> (true class label, verdict label, line), the rows `where` selects."""
    rows: dict[str, tuple[str, str, int]] = {}
    needed = [*columns.episode, columns.truth, *where]
    if need_verdict:
        needed.append(columns.verdict)
    checked = False
    for line, record in _records(path, raw):
        if not checked:
            absent = [c for c in needed if c not in record]
            if absent:
                hint = (
                    " (or give the judge's report of these episodes to read verdicts from)"
                    if absent == [columns.verdict]
                    else ""
                )
                raise GovError(f"{path}:{line}: no column {absent[0]!r}{hint}")
            checked = True
        if None in record:  # csv.DictReader's key for the fields past the header's
            raise GovError(f"{path}:{line}: more fields than the header has columns")
        cell = functools.partial(_cell, path, line, record)
        if any(cell(c) != v for c, v in where.items()):
            continue
        parts = [cell(c, ids=True) for c in columns.episode]
        if any(p is None or p == "" for p in parts):
            raise GovError(f"{path}:{line}: no episode id")
        episode = "|".join(str(p) for p in parts)
        truth = cell(columns.truth)
        if truth is None or truth == "":
            raise GovError(f"{path}:{line}: episode {episode!r} has no true class")
        verdict = cell(columns.verdict) if need_verdict else None
        if need_verdict and (verdict is None or verdict == ""):
            raise GovError(f"{path}:{line}: episode {episode!r} has no verdict")
        if episode in rows:
            raise GovError(
                f"{path}:{line}: episode {episode!r} is labelled twice (first at line "
                f"{rows[episode][2]})"
            )
        rows[episode] = (truth, verdict or "", line)
    if not rows:
        selected = f" where {', '.join(f'{c}={v}' for c, v in where.items())}" if where else ""
        raise GovError(f"{path}: no labelled episodes{selected}")
    return rows


def _cell(
    path: Path, line: int, record: Mapping[str, Any], column: str, *, ids: bool = False
) -> str | None:
    """A label file's value as text (None: absent): a string, an integer, or (not in an id)
    true or false as JSON writes them. A number with a fraction, a list or an object is named:
    read as Python prints it, it would match nothing, or an id that is not one."""
    value = record.get(column)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) and not ids:
        return "true" if value else "false"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    what = "a string or an integer" if ids else "a string, an integer, true or false"
    raise GovError(f"{path}:{line}: field {column}: {json.dumps(value)[:40]} is not {what}")


def _report_verdicts(path: Path, judge: str, version: str) -> dict[str, str]:
    """episode id -> verdict of judge@version in an episode-level report (JSONL, gzip too)."""
    raw, _ = _read(path)
    found: dict[str, str] = {}
    for line, record in _records(path, raw):
        if record.get("judge") != judge or str(record.get("judge_version")) != version:
            continue
        episode, verdict = record.get("episode"), record.get("verdict")
        if episode is None or verdict not in VERDICTS:
            raise GovError(f"{path}:{line}: not a judged episode (episode and verdict)")
        if str(episode) in found and found[str(episode)] != verdict:
            raise GovError(
                f"{path}:{line}: episode {episode!r} has two verdicts of {judge}@{version}: the "
                "labels cannot say which one they calibrate"
            )
        found[str(episode)] = str(verdict)
    if not found:
        raise GovError(f"{path}: no verdicts of {judge}@{version}")
    return found


def document(record: Calibration) -> dict[str, Any]:
    """The calibration as `--format json` prints it: the confusion matrix beside the estimates
    (each true class's verdict shares, sensitivity to (b), false alarms on (a), 95% intervals)."""
    errors = record.errors()
    shares = record.matrix().shares()
    return {
        **record.model_dump(mode="json"),
        "estimates": {
            truth: {v: _share(s) for v, s in row.items()} for truth, row in shares.items()
        },
        "sensitivity": _share(errors.sensitivity) if isinstance(errors, ErrorRates) else None,
        "false_alarm": _share(errors.false_alarm) if isinstance(errors, ErrorRates) else None,
        "corrects": isinstance(errors, ErrorRates) and errors.informative,
    }


def correct(series: Series, errors: ErrorRates | str | None) -> None:
    """Fill in the series' rates corrected for its judge's error, or say why they are not."""
    key = series.key
    if series.metric != "rationalization_rate":
        series.correction = (
            "uncorrected: a calibration measures (b) against (a), so only the rationalization "
            "rate is corrected"
        )
    elif errors is None:
        series.correction = (
            f"uncorrected: judge {key.judge} version {key.judge_version} has no calibration"
        )
    elif isinstance(errors, str):
        series.correction = f"uncorrected: {errors}"
    else:
        se, fa = errors.sensitivity, errors.false_alarm
        rates = f"flags {se.count}/{se.total} of (b), {fa.count}/{fa.total} of (a)"
        if not errors.informative:
            series.correction = (
                f"uncorrected: judge too noisy, it does not flag (b) clearly more often than (a) "
                f"({rates})"
            )
            return
        series.correction = f"corrected for the judge's error ({rates})"
        series.corrected = {p.ref: corrected(p.k, p.n, errors) for p in series.points if p.n}


def _share(s: Share) -> dict[str, float | int]:
    return {"count": s.count, "total": s.total, "mean": s.mean, "low": s.low, "high": s.high}
