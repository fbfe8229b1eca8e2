"""The review page: one self-contained HTML page per run, readable offline and printable.

Charts are inline SVG drawn here (no script, font or image is fetched when the page is viewed):
each environment's rationalization rate over the run's checkpoints with its 95% interval band,
the onset posterior's estimate and credible interval, the checkpoints where a policy warned or
blocked, and the restore point. Flagged environments come first and open; healthy ones are
folded, and beyond 30 series the steady ones (no flag, no warning, no likely rise) are one row
each of a table, so the page stays readable at hundreds of environments. The run's audit
timeline links each entry to the evidence it refers to.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

from . import audit, counts, pairs
from .errors import GovError
from .gates import recorded_decisions
from .policies import Action, Condition, Onset, Policy
from .records import AuditEntry
from .registry import Registry
from .rollback import flagged_environments, recommend
from .stats.evaluate import placed_posterior, run_posterior, screen_odds
from .stats.onset import DEFAULT_PRIOR, OnsetPosterior
from .stats.screen import rise_odds
from .stats.series import Order, Point, Series, Table, columns, many, matrices
from .storage import write_output

WIDTH, HEIGHT, PAD = 720, 240, 48


PAGE = "report.html"  # where the review page goes unless asked otherwise, in the workspace


@dataclass(frozen=True)
class ReportResult:
    path: Path
    run: str
    environments: int
    flagged: list[str]
    restore: str | None


def _chart(
    s: Series, marks: dict[str, str], restore: str | None, onset: tuple[int, int, int] | None
) -> str:
    """An SVG chart of a series: interval band, points, policy marks, onset and restore point."""
    points = s.points
    count = len(points)
    top = max([p.high or 0 for p in points] + [0.01]) * 1.1

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / max(count - 1, 1) if count > 1 else 0.5)

    def y(v: float) -> float:
        return HEIGHT - PAD + (-(HEIGHT - 2 * PAD) * v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(s.metric)} of {escape(s.environment)}">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="{PAD}" y="{PAD - 20}" class="tick axis-title">{escape(s.metric.replace("_", " "))}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 2}" class="tick axis-title" text-anchor="end">checkpoint (run@step)</text>',
    ]
    for fraction in (0, 0.25, 0.5, 0.75, 1):  # the rate axis: five labelled ticks with a grid
        level = top / 1.1 * fraction
        parts.append(
            f'<line x1="{PAD - 4}" y1="{y(level):.1f}" x2="{WIDTH - PAD}" y2="{y(level):.1f}" class="grid"/>'
            f'<text x="{PAD - 6}" y="{y(level) + 4:.1f}" class="tick" text-anchor="end">{level:.1%}</text>'
        )
    for i in sorted({round(j * (count - 1) / 5) for j in range(6)} if count > 1 else {0}):
        parts.append(  # the checkpoint axis: six marked and labelled steps
            f'<line x1="{x(i):.1f}" y1="{HEIGHT - PAD}" x2="{x(i):.1f}" y2="{HEIGHT - PAD + 4}" class="axis"/>'
            f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 16}" class="tick" text-anchor="middle">'
            f"{escape(points[i].run)}@{points[i].step}</text>"
        )
    if onset is not None:
        lo, mid, hi = onset
        parts.append(
            f'<rect x="{x(lo):.1f}" y="{PAD}" width="{max(x(hi) - x(lo), 2):.1f}" '
            f'height="{HEIGHT - 2 * PAD}" class="onset-band"><title>onset 90% credible interval: '
            f"{escape(points[lo].run)}@{points[lo].step} .. {escape(points[hi].run)}@{points[hi].step}</title></rect>"
        )
        parts.append(
            f'<line x1="{x(mid):.1f}" y1="{PAD}" x2="{x(mid):.1f}" y2="{HEIGHT - PAD}" class="onset">'
            f"<title>estimated onset {escape(points[mid].run)}@{points[mid].step}</title></line>"
        )
    band = [(x(i), y(p.high)) for i, p in enumerate(points) if p.high is not None]
    band += [(x(i), y(p.low)) for i, p in reversed(list(enumerate(points))) if p.low is not None]
    if len(band) > 2:
        parts.append(
            '<polygon class="band" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in band) + '"/>'
        )
    line = [(x(i), y(p.value)) for i, p in enumerate(points) if p.value is not None]
    if len(line) > 1:
        parts.append(
            '<polyline class="rate" points="'
            + " ".join(f"{a:.1f},{b:.1f}" for a, b in line)
            + '"/>'
        )
    for i, p in enumerate(points):
        ref = f"{p.run}@{p.step}"
        if p.value is not None:
            interval = (
                f"[{p.low:.2%}, {p.high:.2%}]" if p.low is not None and p.high is not None else ""
            )
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="2.5" class="point">'
                f"<title>{escape(ref)}: {p.k}/{p.n} = {p.value:.2%} {interval}</title></circle>"
            )
        if ref in marks:
            parts.append(
                f'<text x="{x(i):.1f}" y="{PAD - 6}" class="mark {marks[ref]}" text-anchor="middle">'
                f"{'■' if marks[ref] == 'block' else '▲'}<title>{escape(ref)}: {marks[ref]}</title></text>"
            )
        if ref == restore:
            parts.append(
                f'<line x1="{x(i):.1f}" y1="{PAD}" x2="{x(i):.1f}" y2="{HEIGHT - PAD}" class="restore">'
                f"<title>restore point {escape(ref)}</title></line>"
                f'<text x="{x(i) + 3:.1f}" y="{HEIGHT - PAD - 4}" class="restore-label">restore</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:980px;padding:24px;color:#1d232a}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:10px;margin:16px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 12px}
.card b{display:block;font-size:12px;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
.block{color:#b42318} .warn{color:#b54708} .pass{color:#067647}
details{border:1px solid #d0d7de;border-radius:6px;margin:10px 0;padding:6px 12px}
details[open]{padding-bottom:12px} summary{cursor:pointer;font-weight:600}
.chart{width:100%;height:auto} .axis{stroke:#8c959f} .grid{stroke:#eaeef2} .tick{font-size:11px;fill:#57606a} .axis-title{font-style:italic}
.band{fill:#9ec5fe;opacity:.45} .rate{fill:none;stroke:#1f6feb;stroke-width:1.6} .point{fill:#1f6feb}
.onset-band{fill:#fdd8a8;opacity:.5} .onset{stroke:#b54708;stroke-dasharray:4 3}
.restore{stroke:#067647;stroke-width:2} .restore-label{font-size:11px;fill:#067647}
.line{fill:none;stroke-width:1.8} .line.cot{stroke:#1f6feb} .line.act{stroke:#b42318} .line.hid{stroke:#8250df;stroke-dasharray:5 3}
.legend{font-size:12px} .legend.cot{fill:#1f6feb} .legend.act{fill:#b42318} .legend.hid{fill:#8250df}
.mark{font-size:12px} .mark.block{fill:#b42318} .mark.warn{fill:#b54708}
table{border-collapse:collapse;width:100%;font-size:13px;table-layout:fixed} td,th{border-bottom:1px solid #eaeef2;padding:4px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
col.seq{width:3em} col.time{width:10em} col.kind{width:9em} col.outcome{width:6em} col.actor{width:9em}
.muted{color:#57606a} .empty{padding:24px;border:1px dashed #8c959f;border-radius:6px;text-align:center}
@media print{details{break-inside:avoid} details:not([open]){display:block} body{max-width:none;padding:0}}
"""


