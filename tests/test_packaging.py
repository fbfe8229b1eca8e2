"""The installed distribution adds one package to site-packages and the `gov` command."""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path


def test_install_adds_no_generic_top_level_modules() -> None:
    dist = metadata.distribution("rl-gov")
    files = dist.files or []
    top = {f.parts[0] for f in files if not f.parts[0].endswith(".dist-info")}
    top.discard("..")  # the console script lives in bin/
    assert top == {"governance"}, top
    names = {str(f) for f in files}
    assert "governance/cli.py" in names
    assert "governance/bundled/registry/example.yaml" in names
    assert "governance/bundled/policies/README.md" in names


def test_installed_command_runs(tmp_path: Path) -> None:
    gov = shutil.which("gov")
    assert gov, "the `gov` command is not on PATH: install the package first"
    out = subprocess.run([gov, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("gov, version")
    bad = subprocess.run([gov, "init", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("gov: error:") and "Traceback" not in bad.stderr
