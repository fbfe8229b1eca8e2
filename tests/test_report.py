"""The review page, opened in a real headless Chromium (Debian's), and its bad input."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import apt_install
from governance import open_registry
from governance.errors import GovError
from governance.review import build_report

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    """Debian's Chromium, installed by the test set-up where it is missing (root, apt)."""
    if not Path(CHROMIUM).exists():
        apt_install("chromium")
    assert Path(CHROMIUM).exists(), "Chromium is needed: apt-get install chromium"
    return CHROMIUM


def _blank(png: bytes) -> bool:
    """True if every pixel of an 8-bit RGB(A) PNG is the same colour."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 4
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _, colour = struct.unpack(">IIBB", data[:10])
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    # Unfiltered bytes would be needed for exact pixels; distinct scanline payloads are enough
    # to tell a drawn page from a blank one.
    rows = {raw[i * stride + 1 : (i + 1) * stride] for i in range(height)}
    return len(rows) <= 2


def test_the_page_renders_offline_in_chromium(gov, example_template: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_path = tmp_path / "review.html"
    result = gov("report", "-o", str(page_path), cwd=example_template)
    assert result.exit_code == 0, result.stderr
    html = page_path.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=ensure_chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_path.as_uri())
        flagged = page.locator("details#env-code-unit-tests")
        assert flagged.get_attribute("open") is not None  # the flagged one stands out, open
        assert flagged.locator("svg.chart polyline.rate").count() == 1
        assert flagged.locator("svg.chart line.restore").count() == 1
        restore_card = page.locator("#restore").inner_text()
        assert "main@" in restore_card
        # the restore point lies well before the onset's interval, and the page says why
        assert "why so far back: the onset is likely no earlier than main@" in restore_card
        assert page.locator("details#env-math-proofs").get_attribute("open") is None  # folded
        assert page.locator("#audit").count() == 1
        kinds = page.locator("#audit ~ table tr td:nth-child(3)").all_inner_texts()
        assert kinds and "report_ingested" not in kinds  # decisions and flags, ingests summed
        assert "check" in kinds and "flag_raised" in kinds
        assert "report ingested" in page.locator("#audit ~ p").first.inner_text()
        shot = page.screenshot(full_page=True)
        browser.close()
    assert errors == []
    assert requests == [page_path.as_uri()]  # the page itself, nothing else
    assert not _blank(shot)


def test_a_run_without_reports_says_so(registry, workspace: Path, artifact, tmp_path: Path) -> None:
    registry.add_checkpoint("main", 100, artifact("a.pt"), {"math": 1.0})
    out = tmp_path / "r.html"
    build_report(registry, out)
    html = out.read_text()
    assert 'id="no-reports"' in html and "<svg" not in html


def test_a_single_checkpoint_environment_still_draws(
    registry, workspace: Path, artifact, tmp_path: Path
) -> None:
    from test_ingest import episode, write_jsonl

    from governance.ingest import ingest

    registry.add_checkpoint("main", 100, artifact("a.pt"), {"math": 1.0})
    ingest(registry, [write_jsonl(tmp_path / "r.jsonl", [episode(100, i) for i in range(30)])])
    out = tmp_path / "one.html"
    build_report(registry, out)
    html = out.read_text()
    assert html.count('class="point"') == 1 and "too few checkpoints for an onset analysis" in html


def test_an_output_folder_that_does_not_exist(gov, example_template: Path, tmp_path: Path) -> None:
    result = gov("report", "-o", str(tmp_path / "nope" / "r.html"), cwd=example_template)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "nope").exists()
    with pytest.raises(GovError):
        build_report(open_registry(example_template), tmp_path / "nope" / "x.html")


def test_the_page_never_overwrites_a_file_that_is_not_one(gov, example_copy: Path, tmp_path):
    # -o once replaced whatever it named: gov.yaml, the audit trail, .git/HEAD, a symbolic
    # link's target outside the workspace, a device
    outside = tmp_path / "notes.txt"
    outside.write_text("mine")
    link = example_copy / "link.html"
    link.symlink_to(outside)
    kept = {p: p.read_bytes() for p in (example_copy / "gov.yaml", outside)}
    trail = sorted((example_copy / "audit").glob("*.jsonl"))[0]
    kept[trail] = trail.read_bytes()
    head = example_copy / ".git" / "HEAD"
    kept[head] = head.read_bytes()
    cases = {
        "gov.yaml": "is not a gov review page",
        str(trail): "inside the workspace's audit",
        ".git/HEAD": "inside the workspace's .git",
        ".git/new.html": "inside the workspace's .git",
        "policies/page.yaml": "inside the workspace's policies",
        str(link): "is a symbolic link",
        str(outside): "is not a gov review page",
        "": "is a folder",  # click reads an empty path as "."
        str(tmp_path): "is a directory",  # click refuses it first
        "/dev/null": "not a regular file",
    }
    for target, message in cases.items():
        done = gov("report", "-o", target, cwd=example_copy)
        assert done.exit_code == 2, (target, done.stdout)
        [line] = done.stderr.strip().splitlines()
        assert message in line and "Traceback" not in done.stderr, (target, line)
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert not (example_copy / ".git" / "new.html").exists()
    # its own page is replaced, and a page where nothing was is written
    page = tmp_path / "review.html"
    assert gov("report", "-o", str(page), cwd=example_copy).exit_code == 0
    first = page.read_bytes()
    assert gov("report", "-o", str(page), cwd=example_copy).exit_code == 0
    assert page.read_bytes().startswith(first[:60])


def test_dvc_repro_recomputes_and_dvc_reads_the_metrics(
    gov, example_template: Path, tmp_path: Path
) -> None:
    import json
    import re

    from governance.example import Rising, load_spec

    ws = tmp_path / "ex"
    shutil.copytree(example_template, ws, symlinks=True)
    assert shutil.which("gov"), "the pipeline runs the installed `gov` command: install it first"
    subprocess.run(["dvc", "repro", "--quiet"], cwd=ws, check=True, capture_output=True)
    shown = json.loads(
        subprocess.run(
            ["dvc", "metrics", "show", "--json"], cwd=ws, check=True, capture_output=True, text=True
        ).stdout
    )[""]["data"]
    # What gov check itself says about the latest checkpoint, and what the example planted.
    decision = json.loads(
        gov("check", "main@12000", "--dry-run", "--format", "json", cwd=ws).stdout
    )
    fired = [r for r in decision["results"] if r["status"] == "fired"]
    spec = load_spec()
    [rising] = [e.id for e in spec.environments if isinstance(e.pattern, Rising)]
    assert fired and {r["series"]["environment"] for r in fired} == {rising}
    check = shown["metrics/check.json"]["data"]
    assert check == {
        "checkpoint": "main@12000",
        "outcome": "block",
        "blocked": 1,
        "fired": len(fired),
        "flagged": 1,
    }
    restore = shown["metrics/restore.json"]["data"]
    assert restore["p_contaminated"] <= 0.02 and int(restore["restore"].split("@")[1]) < 6250
    assert (ws / "report.html").is_file()
    subprocess.run(
        ["dvc", "plots", "show", "-o", str(tmp_path / "plots")],
        cwd=ws,
        check=True,
        capture_output=True,
        text=True,
    )
    html = (tmp_path / "plots" / "index.html").read_text()
    # One rationalization-rate plot per environment, each with a point per checkpoint.
    plots = re.findall(
        r'<div id\s*=\s*"metrics_rationalization_rationalization_rate-(.+?)-v\d+-[^"]*">'
        r"\s*<script[^>]*>\s*var spec = (.*?);\n",
        html,
    )
    assert sorted(env for env, _ in plots) == sorted(e.id for e in spec.environments)
    steps = [str(s) for s in spec.steps]
    for env, text in plots:
        assert [v["step"] for v in json.loads(text)["data"]["values"]] == steps, env


def test_the_example_writes_its_review_page(example_template: Path) -> None:
    page = example_template / "report.html"
    assert page.is_file() and "code-unit-tests" in page.read_text()


def test_the_page_fits_the_window_and_shows_an_applied_rollback(
    gov, example_copy: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    done = gov(
        "rollback", "apply", "--to", str(tmp_path / "restart.bin"), "--yes", cwd=example_copy
    )
    assert done.exit_code == 0, done.stderr
    page_path = tmp_path / "review.html"
    assert gov("report", "-o", str(page_path), cwd=example_copy).exit_code == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=ensure_chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        for width in (1280, 800):
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(page_path.as_uri())
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (width, overflow)  # nothing wider than the window
            applied = page.locator("#rollback").inner_text()
            assert "rollback applied" in applied and "main-r1" in applied
            flag_reason = page.locator("#audit ~ table tr", has_text="flag_raised").first
            text = flag_reason.inner_text()
            assert "rationalization-rate-rising" in text and "divergence-rate-rising" in text
            assert not _blank(page.screenshot(full_page=True))
            page.close()
        browser.close()


def test_the_chart_labels_both_axes(example_template: Path, tmp_path: Path) -> None:
    from governance import open_registry

    build_report(open_registry(example_template), tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    chart = html[html.index('<details id="env-code-unit-tests"') :]
    chart = chart[: chart.index("</svg>")]
    assert "rationalization rate</text>" in chart and "checkpoint (run@step)</text>" in chart
    rates = re.findall(r'text-anchor="end">(\d+\.\d)%</text>', chart)
    steps = re.findall(r'text-anchor="middle">main@(\d+)</text>', chart)
    assert len(rates) == 5 and rates[0] == "0.0" and len(steps) == 6
    assert [int(s) for s in steps] == sorted(int(s) for s in steps)


def test_many_environments_chart_only_the_notable_ones(registry, artifact, tmp_path: Path) -> None:
    """Past 30 series, a steady environment is one row of a table, not a chart: the rising one
    (found by the onset analysis, nothing planted in the page code) is still drawn."""
    import json

    from governance import NewCheckpoint
    from governance.ingest import ingest

    envs = [f"env-{i:02d}" for i in range(32)]
    for number, env in enumerate(envs, start=1):
        registry.add_environment(env, content_hash=f"{number:064x}")
    registry.add_checkpoints(
        "main",
        [
            NewCheckpoint(
                step=(i + 1) * 100,
                artifact=artifact(f"c{i}.pt"),
                exposure={e: 1 / len(envs) for e in envs},
            )
            for i in range(12)
        ],
    )
    rows = []
    for i in range(12):
        for env in envs:
            bad = 60 if env == "env-00" and i >= 6 else 2  # env-00: 1% to 30% from the 7th
            rows.append(
                {
                    "run": "main",
                    "step": (i + 1) * 100,
                    "environment": env,
                    "environment_version": 1,
                    "judge": "cot-monitor",
                    "judge_version": "1",
                    "n": 200,
                    "none": 200 - bad,
                    "rejected": 0,
                    "rationalized": bad,
                    "overt": 0,
                    "divergent": 0,
                }
            )
    report = tmp_path / "counts.jsonl"
    report.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest(registry, [report])
    out = tmp_path / "r.html"
    build_report(registry, out)
    html = out.read_text()
    assert html.count('<details id="env-') == 1  # (the run-wide panel draws its own chart)
    chart = html[html.index('<details id="env-env-00"') :]
    assert "onset-band" in chart[: chart.index("</details>")]
    assert "<table class=steady>" in html and html.count('<tr id="env-env-') == 31
    assert '<details id="env-env-05"' not in html and "31 more series" in html


def test_the_timeline_lists_the_newest_and_counts_the_rest(
    example_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance import review

    monkeypatch.setattr(review, "TIMELINE", 1)
    build_report(open_registry(example_template), tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    table = html[html.index('<h2 id="audit">') :]
    assert table.count("<tr><td>") == 1
    listed = [int(s) for s in re.findall(r"<tr><td>(\d+)</td>", table)]
    older = re.search(r"(\d+) older entries \(entries (\d+) to (\d+)\)", html)
    assert older is not None and int(older.group(3)) < min(listed)