# The first bytes of every review page gov writes: a file that does not begin so is not one.
_PAGE_HEAD = b"<!doctype html><html lang=en><head><meta charset=utf-8>"
# The workspace's folders a page never goes into: git's, DVC's, gov's local state, and the
# folders gov reads as records (a page there would be read as a policy, a registry file).
_NEVER_INSIDE = (".git", ".dvc", ".gov", "registry", "audit", "policies")


def page_target(root: Path, output: Path, git_dir: Path | None = None) -> Path:
    """Where the review page may be written for `output`: a new file, or an earlier review page
    (replaced whole); never a folder, a device, a symbolic link (whose target could be any file)
    or a file of any other kind (the workspace's own files, a trail, git's), and never inside the
    workspace's .git, .dvc, .gov, registry, audit or policies, nor inside `git_dir` (the git
    folder of the repository that holds the workspace, which may lie above it)."""
    if not str(output).strip():
        raise GovError("the review page's path is empty: name a file, e.g. -o review.html")
    given = output.expanduser()
    if given.is_symlink():
        raise GovError(f"{output}: is a symbolic link: name a file of the page's own")
    target = given.resolve()
    if not target.parent.is_dir():
        raise GovError(f"{output}: the folder {target.parent} does not exist: create it first")
    inside = root.resolve()
    first = (
        next(iter(target.relative_to(inside).parts), None)
        if target.is_relative_to(inside)
        else None
    )
    if first in _NEVER_INSIDE:
        raise GovError(f"{output}: inside the workspace's {first}")
    if git_dir is not None and target.is_relative_to(git_dir.resolve()):
        raise GovError(f"{output}: inside git's folder {git_dir}")
    if target.exists():
        if target.is_dir():
            raise GovError(f"{output}: is a folder: name a file, e.g. -o review.html")
        if not target.is_file():
            raise GovError(f"{output}: is not a regular file (a device, a pipe?)")
        try:
            with target.open("rb") as handle:
                head = handle.read(len(_PAGE_HEAD))
        except OSError as exc:
            raise GovError(f"{output}: cannot be read: {exc.strerror or exc}") from None
        if head != _PAGE_HEAD and target.stat().st_size:
            raise GovError(
                f"{output}: exists and is not a gov review page: gov replaces only its own "
                "pages (remove the file, or name another)"
            )
    return target


