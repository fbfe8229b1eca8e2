"""The gate fails closed: missing evidence never passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_regressions import _counts, _run

from conftest import commit_edits
from governance import open_registry
from governance.backtest import backtest
from governance.gates import decide


def _history() -> list[dict]:
    # math at 1% for 12 checkpoints, then 16x that for 12 more; nothing was checked meanwhile
    return [_counts(100 * i, 300, rationalized=3 if i <= 12 else 48) for i in range(1, 25)]


def test_an_unjudged_checkpoint_sees_the_history_and_cannot_pass(
    gov, registry, artifact, tmp_path: Path
) -> None:
    _run(registry, artifact, tmp_path, gov, _history())
    registry.add_checkpoint("main", 3100, artifact("late.pt"), {"math": 1.0})
    checked = gov("check", "main@3100", "--format", "json", cwd=registry.ws.root)
    assert checked.exit_code == 1, checked.stderr
    data = json.loads(checked.stdout)
    assert data["outcome"] == "block"
    fired = {r["policy"] for r in data["results"] if r["status"] == "fired"}
    # its own judgments are missing, and the history before it shows the rise
    assert {"not-judged-yet", "rationalization-rate-rising"} <= fired
    promoted = gov("promote", "main@3100", cwd=registry.ws.root)
    assert promoted.exit_code == 1


@pytest.fixture
def waiting_checkpoint(gov, registry, artifact, tmp_path: Path) -> None:
    """Ten judged checkpoints at a steady 1%, and main@1100 registered but not judged yet."""
    steady = [_counts(100 * i, 300, rationalized=3) for i in range(1, 11)]
    _run(registry, artifact, tmp_path, gov, steady)
    registry.add_checkpoint("main", 1100, artifact("next.pt"), {"math": 1.0})


def test_a_clean_unjudged_checkpoint_waits_for_its_judgments(
    gov, registry, tmp_path: Path, waiting_checkpoint: None
) -> None:
    waiting = gov("check", "main@1100", cwd=registry.ws.root)
    assert waiting.exit_code == 1
    assert "not judged yet: main@1100 has no judged episodes of its own" in waiting.stdout
    report = tmp_path / "late.jsonl"
    report.write_text(json.dumps(_counts(1100, 300, rationalized=3)) + "\n")
    assert gov("ingest", str(report), cwd=registry.ws.root).exit_code == 0
    judged = gov("check", "main@1100", cwd=registry.ws.root)
    assert judged.exit_code == 0, judged.stdout
    assert gov("promote", "main@1100", cwd=registry.ws.root).exit_code == 0


def test_a_policy_can_let_unjudged_checkpoints_through_with_a_warning(
    gov, registry, tmp_path: Path, waiting_checkpoint: None
) -> None:
    policy = registry.ws.root / "policies" / "not-judged-yet.yaml"
    policy.write_text(policy.read_text().replace("actions: [block]", "actions: [warn]"))
    decision = decide(registry, "main@1100")
    assert decision.outcome == "warn"
    assert [r.policy for r in decision.results if r.status == "fired"] == ["not-judged-yet"]


def test_the_backtest_blocks_the_checkpoints_check_would_block_for_want_of_judgments(
    gov, registry, tmp_path: Path, waiting_checkpoint: None
) -> None:
    reg = open_registry(registry.ws.root)
    result = backtest(reg, "main")
    assert result.outcomes["main@1100"] == "block" == decide(reg, "main@1100").outcome
    assert result.outcomes["main@1000"] == "pass" == decide(reg, "main@1000").outcome


def test_a_recheck_after_a_redesign_flags_only_the_version_that_rose(
    gov, example_copy: Path, tmp_path: Path
) -> None:
    import shutil

    ws = tmp_path / "ex"
    shutil.copytree(example_copy, ws, symlinks=True)
    reg = open_registry(ws)
    [flag] = [f for f in reg.flags() if f.environment == "code-unit-tests"]
    assert flag.version == 1
    done = gov("rollback", "apply", "--to", str(tmp_path / "restart.bin"), "--yes", cwd=ws)
    assert done.exit_code == 0, done.stderr
    env_dir = ws / "environments" / "code-unit-tests"
    (env_dir / "scoring.yaml").write_text("grader: hidden tests\n")
    reg = open_registry(ws)
    reg.add_environment_version("code-unit-tests", paths=[env_dir], note="hidden tests")
    # Checking an old checkpoint again reads v1's evidence: it blocks that checkpoint, and
    # flags nothing (v1's flag was raised and resolved; v2 has no evidence against it).
    again = gov("check", "main@12000", "--format", "json", cwd=ws)
    assert again.exit_code == 1
    assert json.loads(again.stdout)["flagged"] == []
    reg = open_registry(ws)
    assert reg.environment("code-unit-tests").status.value == "active"
    assert [f.version for f in reg.flags() if f.environment == "code-unit-tests"] == [1]
    # The restarted run, trained on v2, is not blocked by the redesign gate; and --latest
    # follows it rather than `main`.
    [new] = [r for r in reg.runs() if r.parent_run == "main"]
    mix = {e.id: 1 / len(reg.environments()) for e in reg.environments()}
    (ws / "ckpt").mkdir()
    (ws / "ckpt" / "b.bin").write_bytes(b"b")
    step = (new.forked_from_step or 0) + 250
    reg.add_checkpoint(new.id, step, ws / "ckpt" / "b.bin", mix)
    latest = gov("check", "--latest", "--dry-run", "--format", "json", cwd=ws)
    data = json.loads(latest.stdout)
    assert data["checkpoint"] == f"{new.id}@{step}"
    assert not [r for r in data["results"] if r["policy"] == "redesign-gate"]


def test_absurd_counts_are_refused_at_ingest_and_the_workspace_stays_usable(
    gov, registry, artifact, tmp_path: Path
) -> None:
    _run(registry, artifact, tmp_path, gov, [_counts(100, 300, rationalized=3)])
    huge = _counts(100, 10**30, rationalized=3)
    one = tmp_path / "huge.jsonl"
    one.write_text(json.dumps(huge) + "\n")
    refused = gov("ingest", str(one), cwd=registry.ws.root)
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr
    assert "huge.jsonl:1" in refused.stderr and "n" in refused.stderr
    half = 2**62
    two = tmp_path / "two.jsonl"
    record = _counts(100, half, rationalized=3)
    two.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    refused = gov("ingest", str(two), cwd=registry.ws.root)
    assert refused.exit_code == 2
    # each record alone is over the bound too; a pair under it is one group counted twice
    below = 6 * 10**11
    pair = _counts(100, below, rationalized=3)
    three = tmp_path / "pair.jsonl"
    three.write_text(json.dumps(pair) + "\n" + json.dumps(pair) + "\n")
    refused = gov("ingest", str(three), cwd=registry.ws.root)
    assert refused.exit_code == 2
    assert "pair.jsonl:2" in refused.stderr and "is counted already by" in refused.stderr
    for command in (("metrics",), ("check", "main@100"), ("backtest",)):
        done = gov(*command, cwd=registry.ws.root)
        assert done.exit_code in (0, 1), (command, done.stderr)


def test_a_step_has_one_spelling(gov, registry, artifact, tmp_path: Path) -> None:
    _run(registry, artifact, tmp_path, gov, [_counts(1400, 300, rationalized=3)])
    for ref in ("main@01400", "main@\u0661\u0664\u0660\u0660", "main@+1400", "main@1_400"):
        refused = gov("check", ref, cwd=registry.ws.root)
        assert refused.exit_code == 2, ref
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert gov("check", "main@1400", cwd=registry.ws.root).exit_code in (0, 1)
    decisions = list((registry.ws.root / "audit" / "decisions").glob("*.json"))
    assert [d.name.split(".")[0] for d in decisions] == ["main@1400"]
    assert gov("promote", "main@1400", cwd=registry.ws.root).exit_code == 0


def test_a_hand_edited_checkpoint_file_is_refused_by_every_command(
    gov, registry, artifact, tmp_path: Path
) -> None:
    _run(registry, artifact, tmp_path, gov, [_counts(s, 300) for s in (100, 200, 300)])
    path = registry.ws.root / "registry" / "checkpoints" / "main.jsonl"
    original = path.read_text()
    lines = original.splitlines()
    for edited, needle in (
        ([*lines, lines[1]], "main.jsonl:4: field step: step 200 is out of order"),
        ([*lines[:2], lines[1], lines[2]], "main.jsonl:3: field step: step 200 appears twice"),
        ([lines[0].replace('"step":100', '"step":"100"'), *lines[1:]], "main.jsonl:1: field step"),
    ):
        path.write_text("\n".join(edited) + "\n")
        head = registry.ws.repo.head.commit.hexsha
        for command in (
            ("check", "main@300"),
            ("checkpoint", "list"),
            ("checkpoint", "add", "main@400", str(artifact("d.pt")), "-e", "math=1"),
        ):
            refused = gov(*command, cwd=registry.ws.root)
            assert refused.exit_code == 2, (command, refused.stdout)
            assert needle in refused.stderr, (command, refused.stderr)
        assert registry.ws.repo.head.commit.hexsha == head
    path.write_text(original)
    assert gov("check", "main@300", cwd=registry.ws.root).exit_code in (0, 1)


def _commit_all(root: Path, message: str) -> None:
    import git

    repo = git.Repo(root)
    repo.git.add("-A", "registry")
    repo.index.commit(message)


@pytest.mark.parametrize("cache", ["kept", "cleared"])
def test_counts_taken_from_the_registry_never_pass_a_blocked_checkpoint(
    gov, example_copy: Path, cache: str
) -> None:
    # The example blocks at main@12000. Its counts files deleted by hand (and the deletion
    # committed), the gate must not read the rest as the whole evidence, with or without the
    # local cache built before (a fresh clone has none).
    assert gov("check", "main@12000", "--dry-run", cwd=example_copy).exit_code == 1
    counts = sorted((example_copy / "registry" / "counts").glob("*.csv"))
    gone = [p for p in counts if any(",5000," in line for line in p.read_text().splitlines())]
    assert gone
    for path in gone:
        path.unlink()
    _commit_all(example_copy, "hand edit: counts removed")
    if cache == "cleared":
        import shutil

        shutil.rmtree(example_copy / ".gov" / "index")
    done = gov("check", "main@12000", "--dry-run", cwd=example_copy)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert f"registry/counts/{gone[0].name}: missing" in line and "restore" in line


def test_counts_changed_after_ingest_are_refused_alike_with_and_without_the_cache(
    gov, example_copy: Path
) -> None:
    path = sorted((example_copy / "registry" / "counts").glob("*.csv"))[-1]
    lines = path.read_text().splitlines(keepends=True)
    head = lines[0].strip().split(",")
    cells = lines[1].strip().split(",")
    for column in ("n", "none"):  # one episode fewer, still adding up: only the ledger knows
        cells[head.index(column)] = str(int(cells[head.index(column)]) - 1)
    lines[1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))
    _commit_all(example_copy, "hand edit: a count lowered")
    kept = gov("metrics", cwd=example_copy)  # the cache built before the edit exists
    import shutil

    shutil.rmtree(example_copy / ".gov" / "index")
    fresh = gov("metrics", cwd=example_copy)
    for done in (kept, fresh):
        assert done.exit_code == 2, done.stdout
        [line] = done.stderr.strip().splitlines()
        assert path.name in line and "changed after ingest" in line
    # a count that is not a whole number, or does not add up, is named by its line
    cells[head.index("none")] = "1.5"
    lines[1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))
    done = gov("metrics", cwd=example_copy)
    assert done.exit_code == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"{path.name}:2: not a row of counts" in line


def test_a_hand_formatted_ledger_line_still_pins_its_counts_file(gov, example_copy: Path) -> None:
    # The caches of the counts record the stamp of each counts file the ledger names; a ledger
    # line written by hand as `"md5" : "..."` was not seen to name one, so an edit of its counts
    # file, committed after the cache was built, was hidden by the cache.
    ledger = example_copy / "registry" / "reports.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    assert '"md5":"' in lines[-1]
    lines[-1] = lines[-1].replace('"md5":"', '"md5" : "', 1)
    md5 = lines[-1].split('"md5" : "', 1)[1][:32]
    ledger.write_text("".join(lines))
    _commit_all(example_copy, "hand edit: the ledger's last line spaced out")
    assert gov("metrics", cwd=example_copy).exit_code == 0  # builds the cache
    path = example_copy / "registry" / "counts" / f"{md5}.csv"
    rows = path.read_text().splitlines(keepends=True)
    head = rows[0].strip().split(",")
    cells = rows[1].strip().split(",")
    for column in ("n", "none"):
        cells[head.index(column)] = str(int(cells[head.index(column)]) + 1)
    rows[1] = ",".join(cells) + "\n"
    path.write_text("".join(rows))
    _commit_all(example_copy, "hand edit: a count raised")
    done = gov("metrics", cwd=example_copy)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert path.name in line and "changed after ingest" in line


def test_a_counts_file_the_ledger_does_not_name_is_not_counted(gov, example_copy: Path) -> None:
    before = gov("metrics", "--format", "json", cwd=example_copy)
    assert before.exit_code == 0
    first = sorted((example_copy / "registry" / "counts").glob("*.csv"))[0]
    (first.parent / f"{'f' * 32}.csv").write_bytes(first.read_bytes())  # the same counts again
    _commit_all(example_copy, "hand edit: counts of no report")
    import shutil

    shutil.rmtree(example_copy / ".gov" / "index")
    after = gov("metrics", "--format", "json", cwd=example_copy)
    assert after.exit_code == 0 and after.stdout == before.stdout


def _misspell_judge(policies: Path) -> None:
    path = policies / "rationalization-rate-rising.yaml"
    path.write_text(path.read_text().replace("judge: any ", "judge: cot-monitr ", 1))
    assert "cot-monitr" in path.read_text()


def _misspell_environment(policies: Path) -> None:
    path = policies / "rationalization-rate-rising.yaml"
    text = path.read_text().replace("judge: any ", "environments: [code-unit-test]\njudge: any ", 1)
    path.write_text(text)
    assert "code-unit-test]" in path.read_text()


def _misname_file(policies: Path) -> None:
    (policies / "rationalization-rate-rising.yaml").rename(policies / "Rising.YAML")


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        # a misspelt judge read no series, found no evidence and passed
        (_misspell_judge, "rising.yaml: ", "judge 'cot-monitr' is not registered"),
        # a misspelt environment was watched by nobody: the rise at main@12000 passed
        (
            _misspell_environment,
            "rising.yaml: ",
            "environments: 'code-unit-test' is not registered",
        ),
        # a file named .YAML was never read
        (_misname_file, "policies/Rising.YAML: ", "not read as a policy"),
    ],
)
def test_a_policy_that_would_read_nothing_stops_the_check_and_the_lint(
    gov, example_copy: Path, edit, where: str, message: str
) -> None:
    # either way the block at main@12000 became a pass without a word, and `gov policy lint`
    # found nothing
    edit(example_copy / "policies")
    done = gov("check", "main@12000", "--dry-run", cwd=example_copy)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert where + message in line
    linted = gov("policy", "lint", cwd=example_copy)
    assert linted.exit_code == 2 and where in linted.stderr and message in linted.stderr


def test_a_broken_checkpoint_line_is_named_by_every_command_that_reads_it(
    gov, example_copy: Path
) -> None:
    # check and checkpoint show read one line by a shortcut, which crashed on a cut line (exit
    # 3) and took a line of another run's for this run's
    path = example_copy / "registry" / "checkpoints" / "main.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    for broken, message in (
        (lines[-1][:-40] + "\n", "main.jsonl:48: invalid JSON"),
        (lines[-1].replace('"run":"main"', '"run":"other"', 1), "main.jsonl:48: field run"),
    ):
        assert broken != lines[-1]
        path.write_text("".join([*lines[:-1], broken]))
        for command in (["check", "main@12000", "--dry-run"], ["checkpoint", "show", "main@12000"]):
            done = gov(*command, cwd=example_copy)
            assert done.exit_code == 2, (command, done.stdout, done.stderr)
            [line] = done.stderr.strip().splitlines()
            assert message in line, line


@pytest.mark.parametrize("edit", ["verdict moved", "cell blanked"])
def test_counts_edited_without_changing_their_totals_are_refused(
    gov, example_copy: Path, edit: str
) -> None:
    # the totals the ledger records cannot see a judgment moved from one verdict to another in
    # a row, and DuckDB read an emptied cell as missing: both turned the block at main@12000
    # into a warning
    path = next(
        p
        for p in sorted((example_copy / "registry" / "counts").glob("*.csv"))
        if any(",12000," in line for line in p.read_text().splitlines())
    )
    lines = path.read_text().splitlines(keepends=True)
    head = lines[0].strip().split(",")
    for i, line in enumerate(lines[1:], 1):
        cells = line.strip().split(",")
        if int(cells[head.index("rationalized")]):
            if edit == "verdict moved":
                for column, by in (("rationalized", -1), ("none", 1)):
                    cells[head.index(column)] = str(int(cells[head.index(column)]) + by)
            else:
                cells[head.index("rationalized")] = ""
            lines[i] = ",".join(cells) + "\n"
            break
    path.write_text("".join(lines))
    _commit_all(example_copy, "hand edit")
    import shutil

    shutil.rmtree(example_copy / ".gov" / "index")
    done = gov("check", "main@12000", "--dry-run", cwd=example_copy)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert path.name in line


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count))


def _renumber(root: Path) -> None:
    _edit(root / "registry/environments/code-unit-tests.yaml", "- number: 1", "- number: 2")


def _rehash(root: Path) -> None:
    _edit(root / "registry/environments/code-unit-tests.yaml", "hash: sha256:c", "hash: sha256:d")


def _judge_twice(root: Path) -> None:
    path = root / "registry/judges/cot-monitor.yaml"
    text = path.read_text()
    path.write_text(text + text[text.index("- version") :])


def _no_mixture(root: Path) -> None:
    path = root / "registry/checkpoints/main.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    head, _, rest = lines[-1].partition('"exposure":[')
    lines[-1] = head + '"exposure":[' + rest[rest.index("]") :]
    path.write_text("".join(lines))


def _named_twice(root: Path) -> None:
    path = root / "registry/checkpoints/main.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    head, _, rest = lines[-1].partition('"exposure":[')
    first = rest[: rest.index("}") + 1]
    lines[-1] = head + '"exposure":[' + first + "," + rest
    path.write_text("".join(lines))


def _judge_gone(root: Path) -> None:
    (root / "registry/judges/cot-monitor.yaml").unlink()


def _stray_flag(root: Path) -> None:
    flags = root / "registry/flags"
    text = (flags / "code-unit-tests.yaml").read_text()
    (flags / "nope.yaml").write_text(
        text.replace("environment: code-unit-tests", "environment: nope")
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # each of these hand edits was read without a word by every command
        (_renumber, "code-unit-tests.yaml:5: field versions: Value error, version 1 is numbered 2"),
        (_rehash, "main.jsonl: checkpoint main@12000 was trained on code-unit-tests v1, but "
                  "code-unit-tests v1 is registered with another content hash"),
        (_judge_twice, "cot-monitor.yaml:4: field versions: Value error, version '2026.10' is "
                       "registered twice"),
        (_no_mixture, "main.jsonl:48: field exposure: Value error, a checkpoint was trained on at "
                      "least one environment"),
        (_named_twice, "main.jsonl:48: field exposure: Value error, environment "
                       "'api-integration' is named twice"),
        (_stray_flag, "registry/flags/nope.yaml: environment 'nope' is not registered"),
        (_judge_gone, "registry/judges/cot-monitor.yaml: the counts hold judgments of judge "
                      "'cot-monitor' version '2026.10', which is not registered"),
    ],
)  # fmt: skip
def test_a_registry_edited_by_hand_out_of_step_stops_the_gate(
    gov, example_copy: Path, edit, message: str
) -> None:
    edit(example_copy)
    _commit_all(example_copy, "hand edit")
    done = gov("check", "main@12000", "--dry-run", cwd=example_copy)
    assert done.exit_code == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert message in line, line


def _bad_ledger_line(ws: Path) -> None:
    with (ws / "registry" / "reports.jsonl").open("a") as ledger:
        ledger.write("{bad\n")


def _broken_policy_link(ws: Path) -> None:
    (ws / "policies" / "zz.yaml").symlink_to(ws / "nowhere.yaml")


def _policy_folder(ws: Path) -> None:
    (ws / "policies" / "zz.yaml").mkdir()


def _state_a_file(ws: Path) -> None:
    import shutil

    shutil.rmtree(ws / ".gov")
    (ws / ".gov").write_text("x")


def _checkpoints_a_folder(ws: Path) -> None:
    path = ws / "registry" / "checkpoints" / "main.jsonl"
    path.unlink()
    path.mkdir()


def _run_file_gone(ws: Path) -> None:
    (ws / "registry" / "runs" / "main.yaml").unlink()


def _environment_a_link(ws: Path) -> None:
    path = ws / "registry" / "environments" / "math-proofs.yaml"
    path.unlink()
    path.symlink_to(ws / "nowhere.yaml")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # each was an internal error (exit 3) with no file or line, or a Python exception's name
        (_bad_ledger_line, "registry/reports.jsonl:49: invalid JSON"),
        # these three read as a record never added ("checkpoint main@12000 is not registered",
        # "add it with `gov run add main`")
        (_checkpoints_a_folder, "registry/checkpoints/main.jsonl: not a file (a folder or a"),
        (_run_file_gone, "registry/runs/main.yaml: missing, while registry/checkpoints/main.jsonl"),
        (_environment_a_link, "registry/environments/math-proofs.yaml: not a file"),
        (_broken_policy_link, "policies/zz.yaml: cannot be read as a policy file"),
        (_policy_folder, "policies/zz.yaml: cannot be read as a policy file (a folder)"),
        (_state_a_file, ".gov is not a folder"),
    ],
)
def test_a_broken_file_gov_reads_is_one_line_naming_it(
    gov, example_copy: Path, edit, message: str
) -> None:
    assert gov("check", "main@12000", "--dry-run", cwd=example_copy).exit_code == 1  # caches built
    edit(example_copy)
    done = gov("check", "main@12000", "--dry-run", cwd=example_copy)
    assert done.exit_code == 2, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert message in line, line


def test_a_ledger_that_hides_or_adds_a_report_stops_the_gate_and_verify(
    gov, example_copy: Path
) -> None:
    # Lines deleted from registry/reports.jsonl hid the rise's reports: check passed, the
    # checkpoint was promoted, and `gov audit verify` said the trail was intact.
    ws = example_copy
    path = ws / "registry" / "reports.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    hidden = json.loads(lines[-1])["md5"]
    path.write_text("".join(lines[:-1]))
    for command in (["check", "main@12000", "--dry-run"], ["rollback", "recommend"]):
        done = gov(*command, cwd=ws)
        assert done.exit_code == 2, (command, done.stdout)
        [line] = done.stderr.strip().splitlines()
        assert f"report {hidden} was ingested" in line and "not in the ledger" in line
    _commit_all(ws, "hand edit: a report dropped from the ledger")
    verified = gov("audit", "verify", cwd=ws)
    assert verified.exit_code == 1 and f"report {hidden} was ingested" in verified.stderr
    # A line added by hand (a report no ingest checked) is caught the same way.
    added = {**json.loads(lines[-1]), "md5": "f" * 32}
    path.write_text("".join(lines) + json.dumps(added) + "\n")
    done = gov("check", "main@12000", "--dry-run", cwd=ws)
    assert done.exit_code == 2 and "no entry of the audit trail ingested it" in done.stderr


def test_a_decision_is_recorded_and_a_promotion_made_only_on_committed_files(
    gov, example_copy: Path
) -> None:
    # A policy edited and not committed was decided on, recorded by its hash (in no commit),
    # and the promotion stood after `git checkout` put the old policy back.
    ws = example_copy
    path = ws / "policies" / "overt-rate-above.yaml"
    path.write_text(path.read_text() + "# tried, not committed\n")
    for command in (["check", "main@500"], ["promote", "main@500"]):
        done = gov(*command, cwd=ws)
        assert done.exit_code == 2, (command, done.stdout)
        [line] = done.stderr.strip().splitlines()
        assert "policies/overt-rate-above.yaml: changes not committed" in line
    assert gov("check", "main@500", "--dry-run", cwd=ws).exit_code == 0  # a trial is fine
    commit_edits(ws, "the policy's note")
    assert gov("check", "main@500", cwd=ws).exit_code == 0
    assert gov("promote", "main@500", cwd=ws).exit_code == 0


def test_an_environment_trained_on_but_never_judged_does_not_pass(
    gov, registry, artifact, tmp_path: Path
) -> None:
    # math and code at half each; the judge report holds math's episodes only. Every policy read
    # math's series, found it steady, and passed the checkpoint: code was watched by nobody.
    registry.add_environment("code", content_hash=f"{9:064x}")
    records = [_counts(100 * i, 400, rationalized=4) for i in range(1, 8)]
    _run(registry, artifact, tmp_path, gov, records, lambda _: {"math": 0.5, "code": 0.5})
    ws = registry.ws.root
    done = gov("check", "main@700", "--dry-run", "--format", "json", cwd=ws)
    assert done.exit_code == 1, done.stdout
    [fired] = [r for r in json.loads(done.stdout)["results"] if r["status"] == "fired"]
    assert (
        fired["policy"] == "not-judged-yet"
        and "not judged yet in code (weight 0.5" in (fired["reason"])
    )
    # judged, the checkpoint passes; a sliver of weight with none judged is chance, not missing
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps(_counts(700, 400, env="code", rationalized=4)) + "\n")
    assert gov("ingest", str(code), cwd=ws).exit_code == 0
    assert gov("check", "main@700", "--dry-run", cwd=ws).exit_code == 0
    registry.add_checkpoint("main", 800, artifact("s800.pt"), {"math": 0.999, "code": 0.001})
    late = tmp_path / "late.jsonl"
    late.write_text(json.dumps(_counts(800, 400, rationalized=4)) + "\n")
    assert gov("ingest", str(late), cwd=ws).exit_code == 0
    assert gov("check", "main@800", "--dry-run", cwd=ws).exit_code == 0
