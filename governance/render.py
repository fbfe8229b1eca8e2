"""A decision rendered for the places CI shows it: JUnit XML, GitHub annotations, Markdown."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from .check import Decision, Result


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
        f"<testsuites name={quoteattr('gov check ' + decision.checkpoint)} "
        f'tests="{len(decision.results)}" failures="{failures}">'
    )
    for policy, results in suites.items():
        fails = sum(1 for r in results if r.status == "fired" and policy in blocking)
        skipped = sum(1 for r in results if r.status in ("insufficient", "unavailable"))
        out.append(
            f'  <testsuite name={quoteattr(policy)} tests="{len(results)}" '
            f'failures="{fails}" skipped="{skipped}">'
        )
        for r in results:
            out.append(
                f"    <testcase classname={quoteattr(policy)} name={quoteattr(r.series.label)}>"
            )
            message = f"{r.reason} ({_numbers(r)})"
            if r.status == "fired" and policy in blocking:
                out.append(
                    f"      <failure message={quoteattr(message)}>{escape(message)}</failure>"
                )
            elif r.status == "fired":
                out.append(f"      <system-out>warning: {escape(message)}</system-out>")
            elif r.status in ("insufficient", "unavailable"):
                out.append(f"      <skipped message={quoteattr(r.reason)}/>")
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