def build_report(
    registry: Registry, output: Path, run: str | None = None, *, alpha: float = 0.02
) -> ReportResult:
    """Write the run's review page to `output` (whole or not at all)."""
    target = page_target(registry.ws.root, output, Path(registry.ws.repo.git_dir))
    if run is None and not registry.runs():
        raise GovError("no runs are registered: nothing to report on")
    run = registry.default_run(run)
    lineage = registry.lineage_checkpoints(run)
    refs = {c.ref for c in lineage}
    order = [(c.run, c.step, c.status.value) for c in lineage]
    table = counts.table(registry.ws)
    all_series = many(table, ["rationalization_rate"], order, lazy=True)
    decisions = [d for _, d in recorded_decisions(registry.ws, refs)]
    flagged = flagged_environments(registry)
    restore = None
    restore_text = "no environment is flagged and no run-wide rise: no rollback recommended"
    if len(lineage) >= 2:
        try:
            rec = recommend(registry, run, alpha=alpha)
            restore = rec.restore
            if rec.flagged and rec.restore:
                restore_text = (
                    f"{rec.restore}: P(already contaminated) {rec.p_contaminated:.3f} "
                    f"(alpha {alpha}); gives up {rec.checkpoints_lost} checkpoints "
                    f"({rec.steps_lost} steps)"
                    + (f"; {rec.reason}" if rec.reason else "")
                    + (f"; why so far back: {rec.far_back}" if rec.far_back else "")
                )
            elif rec.flagged:
                restore_text = rec.reason
        except GovError as exc:
            restore_text = exc.message
    marks: dict[str, dict[str, str]] = {}
    for decision in decisions:
        for result in decision.results:
            env = result.series.environment
            if result.status == "fired" and env:
                outcome = "block" if "block" in decision.actions.get(result.policy, []) else "warn"
                current = marks.setdefault(env, {}).get(decision.checkpoint)
                if current != "block":
                    marks[env][decision.checkpoint] = outcome
    # The trail read once, as plain records: only the entries the page shows become models
    # (a long run's trail has 100,000 entries).
    trail = [e for _, e in audit.read(registry.ws)] if registry.ws.audit.is_dir() else []
    runs = {c.run for c in lineage}
    lineage_runs = {r.id for r in registry.lineage(run)}

    def about(subject: dict[str, str]) -> bool:
        return (
            subject.get("run") in runs
            or subject.get("checkpoint") in refs
            or run in subject.get("runs", "").split(",")
        )

    entries = [e for e in trail if about(e.get("subject") or {})]
    overrides = [AuditEntry.model_validate(e) for e in entries if e["kind"] == "override"]
    latest = decisions[-1] if decisions else None
    rollbacks = [
        AuditEntry.model_validate(e)
        for e in trail
        if e["kind"] == "rollback_applied"
        and (
            (e.get("subject") or {}).get("run") in lineage_runs
            or (e.get("subject") or {}).get("checkpoint") in refs
        )
    ]
    rollback_text = (
        "; ".join(
            f"rollback applied: {e.outcome} from {e.subject.get('checkpoint', '')} ({e.time[:10]})"
            for e in rollbacks
        )
        or "none applied"
    )

    html = [
        _PAGE_HEAD.decode(),
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>gov review: run {escape(run)}</title><style>{CSS}</style></head><body>",
        f"<h1>gov review: run {escape(run)}</h1>",
        f"<div class=muted>lineage {' → '.join(escape(r.id) for r in registry.lineage(run))}; "
        f"{len(lineage)} checkpoints; judge series are never pooled</div>",
        '<section class=summary aria-label="summary">',
        _card(
            "latest decision",
            f'<span class="{latest.outcome}">{escape(latest.outcome.upper())}</span> at '
            f'<a href="#audit">{escape(latest.checkpoint)}</a>'
            if latest
            else "no check recorded yet",
        ),
        _card(
            "flagged environments",
            ", ".join(f'<a href="#env-{escape(e)}">{escape(e)}</a>' for e in flagged) or "none",
        ),
        _card("restore point", f"<span id=restore>{escape(restore_text)}</span>"),
        _card("rollbacks", f"<span id=rollback>{escape(rollback_text)}</span>"),
        _card(
            "overrides",
            str(len(overrides))
            + (
                ""
                if not overrides
                else ": " + ", ".join(escape(o.subject.get("checkpoint", "")) for o in overrides)
            ),
        ),
        "</section>",
        *_run_wide(table, order, restore),
        "<h2>Rationalization rate per environment</h2>",
    ]
    if not all_series:
        html.append(
            '<div class="empty" id="no-reports">No judge reports have been ingested for this run yet: '
            "there is nothing to chart. Ingest the monitor's reports with <code>gov ingest</code>.</div>"
        )
    ordered = sorted(
        all_series, key=lambda s: (s.environment not in flagged, s.environment, s.judge_version)
    )
    charted, summed = [], []
    for s in ordered:
        post, onset_text = _onset_of(s, s.environment in flagged)
        notable = (
            s.environment in flagged
            or bool(marks.get(s.environment))
            or (post is not None and post.p_rise >= 0.5)
        )
        if notable or len(ordered) <= CHART_ALL:
            charted.append((s, post, onset_text))
        else:
            summed.append((s, onset_text))
    for s, post, onset_text in charted:
        onset = None
        if post is not None and post.p_rise >= 0.5:
            lo, hi = post.interval(0.9)
            onset = (lo, post.estimate(), hi)
        is_flagged = s.environment in flagged
        env_marks = marks.get(s.environment, {})
        html.append(
            f'<details id="env-{escape(s.environment)}" class="env{" flagged" if is_flagged else ""}"{" open" if is_flagged else ""}>'
            f"<summary>{escape(s.environment)} v{s.environment_version} · {escape(s.judge)} {escape(s.judge_version)}"
            f"{' — flagged for redesign' if is_flagged else ''}</summary>"
            f"<p class=muted>{escape(onset_text)}; ■ blocked ▲ warned at {len(env_marks)} checkpoint{'' if len(env_marks) == 1 else 's'}</p>"
        )
        html.append(
            _chart(
                s,
                env_marks,
                restore if is_flagged else None,
                onset if is_flagged or (post and post.p_rise >= 0.95) else None,
            )
        )
        html.append("</details>")
    html += _steady(summed)
    html += _channels(registry, order)
    html.append('<h2 id="audit">Audit timeline</h2>')
    # Decisions, flags, overrides, redesigns and rollbacks first, newest first; the routine
    # (reports ingested, recommendations) summed up in one line each below them.
    routine = {"report_ingested", "report_replaced", "rollback_recommended"}
    listed = sorted((e for e in entries if e["kind"] not in routine), key=lambda e: -e["seq"])
    older = listed[TIMELINE:]
    shown = [AuditEntry.model_validate(e) for e in listed[:TIMELINE]]
    for kind in sorted(routine):
        same = [e for e in entries if e["kind"] == kind]
        if same:
            html.append(
                f"<p class=muted>{len(same)} × {escape(kind.replace('_', ' '))} "
                f"(entries {same[0]['seq']} to {same[-1]['seq']}, {escape(same[0]['time'][:10])} to "
                f"{escape(same[-1]['time'][:10])}): see <code>gov audit log --kind {kind}</code></p>"
            )
    if shown:
        html.append(
            "<table><colgroup><col class=seq><col class=time><col class=kind><col><col class=outcome>"
            "<col class=actor><col></colgroup>"
            "<tr><th>#</th><th>time</th><th>kind</th><th>subject</th><th>outcome</th><th>actor</th><th>evidence</th></tr>"
        )
        for e in shown:
            subject = e.subject
            env = subject.get("environment")
            link = f'<a href="#env-{escape(env)}">{escape(env)}</a>' if env else ""
            document = (e.refs or {}).get("decision")
            reason = e.reason or ""
            evidence = (
                f"<code>{escape(document)}</code>"
                if document
                else "<br>".join(escape(part) for part in reason.split("; "))  # every policy
            )
            html.append(
                f"<tr><td>{e.seq}</td><td>{escape(e.time)}</td><td>{escape(e.kind)}</td>"
                f"<td>{escape(subject.get('checkpoint', ''))} {link}</td><td>{escape(str(e.outcome))}</td>"
                f"<td>{escape(e.actor)}</td><td>{evidence}</td></tr>"
            )
        html.append("</table>")
        if older:
            html.append(
                f"<p class=muted id=older>{len(older)} older entries (entries {older[-1]['seq']} to "
                f"{older[0]['seq']}) are not listed here: see <code>gov audit log</code></p>"
            )
    elif not entries:
        html.append("<p class=muted>No audit entries for this run yet.</p>")
    html.append(
        "<p class=muted>Generated by gov; self-contained: it loads nothing when viewed.</p></body></html>"
    )
    write_output(target, "\n".join(html).encode())
    return ReportResult(target, run, len({s.environment for s in all_series}), flagged, restore)


