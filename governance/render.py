"""How the `gov` command shows a result: as a table or text, JSON, CSV, JUnit XML, GitHub
annotations or Markdown. The CLI's one way to render; the library never prints.

`emit(result, fmt, text)` prints any API result in the chosen format: JSON of any model or
dataclass; the table or text view a command passes as `text`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel

from .stats.intervals import wilson
from .stats.series import Point, Series

if TYPE_CHECKING:
    from rich.console import Console

    from .api import (
        JudgeDetail,
        Lint,
        Metrics,
        Pressure,
        Promotion,
        RollbackPlan,
        RunDetail,
        RunListing,
        SchemaFile,
        TranscriptsWritten,
    )
    from .audit import Anchor, Shown, Verification
    from .backtest import Backtest, CountsBacktest
    from .calibration import Calibration
    from .compare import Comparison
    from .example import ExampleResult
    from .ingest import IngestResult
    from .judging.runner import Outcome as JudgeOutcome
    from .lake import Aggregated
    from .models import Checkpoint, Environment, Flag, Judge, Run
    from .policy_tools import CaseResult, Explanation
    from .records import AuditEntry, Decision
    from .registry import Summary
    from .rollback import Recommendation
    from .stats.agreement import Estimate
    from .stats.calibration import Corrected, Share
    from .stats.result import Result
    from .workspace import InitResult


# -- the generic formats ----------------------------------------------------------------------
def _xml_text(text: str) -> str:
    """Text for an XML element: &, < and > escaped (xml.sax's helpers import an HTTP client)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(text: str) -> str:
    """An XML attribute's value, double-quoted, with what would end or reshape it escaped."""
    text = _xml_text(text)
    for raw, ref in (('"', "&quot;"), ("\n", "&#10;"), ("\r", "&#13;"), ("\t", "&#9;")):
        text = text.replace(raw, ref)
    return f'"{text}"'


def _point_json(point: Point, corrected: Corrected | None) -> Any:
    """A point as JSON: what jsonable(point) gives, made directly (a long, wide run's metrics
    hold millions of points)."""
    interval = point.interval
    shown: dict[str, Any] = {
        "run": point.run,
        "step": point.step,
        "k": point.k,
        "n": point.n,
        "value": point.value,
        "low": interval[0] if interval is not None else None,
        "high": interval[1] if interval is not None else None,
    }
    if corrected is not None:  # the rate corrected for the judge's error (gov metrics --corrected)
        shown["corrected"] = {
            "point": corrected.point,
            "low": corrected.low,
            "high": corrected.high,
        }
    return shown


def _unknown_unmeasured(value: Any, found: dict[str, Any]) -> dict[str, Any]:
    """A restore point's P(contaminated) is null where the model could not measure it (the
    series' first judged checkpoint: its 0 is an assumption, which a script would read as
    "certainly clean")."""
    if getattr(value, "known_clean", True) is False and "p_contaminated" in found:
        found["p_contaminated"] = None
    return found


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _unknown_unmeasured(value, value.model_dump(mode="json", exclude_none=True))
    if isinstance(value, Series):
        return {
            "metric": value.metric,
            "environment": value.key.environment,
            "environment_version": value.key.environment_version,
            "judge": value.key.judge,
            "judge_version": value.key.judge_version,
            "points": [_point_json(p, value.corrected.get(p.ref)) for p in value.points],
            **({"unjudged": value.unjudged} if value.unjudged else {}),
            **({"correction": value.correction} if value.correction else {}),
        }
    if isinstance(value, Point):
        return _point_json(value, None)
    if is_dataclass(value) and not isinstance(value, type):
        return _unknown_unmeasured(value, {k: jsonable(getattr(value, k)) for k in asdict(value)})
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity: no estimate, or no upper bound
    return value


def echo_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), indent=2, default=str))


def echo_json_compact(items: list[Any]) -> None:
    """A JSON list on one line, item by item (never the whole text in memory), by the standard
    library's C encoder: an indented dump of millions of values takes minutes in pure Python."""
    for i, item in enumerate(items):
        text = json.dumps(jsonable(item), separators=(",", ":"), default=str)
        click.echo(("[" if i == 0 else ",") + text, nl=False)
    click.echo("]" if items else "[]")


# Metrics with more points than this are written compact (one line): at 2,000 checkpoints x 300
# environments, five metrics are three million points.
COMPACT_POINTS = 100_000


def _console() -> Console:
    from rich.console import Console  # only the commands that draw tables pay its import

    # Not a terminal (CI logs, pipes): no colour, and wide enough that tables do not fold.
    return Console(width=None if sys.stdout.isatty() else 140, highlight=False, soft_wrap=False)


def count(n: int, word: str, words: str | None = None) -> str:
    """`n word`, in the plural unless n is 1: "1 entry", "2 entries"."""
    if n == 1:
        return f"1 {word}"
    many = words or (word[:-1] + "ies" if word.endswith("y") else word + "s")
    return f"{n} {many}"


