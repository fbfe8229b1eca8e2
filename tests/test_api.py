"""The library API: one call per verb, typed results, the actor as an argument."""

from __future__ import annotations

import json
import os
from pathlib import Path

import git
import pytest

from governance import Registry, api
from governance.errors import GovError
from governance.records import Decision


def test_check_is_one_call_that_decides_and_records(example_copy: Path) -> None:
    head = git.Repo(example_copy).head.commit.hexsha
    decision = api.check(example_copy, "main@11000")
    assert isinstance(decision, Decision)
    assert decision.outcome == "block" and decision.flagged == ["code-unit-tests"]
    recorded = list((example_copy / "audit" / "decisions").glob("main@11000.*.json"))
    assert [p.name for p in recorded] == [f"main@11000.{decision.digest[:16]}.json"]
    on_disk = json.loads(recorded[0].read_text())
    assert on_disk["schema_version"] == 1 and on_disk["digest"] == decision.digest
    assert git.Repo(example_copy).head.commit.hexsha != head
    # the same inputs give the same decision, recorded once
    again = api.check(example_copy, "main@11000")
    assert again.digest == decision.digest
    assert len(list((example_copy / "audit" / "decisions").glob("main@11000.*.json"))) == 1
    # a dry check records nothing
    head = git.Repo(example_copy).head.commit.hexsha
    api.check(example_copy, "main@3000", record=False)
    assert git.Repo(example_copy).head.commit.hexsha == head


def test_the_actor_is_an_argument_not_the_environment(example_copy: Path) -> None:
    api.check(example_copy, "main@11000")
    api.flag_ack(example_copy, "code-unit-tests", "redesign owned by the env team", actor="alice")
    assert "GOV_ACTOR" not in os.environ
    api.rollback_recommend(example_copy)
    trail = [json.loads(line) for line in (example_copy / "audit" / "trail.jsonl").open()]
    ack = next(e for e in trail if e["kind"] == "flag_acknowledged")
    after = trail[-1]
    assert ack["actor"] == "alice"
    assert after["kind"] == "rollback_recommended" and after["actor"] != "alice"


def test_the_actor_applies_to_a_registry_the_caller_holds(registry: Registry) -> None:
    api.env_version(registry, "math", note="new grader", content_hash="b" * 64, actor="alice")
    api.env_version(registry, "code-tests", note="hidden tests", content_hash="c" * 64)
    trail = [json.loads(line) for line in (registry.ws.audit / "trail.jsonl").open()]
    redesigns = [
        (e["subject"]["environment"], e["actor"]) for e in trail if e["kind"] == "redesign"
    ]
    # The actor names who acts in that call only: the caller's registry is left as it was.
    assert redesigns == [("math", "alice"), ("code-tests", "Test Trainer <trainer@example.com>")]
    assert registry.ws.actor is None


def test_every_schema_gov_lists_is_a_json_schema() -> None:
    listed = {f.name: f.describes for f in api.schemas()}
    assert {"report", "decision", "audit-entry", "override", "rollback", "flag"} <= set(listed)
    assert listed["audit-entry"] == "a line of audit/trail.jsonl"
    for name, describes in listed.items():
        found = api.schema(name)
        assert (found.name, found.describes) == (name, describes)
        assert found.schema["$schema"].startswith("https://json-schema.org/")
        if name != "report":
            assert "schema_version" in found.schema["properties"], name
    with pytest.raises(GovError, match="no schema named"):
        api.schema("nope")


def test_exposure_texts_and_mappings_mean_the_same(tmp_path: Path) -> None:
    assert api.parse_exposure(["a=0.25", "b@v2=0.75"]) == {"a": 0.25, "b@v2": 0.75}
    assert api.parse_exposure({"a": 1}) == {"a": 1.0}
    with pytest.raises(GovError, match="expected ENV"):
        api.parse_exposure(["a:0.5"])
    bad = tmp_path / "mix.yaml"
    bad.write_text("a: &x 0.5\nb: *x\n")
    with pytest.raises(GovError, match="anchors and aliases"):
        api.parse_exposure([], bad)
