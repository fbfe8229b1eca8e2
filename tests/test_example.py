"""The bundled example: built where the user asks, deterministic, with the planned patterns."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from conftest import Result, run_gov
from governance import api, open_registry
from governance.errors import ExampleError
from governance.example import (
    ExampleResult,
    Healthy,
    Rising,
    Spike,
    build_example,
    load_spec,
)

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built_by_the_command(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path, Path]:
    """The one run of `gov example` in the suite (the README's quickstart), with a DVC remote;
    every other test reads the session's example (`example_template`)."""
    root = tmp_path_factory.mktemp("ex-cli")
    result = run_gov(["example", str(root / "example"), "--remote", str(root / "remote")])
    return result, root / "example", root / "remote"


def test_example_meets_the_plan(example_template: Path) -> None:
    built = example_template
    reg = open_registry(built)
    checkpoints = reg.checkpoints("main")
    assert len(checkpoints) >= 40
    assert len(reg.environments()) >= 10
    assert len(reg.judges()) >= 1
    for ckpt in checkpoints:
        assert len(ckpt.exposure) == 10
        assert abs(sum(e.weight for e in ckpt.exposure) - 1) < 1e-9
        assert (built / ckpt.artifact).is_file()
        assert (built / (ckpt.artifact + ".dvc")).is_file()
    kinds = [type(e.pattern) for e in load_spec().environments]
    assert kinds.count(Rising) == 1 and kinds.count(Spike) == 1 and kinds.count(Healthy) == 1
    steps = {c.step for c in checkpoints}
    for env in load_spec().environments:
        if isinstance(env.pattern, Rising):
            assert env.pattern.onset_step in steps
            assert min(steps) < env.pattern.onset_step < max(steps)
        if isinstance(env.pattern, Spike):
            assert env.pattern.step in steps
    repo = git.Repo(built)
    assert repo.git.status("--porcelain") == ""


def test_example_reports_carry_the_planted_patterns(example_template: Path) -> None:
    from governance.counts import ledger
    from governance.stats.intervals import wilson

    reg = open_registry(example_template)
    entries = ledger(reg.ws)
    assert len(entries) == 48 and all(e.kind == "episodes" for e in entries)
    per_point = [
        p.n for s in api.metrics(reg, names=["rationalization_rate"]).series for p in s.points
    ]
    assert min(per_point) >= 40 and max(per_point) <= 320  # tens to hundreds per checkpoint
    spec = load_spec()
    # One environment of each planted kind (the plan's own test counts them too).
    [(rising, rise)] = [(e, e.pattern) for e in spec.environments if isinstance(e.pattern, Rising)]
    [(spike, peak)] = [(e, e.pattern) for e in spec.environments if isinstance(e.pattern, Spike)]
    [healthy] = [e for e in spec.environments if isinstance(e.pattern, Healthy)]

    def pooled(env: str, metric: str, steps: range) -> tuple[int, int]:
        [found] = api.metrics(reg, names=[metric], environment=env).series
        points = [p for p in found.points if p.step in steps]
        return sum(p.k for p in points), sum(p.n for p in points)

    onset = rise.onset_step
    before = pooled(rising.id, "rationalization_rate", range(0, onset))
    after = pooled(rising.id, "rationalization_rate", range(onset + 1000, 10**6))
    assert wilson(*before)[1] < wilson(*after)[0]  # the rise is beyond doubt
    assert before[0] / before[1] < 0.01  # base rates of a few per thousand
    at_spike = pooled(spike.id, "rationalization_rate", range(peak.step, peak.step + 1))
    rest = pooled(spike.id, "rationalization_rate", range(peak.step + 1, 10**6))
    assert wilson(*rest)[1] < at_spike[0] / at_spike[1]
    healthy_rejections = pooled(healthy.id, "rejection_rate", range(0, 10**6))
    assert healthy_rejections[0] / healthy_rejections[1] > 0.15
    assert (
        pooled(healthy.id, "rationalization_rate", range(0, 10**6))[0] / healthy_rejections[1]
        < 0.01
    )


def _fingerprint(root: Path) -> list[tuple[int, str, tuple[tuple[str, float], ...]]]:
    return [
        (c.step, c.artifact_md5, tuple((e.environment, e.weight) for e in c.exposure))
        for c in open_registry(root).checkpoints("main")
    ]


def test_example_is_deterministic_per_seed(
    example_template: Path, built_by_the_command: tuple[Result, Path, Path], tmp_path: Path
) -> None:
    # The same seed, built twice (once by the session, once by the command): the same example.
    _, again, _ = built_by_the_command
    assert _fingerprint(again) == _fingerprint(example_template)
    envs = [e.current.hash for e in open_registry(again).environments()]
    assert envs == [e.current.hash for e in open_registry(example_template).environments()]
    # Another seed, another example: shown on a small spec, so as not to build the whole again.
    spec = load_spec()
    small = spec.model_copy(update={"checkpoints": 3, "environments": spec.environments[:2]})
    same = build_example(tmp_path / "same", spec=small)
    other = build_example(tmp_path / "other", spec=small, seed=7)
    assert (same.seed, other.seed) == (spec.seed, 7)
    assert len(_fingerprint(other.root)) == 3
    assert _fingerprint(other.root) != _fingerprint(same.root)


def test_example_refuses_non_empty_folders_and_other_repositories(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(ExampleError, match="not empty"):
        build_example(full)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    with pytest.raises(ExampleError, match="inside the git repository"):
        build_example(CHECKOUT / "example-workspace")
    assert not (CHECKOUT / "example-workspace").exists()


def test_example_command_prints_the_summary(
    gov,
    built_by_the_command: tuple[Result, Path, Path],
    example_built: ExampleResult,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    result, root, remote = built_by_the_command
    assert result.exit_code == 0, result.stderr
    assert "checkpoints   48 (47 registered, 1 blocked)" in result.stdout
    assert "rationalization rises from step" in result.stdout
    assert "48 ingested" in result.stdout
    assert "gov check main@12000: BLOCK" in result.stdout
    assert "flagged for redesign: code-unit-tests" in result.stdout
    assert git.Repo(root).git.status("--porcelain") == ""
    assert (remote / "files" / "md5").is_dir()  # --remote: the artifacts were pushed there
    # The JSON view of the same result, without building the example once more.
    monkeypatch.setattr(api, "example", lambda *args, **kwargs: example_built)
    data = json.loads(gov("example", str(tmp_path / "ex2"), "--format", "json").stdout)
    assert data["summary"]["checkpoints"] == 48
    assert data["summary"]["environments_by_status"] == {
        "active": 9,
        "flagged": 1,
        "in_redesign": 0,
        "retired": 0,
    }
    assert data["outcome"] == "block" and list(data["flagged"]) == ["code-unit-tests"]
