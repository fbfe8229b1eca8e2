"""The fast DuckDB check accepts exactly the records the pydantic model (and the registry) accept.

The fast path is what runs on every report; the model is the documented schema. Any record on
which they disagree is a bug: a bad record stored, or a good report refused without a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conftest import make_git_repo
from governance import init, open_registry
from governance.errors import ReportRejected
from governance.ingest.join import Join
from governance.ingest.scan import scan_episodes
from governance.judgments import JudgedEpisode

ABSENT = object()

# For each field: values the model accepts, then values it refuses (JSON text; ABSENT: no key).
FIELDS: dict[str, tuple[list[object], list[object]]] = {
    "schema_version": ([ABSENT, "1", "null"], ["1.0", "true", "2", '"1"']),
    "run": (['"main"'], ['"ghost"', "5", "null", '"a/b"']),
    "step": (["100"], ['"100"', "100.0", "1e2", "true", "null", "-1"]),
    "environment": (['"math"'], ['"chess"', "null", "[]"]),
    "environment_version": (["1", '"v1"', '"1"', "HASH"], ["2", "0", "1.0", "true"]),
    "judge": (['"cot-monitor"'], ['"oracle"', "7"]),
    "judge_version": (['"1"', "1"], ["1.0", "true", '""', '"2"']),
    "episode": (
        ['"e1"', "7", "-3", "0", '"\\u0065"', '"a\\nb"', '"x y"', '" "', '"\\""'],
        ['""', "7.5", "1e3", "true", "false", "null", '{"a": 1}', '["x"]'],
    ),
    "verdict": (
        ['"none"', '"rejected"', '"rationalized"', '"overt"'],
        ['"None"', '"sneaky"', "1", "null"],
    ),
    "divergent": (["true", "false"], ['"true"', "1", "0", "null"]),
    "confidence": (
        [ABSENT, "0", "1", "0.5", "0.0", "null", "1e-3", "1E0", "-0"],
        ["1.5", "-0.1", "1e1", '"0.5"', '"1"', "true", "false", "[0.5]", '{"c": 1}'],
    ),
    "evidence": (
        [
            ABSENT,
            "null",
            "[]",
            '[{"start": 0, "end": 3, "quote": "abc"}]',
            '[{"quote": "q", "end": 9, "start": 2}, {"start": 0, "end": 1, "quote": ""}]',
        ],
        [
            '[{"start": 3, "end": 3, "quote": "x"}]',
            '[{"start": -1, "end": 3, "quote": "x"}]',
            '[{"start": 0, "end": 2.0, "quote": "x"}]',
            '[{"start": 0, "end": 2, "quote": 5}]',
            '[{"start": 0, "end": 2, "quote": "x", "extra": 1}]',
            '[{"start": 0, "end": 2}]',
            '{"start": 0}',
            '"x"',
            "[1]",
            '[{"start": 0, "end": 3, "quote": "abc"}, {"start": 5, "end": 4, "quote": "d"}]',
        ],
    ),
    "note": ([ABSENT, '"ok"', "null", '"{\\"start\\": 1}"'], ["5", "true", "[]"]),
    "extra_field": ([ABSENT, "1", '"x"'], []),
}


def field_value(name: str) -> st.SearchStrategy[object]:
    good, bad = FIELDS[name]
    # Mostly good values, so that whole records pass often and each bad value is met alone.
    return (
        st.sampled_from(good)
        if not bad
        else st.one_of(
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(good),
            st.sampled_from(bad),
        )
    )


@dataclass(frozen=True)
class Registered:
    """The registry's keys, read from its plain files (not through gov's own classes)."""

    steps: dict[str, set[int]]  # run -> registered checkpoint steps
    environments: dict[str, dict[int, str]]  # environment -> version number -> content hash
    judges: dict[str, set[str]]  # judge -> versions

    @classmethod
    def read(cls, root: Path) -> Registered:
        folder = root / "registry"
        steps = {
            path.stem: {json.loads(line)["step"] for line in path.read_text().splitlines()}
            for path in (folder / "checkpoints").glob("*.jsonl")
        }
        runs = {path.stem for path in (folder / "runs").glob("*.yaml")}
        environments = {
            path.stem: {
                v["number"]: v["hash"].removeprefix("sha256:")
                for v in yaml.safe_load(path.read_text())["versions"]
            }
            for path in (folder / "environments").glob("*.yaml")
        }
        judges = {
            path.stem: {str(v["version"]) for v in yaml.safe_load(path.read_text())["versions"]}
            for path in (folder / "judges").glob("*.yaml")
        }
        return cls({run: steps.get(run, set()) for run in runs}, environments, judges)

    def version(self, env: str, ref: int | str) -> int | None:
        """The version a report's `environment_version` names, as the README documents it: its
        number (2, "2" or "v2") or a prefix of at least 7 hex digits of its content hash."""
        versions = self.environments[env]
        if isinstance(ref, int):
            return ref if ref in versions else None
        text = ref.strip().lower()
        if text.removeprefix("v").isdigit() and len(text.removeprefix("v")) < 7:
            number = int(text.removeprefix("v"))
            return number if number in versions else None
        digits = text.removeprefix("sha256:")
        found = [n for n, h in versions.items() if h.startswith(digits)]
        return found[0] if len(found) == 1 and len(digits) >= 7 else None

    def joins(self, record: JudgedEpisode) -> bool:
        return (
            record.step in self.steps.get(record.run, set())
            and record.environment in self.environments
            and self.version(record.environment, record.environment_version) is not None
            and str(record.judge_version) in self.judges.get(record.judge, set())
        )


@pytest.fixture(scope="module")
def scanning(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Registered]:
    root = tmp_path_factory.mktemp("agree") / "ws"
    make_git_repo(root)
    init(root)
    reg = open_registry(root)
    reg.add_environment("math", content_hash="a" * 64)
    reg.add_judge("cot-monitor", "1", rubric_hash="b" * 64)
    reg.add_run("main")
    (root / "c.pt").write_bytes(b"w")
    reg.add_checkpoint("main", 100, root / "c.pt", {"math": 1.0})
    known = Registered.read(root)
    # The oracle reads back exactly what was registered above.
    assert known == Registered({"main": {100}}, {"math": {1: "a" * 64}}, {"cot-monitor": {"1"}})
    return root, "a" * 10, known


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.fixed_dictionaries({k: field_value(k) for k in FIELDS}))
def test_fast_check_agrees_with_the_model(
    scanning: tuple[Path, str, Registered], choice: dict[str, object]
) -> None:
    root, prefix, known = scanning
    parts = [f'"{k}": {prefix_json(v, prefix)}' for k, v in choice.items() if v is not ABSENT]
    line = "{" + ", ".join(parts) + "}\n"
    path = root.parent / "one.jsonl"
    path.write_text(line)
    reg = open_registry(root)
    try:
        expected = known.joins(JudgedEpisode.model_validate_json(line))
    except ValidationError:
        expected = False
    try:
        scan = scan_episodes(reg.ws, path, "jsonl", Join(reg))
        scan.keys.unlink()
        accepted = True
    except ReportRejected:
        accepted = False
    assert accepted == expected, line
    event("accepted" if accepted else "refused")


def prefix_json(value: object, prefix: str) -> str:
    return f'"{prefix}"' if value == "HASH" else str(value)