TIMELINE = 500  # the newest decisions, flags and overrides listed on the page; the rest counted
CHART_ALL = 30  # up to this many series each get a (folded) chart; beyond, only notable ones


def _onset_of(s: Series, flagged: bool) -> tuple[OnsetPosterior | None, str]:
    """The series' onset posterior and its one-line summary. The posterior (the full model,
    a tenth of a second or so) is computed only where it matters: for a flagged environment, or
    where the conjugate screen's Bayes factor of a rise comes within SCREEN_MARGIN of the odds of
    0.95 (the defaults' level, where the page draws an onset band on an environment not flagged;
    the screen's margin is the one `gov check` uses, measured there)."""
    if len(s.points) < 3:
        return None, "too few checkpoints for an onset analysis"
    ks, ns = columns(s.points)
    if not flagged:
        odds = float(rise_odds(ks, ns, last=True)[0])
        if odds < screen_odds(0.95):
            return None, f"no rise on the screen (log Bayes factor of a rise {odds:.1f})"
    # kept in the workspace's memo: `gov rollback recommend` places its restore point on the
    # same posterior, so whichever of the two runs second finds it
    post = placed_posterior(ks, ns, DEFAULT_PRIOR)
    lo, hi = post.interval(0.9)
    mid = post.estimate()
    points = s.points
    return post, (
        f"P(a rise) = {post.p_rise:.3f}; onset ~ {points[mid].run}@{points[mid].step} "
        f"(90%: {points[lo].run}@{points[lo].step} .. {points[hi].run}@{points[hi].step})"
    )