def printable(text: str) -> str:
    """User text as it may be shown on a terminal: control characters (an ANSI escape in a
    --reason, a newline in a note) written out as escapes, never sent raw."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text
    )


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")  # a narrow terminal wraps names, never cuts
    for row in rows:  # as text: brackets in user text are not markup
        grid.add_row(*(Text("" if v is None else printable(str(v))) for v in row))
    console = _console()
    console.print(Text(printable(title), style="bold"), soft_wrap=True)
    console.print(grid)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key:<{width}}  {'' if value is None else printable(str(value))}")


TEXT_FORMATS = ("csv", "junit", "github", "markdown")


@dataclass(frozen=True)
class View:
    """The formats a command offers for its result, and how each is drawn: `table` (tables or
    text on the terminal, the default) prints; `json` prints the JSON of the result (or of the
    part `json` picks); the text formats return the text to print. JSON is always offered."""

    table: Callable[..., None] | None = None
    json: Callable[[Any], None] = echo_json
    csv: Callable[[Any], str] | None = None
    junit: Callable[[Any], str] | None = None
    github: Callable[[Any], str] | None = None
    markdown: Callable[[Any], str] | None = None

    @property
    def formats(self) -> tuple[str, ...]:
        """The `--format` choices, the default first."""
        first = ("table",) if self.table is not None else ()
        return (*first, "json", *(f for f in TEXT_FORMATS if getattr(self, f) is not None))


def emit(
    result: Any, fmt: str, view: View | Callable[..., None] | None = None, **options: Any
) -> None:
    """Print `result` as `fmt`, one of the formats `view` offers (a bare function is a view of
    only a table); `options` go to the table view (such as `show_all`)."""
    if not isinstance(view, View):
        view = View(table=view)
    if fmt not in view.formats:
        raise ValueError(f"no {fmt} view of {type(result).__name__}: one of {view.formats}")
    if fmt == "table":
        assert view.table is not None
        view.table(result, **options)
    elif fmt == "json":
        view.json(result)
    else:
        render: Callable[[Any], str] = getattr(view, fmt)
        click.echo(render(result), nl=False)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def rate(counts: tuple[int, int]) -> str:
    k, n = counts
    if n == 0:
        return "insufficient evidence"
    low, high = wilson(k, n)
    return f"{k}/{n} = {k / n:.2%} [{low:.2%}, {high:.2%}]"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n) or "none"


# -- the workspace ----------------------------------------------------------------------------
def summary(s: Summary) -> None:
    fields(
        [
            ("workspace", s.root),
            ("git HEAD", (s.head or "no commit")[:12]),
            ("DVC remote", s.dvc_remote or "none (artifacts only in the local DVC cache)"),
            ("runs", s.runs),
            ("checkpoints", f"{s.checkpoints} ({_counts(s.checkpoints_by_status)})"),
            (
                "environments",
                f"{sum(s.environments_by_status.values())} ({_counts(s.environments_by_status)})",
            ),
            ("judges", s.judges),
            ("reports", f"{s.reports} ingested ({count(s.judgments, 'judgment')})"),
        ]
    )


def _parent(run: Any) -> str:
    return f"{run.parent_run}@{run.forked_from_step}" if run.parent_run else "-"


def run_list(found: list[RunListing]) -> None:
    table(
        "runs",
        ["run", "parent", "checkpoints", "created", "note"],
        [
            [r.run.id, _parent(r.run), r.checkpoints, r.run.created.isoformat(), r.run.note]
            for r in found
        ],
    )


def run_list_json(found: list[RunListing]) -> None:
    echo_json([{**jsonable(r.run), "checkpoints": r.checkpoints} for r in found])


def initialised(result: InitResult) -> None:
    if not result.created:
        click.echo(f"{result.root} is already a gov workspace; nothing to do")
        return
    click.echo(f"initialised gov workspace in {result.root} (commit {result.commit or '-'}):")
    for path in result.created:
        click.echo(f"  {path}")


def promoted(result: Promotion) -> None:
    how = (
        f" (override: {printable(result.override)})"
        if result.override
        else f" (check {result.outcome})"
    )
    click.echo(f"promoted {result.checkpoint}{how}")


def flag_acked(flag: Flag) -> None:
    click.echo(f"acknowledged the flag on {flag.environment} ({flag.acknowledged_by})")


def run_added(record: Run) -> None:
    click.echo(f"registered run {record.id}")


def run_show(detail: RunDetail) -> None:
    record = detail.run
    steps = [c.step for c in detail.checkpoints]
    fields(
        [
            ("run", record.id),
            ("created", record.created.isoformat()),
            ("forked from", _parent(record)),
            ("lineage", " -> ".join(detail.lineage)),
            (
                "checkpoints",
                f"{len(steps)}" + (f" (steps {steps[0]}-{steps[-1]})" if steps else ""),
            ),
            ("note", record.note),
        ]
    )


_PINNED = {
    "version": "each object's version: the framework deleting it cannot lose it",
    "etag": "ETag only: the bucket keeps no versions, so a delete or overwrite loses it; turn "
    "versioning on to pin it",
}


def checkpoint_added(c: Checkpoint) -> None:
    click.echo(f"registered checkpoint {c.ref} ({c.artifact}, md5 {c.artifact_md5})")
    if c.artifact_pinned is not None:
        click.echo(f"  pinned by {_PINNED[c.artifact_pinned]}")


def checkpoint_list(found: list[Checkpoint]) -> None:
    table(
        "checkpoints",
        ["checkpoint", "status", "created", "artifact", "md5", "environments"],
        [
            [
                c.ref,
                c.status.value,
                c.created.isoformat(),
                c.artifact,
                c.artifact_md5[:10],
                len(c.exposure),
            ]
            for c in found
        ],
    )


def checkpoint_show(record: Checkpoint) -> None:
    fields(
        [
            ("checkpoint", record.ref),
            ("status", record.status.value),
            ("created", record.created.isoformat()),
            ("artifact", record.artifact),
            ("md5", record.artifact_md5),
            ("size", record.artifact_size),
            ("pinned by", _PINNED[record.artifact_pinned] if record.artifact_pinned else None),
            ("note", record.note),
        ]
    )
    table(
        "exposure",
        ["environment", "version", "hash", "weight"],
        [
            [e.environment, f"v{e.version}", e.hash[7:19], f"{e.weight:.4f}"]
            for e in record.exposure
        ],
    )


def env_added(e: Environment) -> None:
    click.echo(f"registered environment {e.id} v1 ({e.current.hash})")


def env_versioned(e: Environment) -> None:
    click.echo(f"environment {e.id} is now v{e.current.number} ({e.current.hash})")


def env_list(found: list[Environment]) -> None:
    table(
        "environments",
        ["environment", "status", "version", "hash", "description"],
        [
            [e.id, e.status.value, f"v{e.current.number}", e.current.hash[7:19], e.description]
            for e in found
        ],
    )


def env_show(record: Environment) -> None:
    fields(
        [
            ("environment", record.id),
            ("status", record.status.value),
            ("description", record.description),
        ]
    )
    table(
        "versions",
        ["version", "hash", "created", "note"],
        [[f"v{v.number}", v.hash, v.created.isoformat(), v.note] for v in record.versions],
    )


def judge_added(j: Judge) -> None:
    click.echo(f"registered judge {j.id} version {j.current.version} ({j.current.rubric_hash})")


def judge_list(found: list[Judge]) -> None:
    table(
        "judges",
        ["judge", "version", "rubric hash", "created", "description"],
        [
            [j.id, v.version, v.rubric_hash[7:19], v.created.isoformat(), j.description]
            for j in found
            for v in j.versions
        ],
    )


def judge_show(detail: JudgeDetail) -> None:
    record = detail.judge
    fields([("judge", record.id), ("description", record.description)])
    table(
        "versions",
        ["version", "rubric hash", "created", "calibrated", "note"],
        [
            [
                v.version,
                v.rubric_hash,
                v.created.isoformat(),
                "yes" if v.version in detail.calibrations else "no: its rates are uncorrected",
                v.note,
            ]
            for v in record.versions
        ],
    )
    for calibration in detail.calibrations.values():
        click.echo("")
        calibrated(calibration)


def _calibration_document(c: Calibration) -> dict[str, Any]:
    from .calibration import document

    return document(c)


def judge_show_json(detail: JudgeDetail) -> None:
    from .calibration import document

    echo_json(
        {
            **jsonable(detail.judge),
            "calibrations": {v: document(c) for v, c in detail.calibrations.items()},
        }
    )


def _share(s: Share) -> str:
    # the estimate is the posterior mean, drawn towards a half on few labels: not count/total,
    # and not written as if it were (1/1 is an estimate of 75%)
    return f"{s.count}/{s.total}, estimate {s.mean:.1%} (95%: {s.low:.1%} .. {s.high:.1%})"


def calibrated(c: Calibration) -> None:
    """A calibration: where its labels came from, how right the judge is, the confusion."""
    errors = c.errors()
    rows: list[tuple[str, Any]] = [
        ("calibration", f"{c.judge}@{c.version} ({c.vocabulary} verdicts)"),
        ("labels", f"{c.labels} (sha256:{c.labels_sha256[:16]}), {c.episodes} episodes"),
    ]
    if c.verdicts_from:
        rows.append(("verdicts from", c.verdicts_from))
    if c.where:
        rows.append(("rows where", ", ".join(f"{k}={v}" for k, v in c.where.items())))
    if isinstance(errors, str):
        rows.append(("correction", errors))
    else:
        rows.append(("flags (b)", _share(errors.sensitivity) + "  sensitivity"))
        rows.append(("flags (a)", _share(errors.false_alarm) + "  false alarms"))
        rows.append(
            (
                "correction",
                "rates can be corrected (gov metrics --corrected, corrected: true)"
                if errors.informative
                else "the judge does not flag (b) clearly more than (a): it cannot resolve a rate",
            )
        )
    fields(rows)
    shares = c.matrix().shares()
    verdicts = c.matrix().verdicts
    table(
        "confusion (true class: verdicts, share with 95% interval)",
        ["true class", "episodes", *verdicts],
        [
            [truth, c.matrix().total(truth)]
            + [
                f"{row[v].count} ({row[v].mean:.1%}, {row[v].low:.1%} .. {row[v].high:.1%})"
                for v in verdicts
            ]
            for truth, row in shares.items()
        ],
    )


def _estimate(e: Estimate | None, digits: int = 2) -> str:
    if e is None or e.value != e.value:  # NaN: no estimate
        return "-"
    return f"{e.value:.{digits}f} (95%: {e.low:.{digits}f} .. {e.high:.{digits}f})"


def judge_comparison(c: Comparison) -> None:
    fields(
        [
            ("judge", c.judge),
            ("versions", f"{c.first} (rows) against {c.second} (columns)"),
            (
                "compared on",
                f"{count(c.episodes, 'episode')} judged by both"
                if c.basis == "episodes"
                else f"the checkpoints both judged ({count(c.episodes, 'judgment')})",
            ),
            ("agreement", "-" if c.agreement is None else f"{c.agreement:.1%}"),
            ("Cohen's kappa", _estimate(c.kappa)),
            ("rationalization rate ratio", _estimate(c.ratio)),
        ]
    )
    if c.note:
        click.secho(c.note, fg="yellow")
    if c.basis == "episodes":
        verdicts = list(c.confusion)
        table(
            "verdicts",
            [f"{c.first} \\ {c.second}", *verdicts],
            [[a, *(c.confusion[a][b] for b in verdicts)] for a in verdicts],
        )
    if c.environments:
        table(
            "rationalization rate by environment",
            ["environment", "episodes", c.first, c.second, f"ratio {c.second} / {c.first}"],
            [
                [
                    e.environment,
                    e.episodes,
                    f"{e.first_rate:.2%}",
                    f"{e.second_rate:.2%}",
                    _estimate(e.ratio),
                ]
                for e in c.environments
            ],
        )


def judge_run(done: JudgeOutcome) -> None:
    click.echo(
        f"{done.report}: {count(done.judged, 'episode')} judged, {done.unjudged} without a verdict"
        + (f" (listed in {done.unjudged_path})" if done.unjudged else "")
    )
    for why, n in done.reasons.most_common():
        click.echo(f"  {n} x {why}")
    click.echo(
        f"requests sent: {done.sent}; answers from the cache: {done.cached}; tokens: "
        f"{done.prompt_tokens:,} in, {done.completion_tokens:,} out"
        + (f"; cost {done.cost:.4f}" if done.cost is not None else "")
    )
    if done.dropped_quotes:
        click.echo(f"quoted spans not in the chain of thought, dropped: {done.dropped_quotes}")


# -- reports and metrics ----------------------------------------------------------------------
def transcripts_written(result: TranscriptsWritten) -> None:
    steps = result.steps
    span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
    click.echo(
        f"{result.out}: {count(result.transcripts, 'transcript')} ({span}; "
        f"{', '.join(result.environments)})"
    )


def aggregated(result: Aggregated) -> None:
    extra = f", {result.duplicates} repeated judgments counted once" if result.duplicates else ""
    click.echo(
        f"{result.lake}: {count(result.files, 'file')} ({result.bytes:,} bytes), "
        f"{count(result.records, 'record')}, {result.counted} judgments counted in "
        f"{count(result.groups, 'group')}{extra} by {result.engine} -> {result.out}"
    )
    click.echo(f"manifest (every file's size and md5) -> {result.manifest}")
    click.echo(f"keep them with: gov ingest {result.out}")


def ingested(result: IngestResult) -> None:
    if result.note:
        click.echo(result.note)
    for source, md5 in result.unchanged:
        click.echo(f"{source}: already ingested (md5 {md5}); nothing changed")
    for entry in result.ingested:
        extra = (
            f", {entry.duplicates} repeated judgments not counted again" if entry.duplicates else ""
        )
        if entry.replaced:
            extra += f", {entry.replaced} verdicts replacing earlier ones"
        linked = (
            " (hard-linked, as DVC is set to link: the report's file is now read-only)"
            if entry.md5 in result.linked
            else ""
        )
        click.echo(
            f"{entry.source}: {count(entry.records, 'record')}, {entry.counted} judgments "
            f"counted in {count(entry.groups, 'group')}{extra} -> {entry.path}{linked}"
        )
    if result.commit:
        click.echo(f"committed {result.commit[:12]}")


METRICS_CSV = (
    "metric",
    "run",
    "step",
    "environment",
    "environment_version",
    "judge",
    "judge_version",
    "k",
    "n",
    "value",
    "low",
    "high",
)


def _plots_written(result: Metrics) -> str:
    assert result.plots is not None
    folder = result.plots[0].parent if result.plots else "the folder"
    return f"wrote {len(result.plots)} series to {folder}"


def metrics_csv(result: Metrics) -> str:
    """Every series asked for, a row per point (or, with --dvc-plots, what was written)."""
    if result.plots is not None:
        return _plots_written(result) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(METRICS_CSV)
    for s in result.series:
        for p in s.points:
            writer.writerow(
                [
                    s.metric,
                    p.run,
                    p.step,
                    s.environment,
                    s.environment_version,
                    s.judge,
                    s.judge_version,
                    p.k,
                    p.n,
                    _num(p.value),
                    _num(p.low),
                    _num(p.high),
                ]
            )
    return buffer.getvalue()


def metrics_json(result: Metrics) -> None:
    if result.plots is not None:
        click.echo(_plots_written(result))
        return
    if sum(len(s.points) for s in result.series) > COMPACT_POINTS:
        echo_json_compact(result.series)
    else:
        echo_json(result.series)


def metrics_table(result: Metrics) -> None:
    """The headline metrics' series, a table each (or, with --dvc-plots, what was written)."""
    if result.plots is not None:
        click.echo(_plots_written(result))
        return
    found = [s for s in result.series if s.metric in result.headline]
    if not found:
        click.echo("no judgments ingested yet for this selection: see `gov ingest`")
        return
    judges_per_env: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for s in found:
        judges_per_env.setdefault((s.metric, s.environment), set()).add((s.judge, s.judge_version))
    for s in found:
        rows = [
            [f"{p.run}@{p.step}", p.k, p.n, pct(p.value), f"[{pct(p.low)}, {pct(p.high)}]"]
            if p.value is not None
            else [f"{p.run}@{p.step}", p.k, p.n, "-", "insufficient evidence (n = 0)"]
            for p in s.points
        ]
        columns = ["checkpoint", "k", "n", "value", "95% interval"]
        if s.corrected:  # the rate corrected for the judge's error, beside the observed one
            columns += ["corrected", "corrected 95%"]
            for row, p in zip(rows, s.points, strict=True):
                c = s.corrected.get(p.ref)
                row += [pct(c.point), f"[{pct(c.low)}, {pct(c.high)}]"] if c else ["-", "-"]
        if s.unjudged:  # the judge's failures: not in n, and the user must see them
            columns.append("no verdict")
            for row, p in zip(rows, s.points, strict=True):
                row.append(s.unjudged.get(f"{p.run}@{p.step}", 0))
        table(
            f"{s.metric} · {s.environment} v{s.environment_version} · judge {s.judge} "
            f"{s.judge_version}",
            columns,
            rows,
        )
        if s.correction:
            click.echo(s.correction)
        shown = {f"{p.run}@{p.step}" for p in s.points}
        if lost := sorted(ref for ref in s.unjudged if ref not in shown):
            click.echo(f"no verdict for any episode at: {', '.join(lost)}")
    for (metric, env), judges in judges_per_env.items():
        if len(judges) > 1:
            listed = ", ".join(f"{j} {v}" for j, v in sorted(judges))
            click.echo(
                f"note: {env} has {len(judges)} judge series for {metric} ({listed}): "
                "shown separately, not pooled"
            )


