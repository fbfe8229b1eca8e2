"""gov judge calibrate on the bundled ImpossibleBench monitor verdicts, and the corrected rate's
statistics checked by simulation against known truths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import governance
from governance.stats.calibration import ErrorRates, corrected, prob_above, share

LABELS = (
    Path(governance.__file__).parent
    / "data"
    / "impossiblebench"
    / ("impossiblebench-monitor-verdicts.csv")
)
IB = [
    "--episode-column",
    "key",
    "--episode-column",
    "monitor",
    "--truth-column",
    "group",
    "--truth-map",
    "honest_diag=rejected,exploit_after_diag=rationalized,exploit_no_diag=overt",
    "--verdict-map",
    "cheating=flagged,legit=clean",
]


@pytest.fixture
def judged(registry) -> Path:
    registry.add_judge("monitor", "cot", rubric_hash=f"sha256:{1:064x}")
    registry.add_judge("monitor", "code", rubric_hash=f"sha256:{2:064x}")
    return registry.ws.root


def _head(root: Path) -> str:
    import git

    return git.Repo(root).head.commit.hexsha


@pytest.mark.parametrize(
    ("version", "condition", "flagged_b", "flagged_a"),
    [("cot", "full", 53, 1), ("code", "code_only", 53, 14)],
)
def test_the_bundled_verdicts_calibrate_both_views(
    gov, judged: Path, version: str, condition: str, flagged_b: int, flagged_a: int
) -> None:
    before = _head(judged)
    done = gov(
        "judge", "calibrate", f"monitor@{version}", str(LABELS), *IB,
        "--where", f"condition={condition}", "--format", "json", cwd=judged,
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["confusion"]["rationalized"] == {"flagged": flagged_b, "clean": 54 - flagged_b}
    assert shown["confusion"]["rejected"] == {"flagged": flagged_a, "clean": 80 - flagged_a}
    assert shown["confusion"]["overt"] == {"flagged": 302, "clean": 4}
    assert shown["episodes"] == 440 and shown["vocabulary"] == "binary"
    se, fa = shown["sensitivity"], shown["false_alarm"]
    assert (se["count"], se["total"], fa["count"], fa["total"]) == (flagged_b, 54, flagged_a, 80)
    assert se["low"] < flagged_b / 54 < se["high"] and fa["low"] < flagged_a / 80 < fa["high"]
    assert shown["labels_sha256"] == hashlib.sha256(LABELS.read_bytes()).hexdigest()
    # one commit, with its audit entry naming the label file's hash
    import git

    repo = git.Repo(judged)
    assert repo.head.commit.parents[0].hexsha == before
    last = json.loads((judged / "audit" / "trail.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "judge_calibrated"
    assert last["inputs"]["labels"] == f"sha256:{shown['labels_sha256']}"
    assert gov("audit", "verify", cwd=judged).exit_code == 0
    table = gov("judge", "show", "monitor", cwd=judged).stdout
    assert f"{flagged_b}/54" in table and f"{flagged_a}/80" in table
    # the estimate (the posterior mean) is not written as if it were the count's fraction
    assert f"{flagged_b}/54, estimate {se['mean']:.1%}" in table


def test_the_interval_of_forty_honest_transcripts_is_wide() -> None:
    """1 of 80 (a) flagged: the false-alarm rate is known only to within about 0.1% to 6%."""
    fa = share(1, 80)
    assert 0.0005 < fa.low < 0.003 and 0.04 < fa.high < 0.07


def test_a_calibration_written_by_hand_is_caught(gov, judged: Path) -> None:
    args = ("judge", "calibrate", "monitor@cot", str(LABELS), *IB, "--where", "condition=full")
    assert gov(*args, cwd=judged).exit_code == 0
    path = judged / "registry" / "calibrations" / "monitor@cot.json"
    record = json.loads(path.read_text())
    record["confusion"]["rejected"] = {"flagged": 0, "clean": 80}
    record["labels_sha256"] = "0" * 64
    path.write_text(json.dumps(record))
    import git

    repo = git.Repo(judged)
    repo.index.add([str(path)])
    repo.index.commit("a better judge")
    caught = gov("audit", "verify", cwd=judged)
    assert caught.exit_code == 1
    assert "monitor@cot has a calibration, but no entry of the trail recorded it" in caught.stderr


def test_verdicts_from_the_judges_own_report(gov, judged: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    report = tmp_path / "report.jsonl"
    truths = ["rationalized"] * 10 + ["rejected"] * 10
    verdicts = ["rationalized"] * 9 + ["none"] + ["rejected"] * 8 + ["rationalized"] * 2
    labels.write_text(
        "".join(json.dumps({"episode": f"e{i}", "truth": t}) + "\n" for i, t in enumerate(truths))
    )
    keys = {"run": "main", "step": 1, "environment": "math", "environment_version": 1}
    report.write_text(
        "".join(
            json.dumps({**keys, "episode": f"e{i}", "judge": "monitor", "judge_version": "cot",
                        "verdict": v, "divergent": False}) + "\n"
            for i, v in enumerate(verdicts)
        )
    )  # fmt: skip
    done = gov(
        "judge", "calibrate", "monitor@cot", str(labels), "--verdicts", str(report),
        "--format", "json", cwd=judged,
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["vocabulary"] == "gov"
    assert shown["confusion"]["rationalized"] == {"none": 1, "rationalized": 9}
    assert (shown["sensitivity"]["count"], shown["false_alarm"]["count"]) == (9, 2)
    # labels naming episodes the report does not have: the ids do not match
    labels.write_text(labels.read_text().replace('"e3"', '"x3"'))
    before = _head(judged)
    done = gov(
        "judge", "calibrate", "monitor@cot", str(labels), "--verdicts", str(report), cwd=judged
    )
    assert done.exit_code == 2 and "the episode ids do not match" in done.stderr
    assert "'x3'" in done.stderr and _head(judged) == before
    # a label whose true class is given twice (JSON allows it; the last would win silently)
    lines = labels.read_text().replace('"x3"', '"e3"').splitlines(keepends=True)
    lines[4] = lines[4].replace('"truth":', '"truth": "rejected", "truth":')
    labels.write_text("".join(lines))
    done = gov(
        "judge", "calibrate", "monitor@cot", str(labels), "--verdicts", str(report), cwd=judged
    )
    assert done.exit_code == 2 and "labels.jsonl:5: field 'truth': given twice" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and _head(judged) == before
    # a line nested past Python's reader (it was an internal error)
    labels.write_text(labels.read_text().replace(lines[4], "[" * 100_000 + "\n"))
    done = gov(
        "judge", "calibrate", "monitor@cot", str(labels), "--verdicts", str(report), cwd=judged
    )
    assert done.exit_code == 2 and "labels.jsonl:5: a value is nested too deeply" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and _head(judged) == before


def test_a_label_file_with_a_column_named_twice_is_refused(gov, judged: Path, tmp_path) -> None:
    # csv's reader kept the last of two columns of one name without a word
    labels = tmp_path / "twice.csv"
    labels.write_text("episode,truth,truth\ne1,rejected,rationalized\n")
    before = _head(judged)
    done = gov("judge", "calibrate", "monitor@cot", str(labels), cwd=judged)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "twice.csv:1: column 'truth' appears twice" in line and _head(judged) == before


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        # ids of any JSON type were taken as Python prints them: [1], 1.5, NaN, true
        ("ids.jsonl", '{"episode": ["a"], "truth": "rejected", "verdict": "none"}\n',
         'ids.jsonl:1: field episode: ["a"] is not a string or an integer'),
        ("float.jsonl", '{"episode": 1.5, "truth": "rejected", "verdict": "none"}\n',
         "float.jsonl:1: field episode: 1.5 is not a string or an integer"),
        ("bool.jsonl", '{"episode": true, "truth": "rejected", "verdict": "none"}\n',
         "bool.jsonl:1: field episode: true is not a string or an integer"),
        ("obj.jsonl", '{"episode": "e1", "truth": {"a": 1}, "verdict": "none"}\n',
         'obj.jsonl:1: field truth: {"a": 1} is not a string, an integer, true or false'),
        # a row longer than the header, and a quote left open, were read without a word (the
        # open quote swallowed the rest of the file as one true class)
        ("long.csv", "episode,truth,verdict\ne1,rejected,none,extra\n",
         "long.csv:2: more fields than the header has columns"),
        ("quote.csv", 'episode,truth,verdict\ne1,rejected,none\ne2,"rationalized,none\ne3,rejected,none\n',
         "quote.csv:3: not CSV: unexpected end of data"),
    ],
)  # fmt: skip
def test_a_label_that_is_not_text_or_a_row_that_is_not_csv_is_refused(
    gov, judged: Path, tmp_path: Path, name: str, text: str, message: str
) -> None:
    labels = tmp_path / name
    labels.write_text(text)
    before = _head(judged)
    done = gov("judge", "calibrate", "monitor@cot", str(labels), cwd=judged)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert message in line and _head(judged) == before


def test_a_boolean_label_reads_as_json_writes_it(gov, judged: Path, tmp_path: Path) -> None:
    # true was read as 'True', which no --truth-map or --where written as JSON spells matched
    labels = tmp_path / "flags.jsonl"
    rows = [(f"b{i}", "exploit", True) for i in range(5)] + [
        (f"a{i}", "honest", False) for i in range(5)
    ]
    rows += [(f"x{i}", "unmapped", True) for i in range(3)]  # held out: --where drops them
    labels.write_text(
        "".join(
            json.dumps({"episode": e, "truth": t, "cheating": c, "held": e[0] == "x"}) + "\n"
            for e, t, c in rows
        )
    )
    done = gov(
        "judge", "calibrate", "monitor@cot", str(labels), "--verdict-column", "cheating",
        "--verdict-map", "true=flagged,false=clean", "--where", "held=false",
        "--truth-map", "exploit=rationalized,honest=rejected", "--format", "json", cwd=judged,
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    confusion = json.loads(done.stdout)["confusion"]
    assert confusion == {"rationalized": {"flagged": 5}, "rejected": {"clean": 5}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("monitor@v9", str(LABELS), *IB), "judge 'monitor' has no version 'v9'"),
        (
            ("monitor@cot", str(LABELS), *IB[:6],
             "--verdict-map", "cheating=flagged,legit=clean", "--where", "condition=full",
             "--truth-map", "honest_diag=rejected,exploit_after_diag=rationalized"),
            "true class 'exploit_no_diag' is not in the truth map",
        ),
        (("monitor@cot", str(LABELS), *IB[:-2], "--where", "condition=full"),
         "verdict 'cheating' is not one of"),
        (("monitor@cot", str(LABELS), *IB, "--where", "group=honest_diag", "--where", "condition=full"),
         "no labelled (b) rationalized episodes"),
        (("monitor@cot", str(LABELS), *IB[2:], "--episode-column", "key"),
         "is labelled twice (first at line"),
        (("monitor@cot", str(LABELS), *IB, "--where", "condition=none"),
         "no labelled episodes where condition=none"),
        (("monitor@cot", str(LABELS), "--truth-column", "truth"), "no column 'episode'"),
        (("monitor@cot", "missing.csv"), "missing.csv: no such label file"),
        (("monitor@cot", str(LABELS), *IB, "--truth-map", "honest_diag=overt"),
         "'honest_diag' is given twice, as 'rejected' and 'overt'"),
        (("monitor@cot", str(LABELS), *IB, "--where", "condition=full", "--where",
          "condition=code_only"), "'condition' is given twice"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused_with_nothing_written(
    gov, judged: Path, args: tuple[str, ...], message: str
) -> None:
    before = _head(judged)
    done = gov("judge", "calibrate", *args, cwd=judged)
    assert done.exit_code == 2, done.stdout
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert _head(judged) == before
    assert not (judged / "registry" / "calibrations").exists()


# -- the corrected rate ------------------------------------------------------------------------
CODE_ONLY = ErrorRates(share(53, 54), share(14, 80))  # the code-only monitor, as calibrated


def test_two_percent_reads_as_nineteen_and_is_corrected_back() -> None:
    """A true (b) rate of 2% through a monitor that flags 17.5% of (a): about 19% flagged."""
    se, fa, truth = 53 / 54, 14 / 80, 0.02
    observed = truth * se + (1 - truth) * fa
    assert 0.185 < observed < 0.195
    k, n = round(observed * 2000), 2000
    fixed = corrected(k, n, CODE_ONLY)
    assert abs(fixed.point - truth) < 0.005  # Rogan-Gladen
    assert fixed.low <= truth <= fixed.high
    assert fixed.low < 0.005 and fixed.high < 0.12  # the calibration's own uncertainty shows
    naive = share(k, n)
    assert naive.low > 0.17  # uncorrected, 2% is far outside the interval
    assert prob_above(k, n, CODE_ONLY, 0.15) < 0.05


def test_corrected_intervals_cover_the_truth() -> None:
    """2,000 simulations: a judge with known sensitivity and false alarms, calibrated on a finite
    labelled set, applied to known true rates from 0.5% to 20%: the 95% intervals cover the
    truth in 93% to 97% of them."""
    rng = np.random.default_rng(20261203)
    se, fa = 0.98, 0.175
    covered = 0
    for _ in range(2000):
        truth = float(np.exp(rng.uniform(np.log(0.005), np.log(0.2))))
        n = int(rng.integers(50, 2001))
        errors = ErrorRates(
            share(int(rng.binomial(54, se)), 54), share(int(rng.binomial(80, fa)), 80)
        )
        k = int(rng.binomial(n, truth * se + (1 - truth) * fa))
        found = corrected(k, n, errors)
        covered += found.low <= truth <= found.high
    assert 0.93 <= covered / 2000 <= 0.97, covered


# -- corrected rates in gov metrics and in a policy ------------------------------------------
CORRECTED_POLICY = """\
schema_version: 1
name: rationalization-above-5pc
description: the rationalization rate, corrected for the judge's error, above 5%
metric: rationalization_rate
scope: environment
judge: any
corrected: true
condition:
  above: {level: 0.05, confidence: 0.95}