def _steady(summed: list[tuple[Series, str]]) -> list[str]:
    """The series with nothing to show (not flagged, never warned or blocked, no likely rise),
    one row each: the page stays readable at hundreds of environments."""
    if not summed:
        return []
    rows = [
        f"<p class=muted id=steady>{len(summed)} more series with no flag, no warning and no "
        "likely rise, one row each (their charts: <code>gov metrics --env ENV</code>)</p>",
        "<table class=steady><tr><th>environment</th><th>judge</th><th>judged</th>"
        "<th>rationalized</th><th>latest checkpoint</th><th>onset analysis</th></tr>",
    ]
    for s, text in summed:
        ks, ns = columns(s.points)
        k, n = int(ks.sum()), int(ns.sum())
        judged = ns.nonzero()[0]
        last = s.points[int(judged[-1])] if judged.size else None
        latest = f"{last.run}@{last.step}: {last.k}/{last.n}" if last else "-"
        rows.append(
            f'<tr id="env-{escape(s.environment)}"><td>{escape(s.environment)} '
            f"v{s.environment_version}</td><td>{escape(s.judge)} {escape(s.judge_version)}</td>"
            f"<td>{n}</td><td>{k} ({k / n:.2%})</td><td>{escape(latest)}</td>"
            f"<td>{escape(text)}</td></tr>"
            if n
            else ""
        )
    rows.append("</table>")
    return rows


