"""gov check, promote and flags on the bundled example and on small workspaces."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import git
import pytest
from test_ingest import episode, write_jsonl

from conftest import commit_edits, snapshot
from governance import open_registry
from governance.example import Healthy, Rising, Spike, load_spec
from governance.gates import decide
from governance.stats.posteriors import prob_above, prob_rise

ROOT = Path(__file__).resolve().parent.parent


def test_statistics_match_independent_computations() -> None:
    import numpy as np
    from scipy import stats

    for k, n, level in ((0, 30, 0.1), (3, 100, 0.01), (40, 50, 0.7)):
        expected = stats.beta(k + 0.5, n - k + 0.5).sf(level)
        assert abs(prob_above(k, n, level) - expected) < 1e-12
    # The rise probability against a Monte Carlo estimate with both posteriors sampled.
    rng = np.random.default_rng(5)
    for k, n, k0, n0, factor in ((15, 171, 6, 1538, 3.0), (4, 200, 3, 400, 2.0)):
        rate = rng.beta(k + 0.5, n - k + 0.5, 400_000)
        base = rng.beta(k0 + 0.5, n0 - k0 + 0.5, 400_000)
        assert abs(prob_rise(k, n, k0, n0, factor) - np.mean(rate > factor * base)) < 0.005
    assert abs(prob_rise(50, 1000, 50, 1000, 1.0) - 0.5) < 0.02


def test_defaults_flag_only_the_rising_environment(example_template: Path) -> None:
    reg = open_registry(example_template)
    spec = load_spec()
    kinds = {e.id: type(e.pattern) for e in spec.environments}
    # Exactly one environment is planted as rising: it alone may be flagged.
    [(rising, rise)] = [(e, e.pattern) for e in spec.environments if isinstance(e.pattern, Rising)]
    first_fire: dict[str, int] = {}
    for ckpt in reg.checkpoints("main"):
        decision = decide(reg, ckpt.ref)
        for env in decision.flagged:
            first_fire.setdefault(env, ckpt.step)
        for result in decision.fired:
            if result.series.environment is not None:
                assert kinds[result.series.environment] not in (Spike, Healthy), result
    assert set(first_fire) == {rising.id}
    onset = rise.onset_step
    delay = (first_fire[rising.id] - onset) // spec.step_interval
    assert 0 <= delay <= 6  # flagged after the onset, within a few checkpoints


def test_check_without_a_watched_pair_leaves_the_episode_tables_unread(example_copy: Path) -> None:
    # Only an obfuscation watch with an action-view judge reads the episode tables (DuckDB and
    # the ingest code that builds them); a check without one never loads them, a tenth of a
    # second of every check. The example has no action-view judge: the watch is insufficient.
    code = (
        "import json, sys; from governance import api; "
        "d = api.check(sys.argv[1], 'main@3000', record=False); "
        "print(json.dumps({'watch': [r.status for r in d.results "
        "if r.policy == 'cot-obfuscation-watch'], "
        "'loaded': sorted(m for m in ('duckdb', 'governance.ingest', 'governance.pairs') "
        "if m in sys.modules)}))"
    )
    # The first check of a copied workspace rebuilds the counts cache (its files are new ones,
    # whose stamps the cache does not know), with DuckDB; the checks after it read the cache.
    warm = subprocess.run(
        [sys.executable, "-c", code, str(example_copy)], capture_output=True, text=True, cwd=ROOT
    )
    assert json.loads(warm.stdout)["loaded"] == ["duckdb"], warm.stderr
    done = subprocess.run(
        [sys.executable, "-c", code, str(example_copy)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    found = json.loads(done.stdout)
    assert found["watch"] == ["insufficient"]
    assert found["loaded"] == []


def test_check_exit_codes_and_formats(gov, example_copy: Path) -> None:
    ok = gov("check", "main@3000", "--dry-run", cwd=example_copy)
    assert ok.exit_code == 0 and "decision: PASS at main@3000" in ok.stdout
    blocked = gov("check", "main@11000", "--dry-run", cwd=example_copy)
    assert blocked.exit_code == 1
    assert "BLOCK" in blocked.stdout and "flagged for redesign: code-unit-tests" in blocked.stdout
    junit = gov("check", "main@11000", "--dry-run", "--format", "junit", cwd=example_copy)
    tree = ET.fromstring(junit.stdout)
    assert int(tree.get("failures", "0")) >= 1
    failing = [c for c in tree.iter("testcase") if c.find("failure") is not None]
    assert any("code-unit-tests" in (c.get("name") or "") for c in failing)
    github = gov("check", "main@11000", "--dry-run", "--format", "github", cwd=example_copy)
    assert "::error title=rationalization-rate-rising" in github.stdout
    markdown = gov("check", "main@11000", "--dry-run", "--format", "markdown", cwd=example_copy)
    assert "**block**" in markdown.stdout and "`code-unit-tests`" in markdown.stdout
    data = json.loads(
        gov("check", "main@11000", "--dry-run", "--format", "json", cwd=example_copy).stdout
    )
    assert data["outcome"] == "block" and len(data["digest"]) == 64
    assert set(data["inputs"]) == {"checkpoint", "registry_state", "policies", "reports", "judges"}
    assert data["inputs"]["judges"] == ["cot-monitor@2026.10"]
    unknown = gov("check", "main@12345", cwd=example_copy)
    assert unknown.exit_code == 2 and "main@12345 is not registered" in unknown.stderr


def test_check_writes_its_figures_for_dvc_metrics(gov, example_copy: Path, tmp_path) -> None:
    """`--metrics FILE`: the decision's figures as DVC metrics JSON, the same as the decision."""
    for ref, code in (("main@3000", 0), ("main@11000", 1)):
        metrics = tmp_path / f"{ref}.json"
        done = gov("check", ref, "--dry-run", "--metrics", str(metrics), cwd=example_copy)
        assert done.exit_code == code, done.stderr
        decision = json.loads(
            gov("check", ref, "--dry-run", "--format", "json", cwd=example_copy).stdout
        )
        assert json.loads(metrics.read_text()) == {
            "checkpoint": ref,
            "outcome": decision["outcome"],
            "blocked": code,
            "fired": sum(r["status"] == "fired" for r in decision["results"]),
            "flagged": len(decision["flagged"]),
        }