# -- gates ------------------------------------------------------------------------------------
def decision_text(decision: Decision, show_all: bool = False) -> None:
    click.secho(
        f"decision: {decision.outcome.upper()} at {decision.checkpoint}",
        bold=True,
        fg={"pass": "green", "warn": "yellow", "block": "red"}[decision.outcome],
    )
    rows = []
    clear = thin = 0
    for r in decision.results:
        if not show_all and r.status == "clear":
            clear += 1
            continue
        if not show_all and r.status == "insufficient" and r.policy not in decision.gating:
            thin += 1
            continue
        probability = "-" if r.probability is None else f"{r.probability:.3f}"
        numbers = (
            "-"
            if r.value is None
            else f"{r.k}/{r.n} = {pct(r.value)} [{pct(r.low)}, {pct(r.high)}]"
        )
        rows.append([r.policy, r.series.label, r.status, numbers, probability, r.reason])
    if rows:
        table("results", ["policy", "series", "result", "at this checkpoint", "P", "why"], rows)
    if clear or thin:
        click.echo(
            f"{clear} more results are clear and {thin} have too little evidence to say, "
            "which this decision does not count against the checkpoint (--all lists them)"
        )
    empty = [r for r in decision.results if r.reason.startswith("no judgments for")]
    if empty and len(empty) == len(decision.results):
        click.echo(f"no evidence: nothing judged up to {decision.checkpoint} (see `gov ingest`)")
    if decision.flagged:
        click.echo(f"flagged for redesign: {', '.join(decision.flagged)}")
    fired = {a for acts in decision.actions.values() for a in acts}
    if "recommend_rollback" in fired:
        click.echo("a policy recommends a rollback: see `gov rollback recommend`")
    if "require_review" in fired:
        click.echo("a policy requires a human review of this checkpoint")
    click.echo(f"inputs digest {decision.digest[:16]} (registry, policies, reports, judges)")


