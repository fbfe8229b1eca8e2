"""The layers hold: the CLI talks only to the API (and its renderer and the error family), and
start-up loads no numerical or database library. import-linter (.importlinter) checks the
library's own layers; grimp cannot graph the single-file cli.py, so its imports are read here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {"governance.api", "governance.errors", "governance.render"}
FORMATS = {"csv", "json", "yaml", "duckdb", "numpy", "scipy", "pyarrow", "git", "dvc"}


def _imports(path: Path) -> list[str]:
    """Every module cli.py imports, at the top or inside a function."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "governance":
                found += [f"governance.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


def test_the_cli_imports_only_the_api_its_renderer_and_the_errors() -> None:
    imported = _imports(ROOT / "cli.py")
    ours = {m for m in imported if m.split(".")[0] == "governance"}
    assert ours and ours <= ALLOWED, ours - ALLOWED
    assert not {m.split(".")[0] for m in imported} & FORMATS


def test_a_module_outside_the_allowed_set_would_be_caught(tmp_path: Path) -> None:
    # The check above reads imports inside functions too: a lazy import of the registry counts.
    sample = tmp_path / "cli.py"
    sample.write_text("def f():\n    from governance.registry import Registry\n")
    assert "governance.registry" in _imports(sample)


def test_start_up_loads_no_numerical_or_database_library() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import cli; "
        "print(sorted(m for m in ('numpy', 'scipy', 'duckdb', 'dvc') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
