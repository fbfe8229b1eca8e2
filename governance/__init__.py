"""gov: checkpoint governance and rollback for RL training of reasoning models.

A training loop uses the same calls as the `gov` command, in `governance.api`::

    from governance import api

    api.checkpoint_add(None, "main@1200", "ckpt/step-1200.pt", {"code-tests": 0.6, "math": 0.4})
    decision = api.check(None, "main@1200")   # None: the workspace above the current folder
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import GovError
from .registry import NewCheckpoint, Registry, open_registry
from .workspace import init

__all__ = ["GovError", "NewCheckpoint", "Registry", "__version__", "init", "open_registry"]