def test_check_records_flags_and_is_reproducible(gov, example_copy: Path) -> None:
    repo = git.Repo(example_copy)
    head = repo.head.commit.hexsha
    first = gov("check", "main@11000", "--format", "json", cwd=example_copy)
    digest = json.loads(first.stdout)["digest"]
    commit = repo.head.commit
    assert commit.parents[0].hexsha == head
    assert commit.message.startswith("gov: check main@11000: block (flags code-unit-tests)")
    recorded = list((example_copy / "audit" / "decisions").glob("main@11000.*.json"))
    assert len(recorded) == 1 and json.loads(recorded[0].read_text())["digest"] == digest
    reg = open_registry(example_copy)
    assert reg.environment("code-unit-tests").status.value == "flagged"
    assert reg.checkpoint("main", 11000).status.value == "blocked"
    # The same inputs give the same decision, and it is not recorded twice.
    again = json.loads(gov("check", "main@11000", "--format", "json", cwd=example_copy).stdout)
    assert again["digest"] == digest and again["results"] == json.loads(first.stdout)["results"]
    assert repo.head.commit.hexsha == commit.hexsha


_DECIDE = """
import json, sys
from governance import memo, open_registry, parallel
from governance.gates import decide
from governance.stats import evaluate
memo.install = lambda ws: None  # nothing found from an earlier computation
evaluate.MEMO = None
data = decide(open_registry(sys.argv[1]), "main@11000").model_dump(mode="json")
data.pop("evaluated", None)
print(json.dumps({"decision": data, "in_workers": parallel.LAST_IN_WORKERS}))
"""


