"""Policy files: safe loading, strict schema, errors with file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from governance.policies import PolicyError, load_policies, parse_policy
from governance.stats.evaluate import evaluate
from governance.stats.result import Result
from governance.stats.series import Point, SeriesKey

GOOD = """\
schema_version: 1
name: rate-up
description: rationalization rate up
metric: rationalization_rate
condition:
  rise:
    baseline: {first: 4}
    factor: 2
    confidence: 0.95
sustained: 2
min_evidence: {n: 30}
actions: [warn]
"""


def test_bundled_policies_load() -> None:
    root = Path(__file__).resolve().parent.parent
    loaded = load_policies(root / "policies", root)
    names = {p.policy.name for p in loaded}
    assert names == {
        "rationalization-rate-rising",
        "rationalization-share-rising",
        "overt-rate-above",
        "divergence-rate-rising",
        "cot-obfuscation-watch",
        "monitor-pressure",
        "not-judged-yet",
        "run-rationalization-rising",
    }
    assert all(len(p.sha256) == 64 for p in loaded)


def test_a_good_policy_parses() -> None:
    policy = parse_policy(GOOD, "p.yaml")
    assert policy.condition.rise is not None and policy.condition.rise.factor == 2
    assert policy.judge == "any" and policy.scope == "environment"


def test_a_number_in_exponent_form_is_a_number() -> None:
    # YAML 1.1 reads 1e-2 (no dot) as a string; read with exact types it would be refused
    policy = parse_policy(GOOD.replace("confidence: 0.95", "confidence: 95e-2"), "p.yaml")
    assert policy.condition.rise is not None and policy.condition.rise.confidence == 0.95


BAD = {
    "typo in a key": (
        GOOD.replace("sustained: 2", "sustaind: 2"),
        ("p.yaml:10", "sustaind", "unknown field"),
    ),
    "unknown metric": (
        GOOD.replace("rationalization_rate", "honesty_rate"),
        ("p.yaml", "unknown metric 'honesty_rate'"),
    ),
    "threshold out of range": (
        GOOD.replace("confidence: 0.95", "confidence: 1.5"),
        ("p.yaml:9", "condition.rise.confidence", "less than 1"),
    ),
    "factor not a rise": (GOOD.replace("factor: 2", "factor: 0.5"), ("p.yaml:8", "factor")),
    # a value of the wrong kind was converted: a quoted number read as the number, true as 1
    "a number in quotes": (
        GOOD.replace("confidence: 0.95", "confidence: '0.95'"),
        ("p.yaml:9", "condition.rise.confidence", "valid number"),
    ),
    "a count written as a fraction": (
        GOOD.replace("sustained: 2", "sustained: 2.0"),
        ("p.yaml:10", "sustained", "valid integer"),
    ),
    "the schema version as a boolean": (
        GOOD.replace("schema_version: 1", "schema_version: true"),
        ("p.yaml:1", "schema_version"),
    ),
    "two conditions": (
        GOOD.replace("condition:\n", "condition:\n  above: {level: 0.1}\n"),
        ("exactly one of above, rise, onset, pressure, unjudged or obfuscation",),
    ),
    "two baselines": (
        GOOD.replace("{first: 4}", "{first: 4, promoted: true}"),
        ("exactly one baseline",),
    ),
    "duplicate key": (GOOD + "metric: overt_rate\n", ("p.yaml:13", "duplicate key 'metric'")),
    "alias": (
        GOOD.replace("actions: [warn]", "x: &a [warn]\nactions: *a"),
        ("anchors and aliases",),
    ),
    "python tag": (
        GOOD.replace("[warn]", "!!python/object/apply:os.system [echo]"),
        ("p.yaml:12",),
    ),
    "custom tag": (GOOD.replace("[warn]", "!action warn"), ("p.yaml:12",)),
    "unknown action": (GOOD.replace("[warn]", "[explode]"), ("field actions.0",)),
    "not a mapping": ("- just\n- a list\n", ("a policy is a mapping",)),
    "run scope with an environment filter": (
        GOOD + "scope: run\nenvironments: [math]\n",
        ("p.yaml", "environments: a run-scope policy reads every environment"),
    ),
    # pydantic's name for the member of a union it tried was shown as a part of the field
    "a judge named with a version": (
        GOOD + "judge: cot-monitor@9999\n",
        ("p.yaml:13: field judge: Value error, 'cot-monitor@9999' must be",),
    ),
    "flag without environment scope": (
        GOOD.replace("[warn]", "[flag_environment]") + "scope: run\n",
        ("flag_environment needs scope",),
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_policy_is_refused_with_file_line_field(case: str) -> None:
    text, fragments = BAD[case]
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    message = str(info.value)
    assert "\n" not in message and "function-after" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_billion_laughs_is_refused_quickly() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 12):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [*{chr(96 + i)},*{chr(96 + i)},*{chr(96 + i)}]\n"
    with pytest.raises(PolicyError, match="anchors and aliases"):
        parse_policy(bomb, "bomb.yaml")


def test_two_policies_with_one_name(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(
        PolicyError, match=re.escape("b.yaml: policy name 'rate-up' is already used by a.yaml")
    ):
        load_policies(tmp_path, tmp_path)


ONSET = """\
schema_version: 1
name: onset
description: a lasting rise
metric: rationalization_rate
condition:
  onset: {probability: 0.95}
sustained: SUSTAINED
min_evidence: {n: 20}
actions: [block]
"""


def _onset_at_last(series: list[tuple[int, int]], sustained: int) -> Result:
    policy = parse_policy(ONSET.replace("SUSTAINED", str(sustained)), "onset.yaml")
    points = [Point("main", i + 1, k, n) for i, (k, n) in enumerate(series)]
    return evaluate(policy, SeriesKey("math", 1, "j", "1"), points, ("main", len(points)))


def test_an_onset_sustained_over_judged_checkpoints() -> None:
    steady = [(1, 200), (0, 180), (2, 220), (1, 150), (1, 210), (0, 190), (1, 200), (0, 170)]
    # A rise shown by two judged checkpoints fires at once, but not when two checkpoints
    # running must each show it on their own past: the first of them held alone.
    risen = [*steady, (14, 200), (15, 190)]
    assert _onset_at_last(risen, 1).status == "fired"
    once = _onset_at_last(risen, 2)
    assert once.status == "clear" and "held 1 of the 2" in once.reason
    assert _onset_at_last([*risen, (16, 210)], 2).status == "fired"
    # A bad checkpoint and then one nobody judged is one checkpoint of evidence, not two.
    assert _onset_at_last([*steady, (25, 190), (0, 0)], 1).status == "clear"
    assert _onset_at_last([*steady, (25, 190), (0, 0), (22, 200)], 1).status == "fired"