def _run_wide(table: Table, order: Order, restore: str | None) -> list[str]:
    """The run-level panel: for each judge version, the run-wide onset analysis (every
    environment's evidence pooled, each keeping its own rate), the environments that carry it,
    and the run's total rate for orientation."""
    policy = Policy(
        name="run-wide",
        description="the run-wide onset analysis",
        metric="rationalization_rate",
        scope="run",
        condition=Condition(onset=Onset()),
        actions=(Action.WARN,),
    )
    found = matrices(policy, table, order)
    if not found:
        return []
    html = ['<h2 id="run-wide">Across the run</h2>']
    for key, matrix in sorted(found.items()):
        judged = (matrix.ns.sum(axis=1) > 0).sum()
        points = [
            Point(run, step, int(k), int(n))
            for (run, step, _), k, n in zip(
                matrix.order, matrix.ks.sum(axis=0), matrix.ns.sum(axis=0), strict=True
            )
        ]
        series = Series("rationalization_rate", key, points)
        title = f"{escape(key.judge)} {escape(key.judge_version)} · {judged} environments"
        if judged < 2 or len(points) < 3:
            html.append(
                f"<details class=run><summary>{title}</summary><p class=muted>too few "
                "environments or checkpoints for a run-wide analysis</p></details>"
            )
            continue
        post = run_posterior(matrix)
        lo, hi = post.interval(0.9)
        mid = post.estimate()
        rising = post.p_rise >= 0.95
        leading = post.leading(5)
        text = (
            f"P(a rise across the run) = {post.p_rise:.3f}; onset ~ {points[mid].ref} (90%: "
            f"{points[lo].ref} .. {points[hi].ref}); about {post.share:.0%} of environments "
            f"affected, typically x{post.effect:.2f}"
            if post.p_rise >= 0.5
            else f"P(a rise across the run) = {post.p_rise:.3f}: no shared rise"
        )
        rows = "".join(
            f"<tr><td>{escape(matrix.label(c.index))}</td><td>{c.p_affected:.2f}</td>"
            f"<td>x{c.effect:.2f}</td><td>{c.evidence:.1f}</td></tr>"
            for c in leading
        )
        html.append(
            f'<details class="run{" flagged" if rising else ""}"{" open" if rising else ""}>'
            f"<summary>{title}{' — rising' if rising else ''}</summary>"
            f"<p class=muted>{escape(text)}. The chart shows the run's total rate for "
            "orientation only: the analysis pools each environment's evidence against its own "
            "rate, so a shift of the mix of environments is not read as a rise.</p>"
            + (
                "<table><tr><th>environment carrying the evidence</th><th>P(rose)</th>"
                f"<th>its rise</th><th>evidence (nats)</th></tr>{rows}</table>"
                if rows and post.p_rise >= 0.5
                else ""
            )
        )
        html.append(
            _chart(series, {}, restore if rising else None, (lo, mid, hi) if rising else None)
        )
        html.append("</details>")
    return html