def _fresh(script: str, workspace: Path, workers: str) -> dict:
    """What `script` prints as JSON, run on `workspace` in a fresh process with GOV_WORKERS."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script, str(workspace)],
        capture_output=True,
        text=True,
        env={**os.environ, "GOV_WORKERS": workers},
        check=True,
    )
    return json.loads(done.stdout)


def test_policies_evaluated_side_by_side_decide_as_one_after_another(
    example_template: Path,
) -> None:
    """A check spreads the policies the counts alone decide over forked workers: the decision is
    the one computed in one process, result for result, in the same order. (Each in a fresh
    process, as `gov check` runs: the test process has other threads, and never forks.)"""
    side_by_side, one_process = (_fresh(_DECIDE, example_template, w) for w in ("3", "1"))
    assert side_by_side["in_workers"] > 3 and one_process["in_workers"] == 0
    decision = side_by_side["decision"]
    assert decision["outcome"] == "block" and decision["flagged"] == ["code-unit-tests"]
    assert decision == one_process["decision"]


_RECOMMEND = """
import json, sys
from governance import memo, open_registry, parallel
from governance.render import jsonable
from governance.rollback import FlaggedSeries, recommend
from governance.stats import evaluate
memo.install = lambda ws: None  # nothing found from an earlier computation
evaluate.MEMO = None
registry = open_registry(sys.argv[1])
every = [FlaggedSeries(e.id, None, None, None, None) for e in registry.environments()]
data = jsonable(recommend(registry, "main", flagged=every))
print(json.dumps({"recommendation": data, "in_workers": parallel.LAST_IN_WORKERS}))
"""


def test_restore_posteriors_side_by_side_place_as_one_after_another(
    example_template: Path,
) -> None:
    """A recommendation computes the flagged series' onset posteriors in forked workers: the
    restore point and every series' evidence are those computed in one process. (Each in a
    fresh process, as `gov rollback recommend` runs.)"""
    side_by_side, one_process = (_fresh(_RECOMMEND, example_template, w) for w in ("3", "1"))
    assert side_by_side["in_workers"] >= 3 and one_process["in_workers"] == 0
    made = side_by_side["recommendation"]
    assert made["restore"] is not None and len(made["flagged"]) >= 3
    assert made == one_process["recommendation"]


def test_later_evidence_does_not_change_an_earlier_decision(
    example_copy: Path, tmp_path: Path
) -> None:
    reg = open_registry(example_copy)
    before = decide(reg, "main@4000")
    late = [
        {
            **episode(12000, i, "rationalized"),
            "environment": "math-proofs",
            "judge_version": "2026.10",
        }
        for i in range(50)
    ]
    from governance.ingest import ingest

    ingest(reg, [write_jsonl(tmp_path / "late.jsonl", late)])
    after = decide(reg, "main@4000")
    assert after.digest == before.digest
    assert [(r.policy, r.series, r.status, r.k, r.n) for r in after.results] == [
        (r.policy, r.series, r.status, r.k, r.n) for r in before.results
    ]


def test_promote_needs_a_recorded_passing_check(gov, example_copy: Path) -> None:
    need = gov("promote", "main@3000", cwd=example_copy)
    assert need.exit_code == 2 and "run `gov check main@3000` first" in need.stderr
    assert gov("check", "main@3000", cwd=example_copy).exit_code == 0
    done = gov("promote", "main@3000", cwd=example_copy)
    assert done.exit_code == 0, done.stderr
    assert open_registry(example_copy).checkpoint("main", 3000).status.value == "promoted"


def test_a_blocked_checkpoint_needs_a_recorded_override(gov, example_copy: Path) -> None:
    assert gov("check", "main@11000", cwd=example_copy).exit_code == 1
    before = snapshot(example_copy)
    refused = gov("promote", "main@11000", cwd=example_copy)
    assert refused.exit_code == 1 and "blocked" in refused.stderr and "--override" in refused.stderr
    no_reason = gov("promote", "main@11000", "--override", cwd=example_copy)
    assert no_reason.exit_code == 2 and "--reason" in no_reason.stderr
    assert snapshot(example_copy) == before
    forced = gov(
        "promote", "main@11000", "--override", "--reason", "judge misfires here", cwd=example_copy
    )
    assert forced.exit_code == 0, forced.stderr
    [override] = list((example_copy / "audit" / "overrides").glob("main@11000.*.json"))
    record = json.loads(override.read_text())
    assert record["reason"] == "judge misfires here" and record["decision_outcome"] == "block"
    assert "rationalization-rate-rising" in record["fired"]
    assert "Override by" in git.Repo(example_copy).head.commit.message


def test_flags_acknowledged_then_resolved_by_a_new_version(gov, example_copy: Path) -> None:
    assert gov("check", "main@11000", cwd=example_copy).exit_code == 1
    listed = json.loads(gov("flags", "list", "--format", "json", cwd=example_copy).stdout)
    assert [(f["environment"], f["status"]) for f in listed] == [("code-unit-tests", "open")]
    assert "rationalization-rate-rising" in {e["policy"] for e in listed[0]["evidence"]}
    ack = gov(
        "flags", "ack", "code-unit-tests", "--reason", "grader rewrite in #4", cwd=example_copy
    )
    assert ack.exit_code == 0
    env_dir = example_copy / "environments" / "code-unit-tests"
    (env_dir / "scoring.yaml").write_text("grader: hidden-tests\n")
    assert (
        gov(
            "env",
            "version",
            "code-unit-tests",
            "--from",
            str(env_dir),
            "--note",
            "hidden tests",
            cwd=example_copy,
        ).exit_code
        == 0
    )
    shown = json.loads(
        gov("flags", "show", "code-unit-tests", "--format", "json", cwd=example_copy).stdout
    )
    assert shown["status"] == "resolved" and shown["resolved_by_version"] == 2
    assert shown["acknowledged_reason"] == "grader rewrite in #4"
    assert open_registry(example_copy).environment("code-unit-tests").status.value == "active"


def test_a_checkpoint_nobody_judged_is_blocked_not_passed(
    gov, registry, workspace: Path, artifact
) -> None:
    # Missing evidence never passes: with no judgments anywhere, the decision says so and blocks.
    registry.add_checkpoint("main", 100, artifact("a.pt"), {"math": 1.0})
    result = gov("check", "main@100", cwd=workspace)
    assert result.exit_code == 1, result.stderr
    assert "decision: BLOCK at main@100" in result.stdout
    data = json.loads(gov("check", "main@100", "--format", "json", cwd=workspace).stdout)
    verdicts = {r["policy"]: r for r in data["results"]}
    assert verdicts["not-judged-yet"]["status"] == "fired"
    assert "not judged yet: main@100 has no judged episodes" in verdicts["not-judged-yet"]["reason"]
    others = [r for r in data["results"] if r["policy"] != "not-judged-yet"]
    assert others and all(r["status"] == "insufficient" for r in others)
    refused = gov("promote", "main@100", cwd=workspace)
    assert refused.exit_code == 1 and "main@100" in refused.stderr


def test_thin_evidence_can_be_made_to_block(
    gov, registry, workspace: Path, artifact, tmp_path: Path
) -> None:
    registry.add_checkpoint("main", 100, artifact("a.pt"), {"math": 1.0})
    from governance.ingest import ingest

    ingest(registry, [write_jsonl(tmp_path / "r.jsonl", [episode(100, i) for i in range(5)])])
    for path in (workspace / "policies").glob("*.yaml"):
        path.unlink()
    (workspace / "policies" / "strict.yaml").write_text(
        "name: strict\ndescription: thin evidence blocks\nmetric: overt_rate\n"
        "condition: {above: {level: 0.05}}\nmin_evidence: {n: 100}\ninsufficient: block\n"
        "actions: [block]\n"
    )
    commit_edits(workspace, "the strict policy")
    result = gov("check", "main@100", cwd=workspace)
    assert result.exit_code == 1
    assert "n = 5 < 100" in result.stdout


def test_the_python_api_cannot_promote_around_the_gate(registry, workspace: Path, artifact) -> None:
    from governance.errors import GovError
    from governance.models import CheckpointStatus

    registry.add_checkpoint("main", 100, artifact("a.pt"), {"math": 1.0})
    with pytest.raises(GovError, match="promoted only by `gov promote`"):
        registry.set_checkpoint_status("main", 100, CheckpointStatus.PROMOTED)


RISE_POLICY = (
    "name: {name}\ndescription: a rise against a baseline\nmetric: rationalization_rate\n"
    "condition: {{rise: {{baseline: {baseline}, factor: 3, confidence: 0.95}}}}\n"
    "min_evidence: {{n: 50}}\ninsufficient: pass\nactions: [block]\n"
)


def test_rise_baselines_promoted_and_named_checkpoints(
    gov, registry, workspace: Path, artifact, tmp_path: Path
) -> None:
    from governance.ingest import ingest

    # Rationalized per 200 episodes: high at the start, low at 300, then a rise at 400 that is
    # a rise against 300 (1%) but not against the first two checkpoints (10%). 250 is never
    # judged.
    planted = {100: 20, 200: 20, 300: 2, 400: 30}
    for step in (100, 200, 250, 300, 400):
        registry.add_checkpoint("main", step, artifact(f"c{step}.pt"), {"math": 1.0})
    records = [
        episode(step, i, "rationalized" if i < k else "none")
        for step, k in planted.items()
        for i in range(200)
    ]
    ingest(registry, [write_jsonl(tmp_path / "r.jsonl", records)])
    for path in (workspace / "policies").glob("*.yaml"):
        path.unlink()
    baselines = {
        "vs-first": "{first: 2}",
        "vs-promoted": "{promoted: true}",
        "vs-300": "{checkpoint: main@300}",
        "vs-100": "{checkpoint: main@100}",
        "vs-250": "{checkpoint: main@250}",
    }
    for name, baseline in baselines.items():
        (workspace / "policies" / f"{name}.yaml").write_text(
            RISE_POLICY.format(name=name, baseline=baseline)
        )

    def results(ref: str) -> dict[str, dict]:
        out = gov("check", ref, "--dry-run", "--format", "json", cwd=workspace)
        assert out.exit_code in (0, 1), out.stderr
        found = json.loads(out.stdout)["results"]
        judged = [r for r in found if r["policy"] == "not-judged-yet"]  # the built-in
        assert [r["status"] for r in judged] == ["clear"]
        found = [r for r in found if r["policy"] != "not-judged-yet"]
        assert len(found) == len(baselines)  # one series (math v1), one result per policy
        return {r["policy"]: r for r in found}

    at = results("main@400")
    assert at["vs-first"]["status"] == "clear" and at["vs-first"]["baseline"] == [40, 400]
    assert at["vs-100"]["status"] == "clear" and at["vs-100"]["baseline"] == [20, 200]
    assert at["vs-300"]["status"] == "fired" and at["vs-300"]["baseline"] == [2, 200]
    assert at["vs-promoted"]["status"] == "insufficient"
    assert "no promoted checkpoint before this one" in at["vs-promoted"]["reason"]
    assert at["vs-250"]["status"] == "insufficient"
    assert "main@250 has no judgments" in at["vs-250"]["reason"]

    commit_edits(workspace, "the baselines' policies")
    # Promote main@300 (its check passes: nothing rose by then), and the promoted baseline is
    # that checkpoint's 2/200: the rise at 400 now fires against it.
    assert gov("check", "main@300", cwd=workspace).exit_code == 0
    assert gov("promote", "main@300", cwd=workspace).exit_code == 0
    at = results("main@400")
    assert at["vs-promoted"]["status"] == "fired" and at["vs-promoted"]["baseline"] == [2, 200]
    assert at["vs-first"]["status"] == "clear"
    blocked = gov("check", "main@400", "--dry-run", cwd=workspace)
    assert blocked.exit_code == 1 and "BLOCK" in blocked.stdout
    # A checkpoint promoted later is no baseline for an earlier one.
    earlier = results("main@200")
    assert earlier["vs-promoted"]["status"] == "insufficient"
    assert "no promoted checkpoint before this one" in earlier["vs-promoted"]["reason"]


def test_a_reader_that_stops_reading_cuts_the_output_not_the_decision(example_copy: Path) -> None:
    # `gov check X | head -1`: click stopped the command at the write the closed pipe refused
    # and exited 1, which reads as a block, for a checkpoint that passed
    import os
    import shutil

    gov = shutil.which("gov")
    assert gov, "the installed `gov` command: install the package first"
    for ref, code in (("main@3000", 0), ("main@12000", 1)):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before gov writes its first line
        proc = subprocess.Popen(
            [gov, "check", ref], cwd=example_copy, stdout=write, stderr=subprocess.PIPE
        )
        os.close(write)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, err.decode()
        assert not err.strip(), err.decode()
        decision = "pass" if code == 0 else "block"
        recorded = [c.message for c in git.Repo(example_copy).iter_commits(max_count=5)]
        assert any(m.startswith(f"gov: check {ref}: {decision}") for m in recorded)
        # `2>&1 | head -1`: the error stream into the closed pipe as well
        read, write = os.pipe()
        os.close(read)
        both = subprocess.run(
            [gov, "check", ref, "--dry-run"], cwd=example_copy, stdout=write, stderr=write
        )
        os.close(write)
        assert both.returncode == code
    # an error said into a closed pipe is still exit 2, not 1 (which reads as a block)
    read, write = os.pipe()
    os.close(read)
    bad = subprocess.run([gov, "check", "ghost@5"], cwd=example_copy, stdout=write, stderr=write)
    os.close(write)
    assert bad.returncode == 2