def flag_list(found: list[Flag]) -> None:
    table(
        "flags",
        ["environment", "version", "status", "raised at", "policies"],
        [
            [
                f.environment,
                f"v{f.version}",
                f.status,
                f.checkpoint,
                ", ".join(sorted({e.policy for e in f.evidence})),
            ]
            for f in found
        ],
    )


def flag_show(flag: Flag) -> None:
    fields(
        [
            ("environment", f"{flag.environment} (flagged version v{flag.version})"),
            ("status", flag.status),
            ("raised at", flag.checkpoint),
            ("decision", flag.decision[:16]),
            (
                "acknowledged",
                f"{flag.acknowledged_by}: {printable(flag.acknowledged_reason or '')}"
                if flag.acknowledged_by
                else None,
            ),
            ("resolved by", f"v{flag.resolved_by_version}" if flag.resolved_by_version else None),
        ]
    )
    table(
        "evidence",
        ["policy", "series", "why"],
        [[e.policy, e.series, e.reason] for e in flag.evidence],
    )
    if flag.status != "resolved":
        click.echo(
            f"resolve it by registering the redesign: gov env version {flag.environment} ..."
        )


# -- policies ---------------------------------------------------------------------------------
def lint(result: Lint) -> None:
    for finding in result.findings:
        click.echo(str(finding), err=finding.level == "error")
    warnings = len(result.findings) - result.errors
    click.echo(
        f"{_counted(result.files, 'policy file')}, {_counted(result.errors, 'error')}, "
        f"{_counted(warnings, 'warning')}"
    )