def _channels(registry: Registry, order: Order) -> list[str]:
    """The obfuscation watch's two channels per environment: what the CoT judge flags and what
    the action judge flags (shares of the episodes both judged), and the hidden share (of the
    action judge's flags, those the CoT judge did not see)."""
    actions = {
        (j.id, v.version) for j in registry.judges() for v in j.versions if v.view == "action"
    }
    found = pairs.paired(registry.ws, actions) if actions else {}
    position = {(r, s): i for i, (r, s, _) in enumerate(order)}
    html: list[str] = []
    for key, rows in sorted(found.items(), key=lambda kv: (kv[0].environment, kv[0].cot)):
        seen = sorted(
            (r for r in rows if (r.run, r.step) in position), key=lambda r: position[r.run, r.step]
        )
        if not seen:
            continue
        if not html:
            html.append('<h2 id="channels">Chain of thought and action: two channels</h2>')
            html.append(
                "<p class=muted>A CoT judge and an action-only judge on the same episodes. Both "
                "flag rates follow the exploit rate together; a hidden share (flagged from the "
                "action, unseen in the CoT) that rises is the signature of a chain of thought "
                "learning to hide. Never train on either channel.</p>"
            )
        label = (
            f"{key.environment} v{key.environment_version}: CoT {key.cot[0]} {key.cot[1]}, "
            f"action {key.action[0]} {key.action[1]}"
        )
        lines = {
            "CoT flagged": [r.cot / r.n if r.n else None for r in seen],
            "action flagged": [r.action / r.n if r.n else None for r in seen],
            "hidden share": [(r.action - r.both) / r.action if r.action else None for r in seen],
        }
        html.append(
            f'<details open class="channels"><summary>{escape(label)}</summary>'
            + _lines([f"{r.run}@{r.step}" for r in seen], lines)
            + "</details>"
        )
    return html


_LINE_CLASSES = {"CoT flagged": "cot", "action flagged": "act", "hidden share": "hid"}


def _lines(refs: list[str], lines: dict[str, list[float | None]]) -> str:
    """A small SVG chart of several shares over checkpoints, with a legend."""
    count = len(refs)
    top = max([v for vs in lines.values() for v in vs if v is not None] + [0.01]) * 1.1

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / max(count - 1, 1) if count > 1 else 0.5)

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="two channels">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
    ]
    for fraction in (0, 0.5, 1):
        level = top / 1.1 * fraction
        parts.append(
            f'<text x="{PAD - 6}" y="{y(level) + 4:.1f}" class="tick" text-anchor="end">'
            f"{level:.0%}</text>"
        )
    for i in sorted({round(j * (count - 1) / 4) for j in range(5)} if count > 1 else {0}):
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 16}" class="tick" text-anchor="middle">'
            f"{escape(refs[i])}</text>"
        )
    for n, (name, values) in enumerate(lines.items()):
        css = _LINE_CLASSES[name]
        drawn = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if len(drawn) > 1:
            parts.append(
                f'<polyline class="line {css}" points="'
                + " ".join(f"{a:.1f},{b:.1f}" for a, b in drawn)
                + f'"><title>{escape(name)}</title></polyline>'
            )
        parts.append(
            f'<text x="{PAD + 140 * n}" y="{PAD - 20}" class="legend {css}">— {escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _card(title: str, body: str) -> str:
    return f"<div class=card><b>{escape(title)}</b>{body}</div>"
