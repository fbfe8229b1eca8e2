"""gov: checkpoint governance and rollback for RL training of reasoning models.

A training loop uses the same calls as the `gov` command, in `governance.api`::

    from governance import api

    api.checkpoint_add(None, "main@1200", "ckpt/step-1200.pt", {"code-tests": 0.6, "math": 0.4})
    decision = api.check(None, "main@1200")   # None: the workspace above the current folder
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import GovError
    from .registry import NewCheckpoint, Registry, open_registry
    from .workspace import init

# Loaded when first asked for: a command that needs only part of the package (`gov audit show`,
# `gov --help`) does not pay for the registry's imports at start-up.
_LAZY = {
    "GovError": "errors",
    "NewCheckpoint": "registry",
    "Registry": "registry",
    "open_registry": "registry",
    "init": "workspace",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["GovError", "NewCheckpoint", "Registry", "__version__", "init", "open_registry"]