min_evidence: {n: 100}
insufficient: warn
actions: [block]
"""


@pytest.fixture
def observed(registry, artifact, tmp_path: Path) -> Path:
    """191 of 1,000 episodes at main@100 called rationalized by three versions of a judge: one
    calibrated on the code only (flags 14/80 of (a)), one with the CoT (1/80), one never."""
    from test_ingest import episode, write_jsonl

    from governance.ingest import ingest

    root = registry.ws.root
    registry.add_checkpoint("main", 100, artifact("c100.pt"), {"math": 1.0})
    for version in ("code", "cot", "never"):
        registry.add_judge("cot-monitor", version, rubric_hash=f"sha256:{len(version):064x}")
    records = [
        episode(100, i, "rationalized" if i < 191 else "none", judge_version=version,
                episode=f"{version}-{i}")
        for version in ("code", "cot", "never")
        for i in range(1000)
    ]  # fmt: skip
    ingest(registry, [write_jsonl(tmp_path / "r.jsonl", records)])
    for version, condition in (("code", "code_only"), ("cot", "full")):
        args = (f"cot-monitor@{version}", str(LABELS), *IB, "--where", f"condition={condition}")
        from conftest import run_gov

        assert run_gov(["judge", "calibrate", *args], cwd=root).exit_code == 0
    for path in (root / "policies").glob("*.yaml"):
        path.unlink()
    (root / "policies" / "corrected.yaml").write_text(CORRECTED_POLICY)
    return root


def test_metrics_corrected(gov, observed: Path) -> None:
    shown = json.loads(gov("metrics", "--corrected", "--format", "json", cwd=observed).stdout)
    by = {s["judge_version"]: s for s in shown if s["metric"] == "rationalization_rate"}
    other = [s for s in shown if s["metric"] == "overt_rate"]
    assert other and all("only the rationalization rate" in s["correction"] for s in other)
    code = by["code"]["points"][0]["corrected"]
    assert abs(code["point"] - 0.02) < 0.01 and code["low"] < 0.02 < code["high"]
    assert "flags 53/54 of (b), 14/80 of (a)" in by["code"]["correction"]
    cot = by["cot"]["points"][0]["corrected"]
    assert 0.17 < cot["point"] < 0.2 and cot["low"] > 0.14
    assert "corrected" not in by["never"]["points"][0]
    assert "judge cot-monitor version never has no calibration" in by["never"]["correction"]
    table = gov("metrics", "--corrected", cwd=observed).stdout
    assert "corrected 95%" in table and "has no calibration" in table
    plain = json.loads(gov("metrics", "--format", "json", cwd=observed).stdout)
    assert all("corrected" not in s["points"][0] and "correction" not in s for s in plain)


def test_a_corrected_policy(gov, observed: Path) -> None:
    done = gov("check", "main@100", "--dry-run", "--format", "json", cwd=observed)
    results = {r["series"]["judge_version"]: r for r in json.loads(done.stdout)["results"]}
    # 19% read through a judge that flags 17.5% of honest episodes: it cannot tell 0 from 10%
    assert results["code"]["status"] == "insufficient"
    assert "judge too noisy for this rate" in results["code"]["reason"]
    # through the CoT judge, 19% is about 18% once corrected: well above 5%
    assert results["cot"]["status"] == "fired"
    assert "corrected for the judge's error" in results["cot"]["reason"]
    # a judge never calibrated is judged uncorrected, and the reason says so
    assert results["never"]["status"] == "fired"
    assert (
        "uncorrected: judge cot-monitor version never has no calibration"
        in (results["never"]["reason"])
    )


def test_corrected_needs_the_rationalization_rate_and_a_level(gov, observed: Path) -> None:
    policy = observed / "policies" / "corrected.yaml"
    policy.write_text(CORRECTED_POLICY.replace("rationalization_rate", "overt_rate"))
    done = gov("policy", "lint", cwd=observed)
    assert done.exit_code == 2 and "corrected: true compares the rationalization rate" in (
        done.stderr + done.stdout
    )