def _counted(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def policy_tests(results: list[CaseResult]) -> None:
    for r in results:
        mark = "ok  " if r.passed else "FAIL"
        click.echo(
            f"{mark} {r.policy}: {r.case}"
            + ("" if r.passed else f" (expected {r.expected}, got {r.got}: {r.reason})")
        )
    failed = sum(1 for r in results if not r.passed)
    click.echo(f"{len(results) - failed} passed, {failed} failed")


def explanation(found: Explanation) -> None:
    click.echo(
        f"policy {found.policy} ({found.path}, sha256 {found.sha256[:12]}): {found.description}"
    )
    click.echo(
        f"1. metric {found.metric}, scope {found.scope}, judge {found.judge}; each judge "
        "version is its own series"
    )
    click.echo(
        f"2. history: the lineage of {found.run} up to and including {found.checkpoint}; "
        "nothing later"
    )
    if not found.series:
        click.echo("3. no judgments in this history: no evidence, the result is insufficient")
        return
    click.echo(f"3. {len(found.series)} series; for each, the condition at {found.checkpoint}:")
    for step in found.series:
        click.echo(f"   - {step.series}: {step.status.upper()}")
        if step.at is not None and step.interval is not None:
            (k, n), (low, high) = step.at, step.interval
            click.echo(
                f"     at {found.checkpoint}: k = {k}, n = {n}, rate {k / n:.3%} "
                f"(95% Wilson [{low:.3%}, {high:.3%}]); posterior Beta({k + 0.5}, "
                f"{n - k + 0.5}); minimum evidence n >= {found.min_evidence}"
            )
        if step.baseline is not None:
            k0, n0 = step.baseline
            click.echo(
                f"     baseline: {k0}/{n0} = {k0 / n0:.3%}, "
                f"posterior Beta({k0 + 0.5}, {n0 - k0 + 0.5})"
            )
        click.echo(f"     {step.reason}")


def schema_files(found: list[SchemaFile]) -> None:
    for f in found:
        click.echo(f"{f.name:<12} {f.describes}")


LISTED_RUNS = 10  # runs named one by one in a counts backtest's summary; past it, counted


def counts_backtest(result: CountsBacktest) -> None:
    if len(result.runs) <= LISTED_RUNS:
        runs = ", ".join(f"{b.run} ({count(b.checkpoints, 'checkpoint')})" for b in result.runs)
    else:
        runs = (
            f"{count(len(result.runs), 'run')}, "
            f"{count(sum(b.checkpoints for b in result.runs), 'checkpoint')} in all"
        )
    click.echo(f"replayed {result.source}: {runs}; alpha {result.alpha}")
    if not result.alarms:
        click.echo("no policy would have fired")
        return
    quiet = [b.run for b in result.runs if not b.alarms]
    table(
        "first alarms",
        ["run", "first fired at", "policy", "series", "outcome", "restore point"],
        [
            [
                run,
                a.checkpoint,
                a.policy,
                a.series.label,
                a.outcome,
                (a.restore or "-")
                + (" (first checkpoint: not known clean)" if a.known_clean is False else ""),
            ]
            for run, a in result.alarms
        ],
    )
    if quiet:
        more = len(quiet) - LISTED_RUNS
        click.echo(
            f"no policy fired on {count(len(quiet), 'run')}: {', '.join(quiet[:LISTED_RUNS])}"
            + (f" and {more} more" if more > 0 else "")
        )


def backtest(result: Backtest) -> None:
    blocks = sum(1 for o in result.outcomes.values() if o == "block")
    warns = sum(1 for o in result.outcomes.values() if o == "warn")
    click.echo(
        f"replayed {count(result.checkpoints, 'checkpoint')} of {result.run}: {blocks} would be "
        f"blocked, {warns} would warn"
    )
    if result.alarms:
        table(
            "first alarms",
            ["first fired at", "policy", "series", "actions", "checkpoints fired", "restore point"],
            [
                [
                    a.checkpoint,
                    a.policy,
                    a.series.label,
                    ", ".join(a.actions),
                    a.fired_at,
                    a.restore or "-",
                ]
                for a in result.alarms
            ],
        )
    for env, ref in sorted(result.flagged.items()):
        click.echo(f"would flag {env} at {ref}")
    if result.blocked_promotions:
        click.echo(
            f"promotions the policies would have blocked: {', '.join(result.blocked_promotions)}"
        )
    else:
        click.echo("no promoted checkpoint would have been blocked")


# -- rollback ---------------------------------------------------------------------------------
def recommendation(rec: Recommendation) -> None:
    if rec.restore is None:
        click.echo(f"no restore point: {rec.reason}")
    else:
        click.secho(f"restore point: {rec.restore}", bold=True)
        risk = (
            f"P(already contaminated) = {rec.p_contaminated:.4f} (alpha {rec.alpha})"
            if rec.known_clean
            else "P(already contaminated): unknown"
        )
        click.echo(
            f"  {risk}; training given up: {count(rec.checkpoints_lost, 'checkpoint')}, "
            f"{count(rec.steps_lost, 'step')}"
        )
        if not rec.known_clean:
            click.secho(f"  {rec.reason}", fg="yellow")
        if rec.set_by:
            click.echo(f"  placed by {rec.set_by} (the earliest restore of the flagged series)")
        if rec.far_back:
            click.echo(f"  why so far back: {rec.far_back}")
    for e in (e for e in rec.flagged if e.scope == "run"):
        click.echo(
            f"run-wide rise ({e.metric}, {e.judge}): P(rise) {e.p_rise:.3f}, onset ~ {e.onset}"
            + (
                f" (90%: {e.onset_interval[0]} .. {e.onset_interval[1]})"
                if e.onset_interval
                else ""
            )
            + f", P(onset <= restore) {e.p_contaminated:.4f}"
        )
        if e.leading:
            click.echo(f"  carried by: {', '.join(e.leading)} (no environment flagged for it)")
    if any(e.scope == "environment" for e in rec.flagged):
        table(
            "environments to redesign",
            [
                "environment",
                "metric",
                "judge",
                "P(rise)",
                "onset (median)",
                "90% credible interval",
                "P(onset <= restore)",
            ],
            [
                [
                    e.environment + (f" v{e.environment_version}" if e.environment_version else ""),
                    e.metric,
                    e.judge,
                    f"{e.p_rise:.3f}",
                    e.onset,
                    f"{e.onset_interval[0]} .. {e.onset_interval[1]}" if e.onset_interval else "-",
                    f"{e.p_contaminated:.4f}" if e.known_clean else "unknown (first judged)",
                ]
                for e in rec.flagged
                if e.scope == "environment"
            ],
        )
    if rec.fine:
        click.echo(f"not flagged (fine as far as the recorded checks say): {', '.join(rec.fine)}")
    for line in rec.skipped:
        click.echo(f"skipped (safer, not restorable): {line}")


def rollback_plan(plan: RollbackPlan) -> None:
    rec = plan.recommendation
    done = plan.applied
    if done is None:
        recommendation(rec)
        if rec.restore is not None:
            click.echo(
                f"dry run: with --yes, gov would fork a new run from {rec.restore}, write its "
                f"artifact to {plan.target}, and put "
                f"{', '.join(rec.environments) or 'no environment'} in redesign"
            )
        return
    click.echo(
        f"new run {done.new_run} forked from {rec.restore}; artifact at "
        f"{done.artifact}; in redesign: {', '.join(done.redesign)} "
        f"(commit {(done.commit or '-')[:12]})"
    )


# -- the audit trail --------------------------------------------------------------------------
def audit_log(found: list[AuditEntry]) -> None:
    table(
        f"audit trail ({count(len(found), 'entry')})",
        ["#", "id", "time", "kind", "subject", "outcome", "actor", "reason"],
        [
            [
                e.seq,
                e.id[:12],
                e.time,
                e.kind,
                " ".join(f"{k}={v}" for k, v in e.subject.items()),
                e.outcome,
                e.actor,
                (e.reason or "")[:60],
            ]
            for e in found
        ],
    )


def audit_show(shown: Shown) -> None:
    click.echo(json.dumps(shown.entry.model_dump(mode="json", exclude_none=True), indent=2))
    resolved = shown.resolved
    if "commit" in resolved:
        click.echo(f"recorded in commit {resolved['commit']}")
    for path, text in resolved.get("policies", {}).items():
        click.echo(f"--- {path} (as committed then)")
        click.echo(text if text is not None else "(not in that commit)")
    if resolved.get("decision"):
        fired = [r for r in resolved["decision"]["results"] if r["status"] == "fired"]
        click.echo(f"--- decision: {resolved['decision']['outcome']}, {len(fired)} results fired")
        for r in fired:
            click.echo(f"  {r['policy']}: {r['reason']} (k = {r['k']}, n = {r['n']})")
            if r.get("seen"):
                seen = ", ".join(f"{ref} {k}/{n}" for ref, k, n in r["seen"][-12:])
                click.echo(f"    the series it saw (last 12 of {len(r['seen'])}): {seen}")
    for md5 in resolved.get("reports_missing", []):
        click.echo(f"report {md5} is not in the workspace: `dvc pull` it to inspect")


def audit_verify(result: Verification) -> None:
    click.echo(
        f"audit trail intact: {count(result.entries, 'entry')}, head {(result.head or '-')[:16]}, "
        f"{result.anchored} heads anchored in git history"
    )
    for md5 in result.missing_reports:
        click.echo(f"note: report {md5} named by an entry is not in the workspace (dvc pull it)")


def audit_anchor(result: Anchor) -> None:
    where = f", pushed to {result.pushed_to}" if result.pushed_to else " (not pushed: --remote)"
    click.echo(
        f"anchored entry {result.seq}, head {result.head}, as tag {result.tag} on commit "
        f"{result.commit[:12]}{where}"
    )


def pressure(result: Pressure) -> None:
    table(
        "monitor pressure",
        ["environment", "flags raised", "redesigns", "rollbacks", "CoT hiding warnings"],
        [
            [
                env,
                c["flag_raised"],
                c["redesign"],
                c["rollback_applied"],
                c.get("obfuscation_warning", 0),
            ]
            for env, c in sorted(result.counts.items())
        ],
    )
    for env in result.heavy:
        click.echo(
            f"{env}: redesigned {result.counts[env]['redesign']} times on monitor evidence "
            f"(more than {result.limit}): check falling rates with an independent held-out "
            "judge before trusting them"
        )


def pressure_json(result: Pressure) -> None:
    echo_json(result.counts)


# -- the example ------------------------------------------------------------------------------
def example(result: ExampleResult) -> None:
    click.echo(f"built the example workspace in {result.root}")
    click.echo("")
    summary(result.summary)
    click.echo("")
    table(
        f"rationalization rate per environment: first {result.window} checkpoints against the "
        f"last {result.window} (95% Wilson intervals), and the pattern the example planted",
        ["environment", "early", "late", "planted pattern"],
        [
            [e.environment, rate(e.early), rate(e.late), result.patterns[e.environment]]
            for e in result.environments
        ],
    )
    click.echo(f"\ngov check {result.checked}: {result.outcome.upper()}")
    for env, first in result.flagged.items():
        click.echo(
            f"  flagged for redesign: {env} (onset estimated at {result.onsets.get(env, '-')}; "
            f"the policies would first have flagged it at {first})"
        )
    if result.restore:
        click.echo(
            f"restore point: {result.restore} (P(already contaminated) = "
            f"{result.p_contaminated:.3f}; {count(result.checkpoints_lost, 'checkpoint')} of "
            "training given up): see `gov rollback recommend`"
        )
    click.echo(f"review page: {result.report} (open it in a browser; it works offline)")
    # `gov check` exits 1 on a block, so the recommendation follows it with `;`, not `&&`
    click.echo(f"\nnext: cd {result.root} && gov check {result.checked}; gov rollback recommend")


# -- a decision where CI shows it -------------------------------------------------------------
def _numbers(r: Result) -> str:
    if r.n is None or r.value is None:
        return "-"
    interval = f" [{r.low:.2%}, {r.high:.2%}]" if r.low is not None and r.high is not None else ""
    return f"{r.k}/{r.n} = {r.value:.2%}{interval}"


def junit(decision: Decision) -> str:
    """One test suite per policy, one test case per series; a blocking result is a failure."""
    blocking = {name for name, acts in decision.actions.items() if "block" in acts}
    suites: dict[str, list[Result]] = {}
    for r in decision.results:
        suites.setdefault(r.policy, []).append(r)
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    failures = sum(1 for r in decision.fired if r.policy in blocking)
    out.append(
        f"<testsuites name={_xml_attr('gov check ' + decision.checkpoint)} "
        f'tests="{len(decision.results)}" failures="{failures}">'
    )
    for policy, results in suites.items():
        fails = sum(1 for r in results if r.status == "fired" and policy in blocking)
        skipped = sum(1 for r in results if r.status in ("insufficient", "unavailable"))
        out.append(
            f'  <testsuite name={_xml_attr(policy)} tests="{len(results)}" '
            f'failures="{fails}" skipped="{skipped}">'
        )
        for r in results:
            out.append(
                f"    <testcase classname={_xml_attr(policy)} name={_xml_attr(r.series.label)}>"
            )
            message = f"{r.reason} ({_numbers(r)})"
            if r.status == "fired" and policy in blocking:
                out.append(
                    f"      <failure message={_xml_attr(message)}>{_xml_text(message)}</failure>"
                )
            elif r.status == "fired":
                out.append(f"      <system-out>warning: {_xml_text(message)}</system-out>")
            elif r.status in ("insufficient", "unavailable"):
                out.append(f"      <skipped message={_xml_attr(r.reason)}/>")
            out.append("    </testcase>")
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def _annotation(text: str) -> str:
    # GitHub workflow commands: %, CR and LF are escaped in the message.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github(decision: Decision) -> str:
    blocking = {name for name, acts in decision.actions.items() if "block" in acts}
    lines = []
    for r in decision.fired:
        level = "error" if r.policy in blocking else "warning"
        title = _annotation(f"{r.policy}: {r.series.label}").replace(",", "%2C").replace(":", "%3A")
        lines.append(f"::{level} title={title}::{_annotation(f'{r.reason} ({_numbers(r)})')}")
    for r in decision.results:
        if r.status == "insufficient" and r.reason.startswith("no judgments for"):
            lines.append(f"::warning::{_annotation(f'{r.policy}: {r.reason}')}")
    flagged = f"; flagged: {', '.join(decision.flagged)}" if decision.flagged else ""
    lines.append(
        f"::notice::{_annotation(f'gov check {decision.checkpoint}: {decision.outcome}{flagged}')}"
    )
    return "\n".join(lines) + "\n"


def markdown(decision: Decision) -> str:
    icon = {"pass": "✅", "warn": "⚠️", "block": "⛔"}[decision.outcome]
    lines = [f"### {icon} gov check `{decision.checkpoint}`: **{decision.outcome}**", ""]
    if decision.flagged:
        lines += [f"Flagged for redesign: {', '.join(f'`{e}`' for e in decision.flagged)}", ""]
    shown = [r for r in decision.results if r.status != "clear"]
    clear = len(decision.results) - len(shown)
    if shown:
        lines += ["| policy | series | result | evidence | why |", "|---|---|---|---|---|"]
        for r in shown:
            lines.append(
                f"| {r.policy} | {r.series.label} | {r.status} | {_numbers(r)} | {r.reason} |"
            )
        lines.append("")
    lines.append(
        f"{clear} other policy/series pairs are clear. Inputs digest `{decision.digest[:16]}`."
    )
    return "\n".join(lines) + "\n"


# -- what each command offers -------------------------------------------------------------------
SUMMARY = View(table=summary)
RUN_LIST = View(table=run_list, json=run_list_json)
RUN_SHOW = View(table=run_show)
CHECKPOINT_ADDED = View(table=checkpoint_added)
CHECKPOINT_LIST = View(table=checkpoint_list)
CHECKPOINT_SHOW = View(table=checkpoint_show)
ENV_ADDED = View(table=env_added)
ENV_VERSIONED = View(table=env_versioned)
ENV_LIST = View(table=env_list)
ENV_SHOW = View(table=env_show)
JUDGE_ADDED = View(table=judge_added)
JUDGE_LIST = View(table=judge_list)
JUDGE_SHOW = View(table=judge_show, json=judge_show_json)
CALIBRATED = View(table=calibrated, json=lambda c: echo_json(_calibration_document(c)))
JUDGE_COMPARISON = View(table=judge_comparison)
INGESTED = View(table=ingested)
AGGREGATED = View(table=aggregated)
TRANSCRIPTS = View(table=transcripts_written)
METRICS = View(table=metrics_table, json=metrics_json, csv=metrics_csv)
DECISION = View(table=decision_text, junit=junit, github=github, markdown=markdown)
FLAG_LIST = View(table=flag_list)
FLAG_SHOW = View(table=flag_show)
EXPLANATION = View(table=explanation)
RECOMMENDATION = View(table=recommendation)
AUDIT_LOG = View(table=audit_log)
VERIFIED = View(table=audit_verify)
ANCHORED = View(table=audit_anchor)
RUN_ADDED = View(table=run_added)
LINT = View(table=lint)
POLICY_TESTS = View(table=policy_tests)
INITIALISED = View(table=initialised)
PROMOTED = View(table=promoted)
FLAG_ACKED = View(table=flag_acked)
ROLLBACK_PLAN = View(table=rollback_plan)
AUDIT_SHOW = View(table=audit_show)
PRESSURE = View(table=pressure, json=pressure_json)
EXAMPLE = View(table=example)
BACKTEST = View(table=backtest, json=lambda r: echo_json(r.document()))
COUNTS_BACKTEST = View(table=counts_backtest, json=lambda r: echo_json(r.document()))
