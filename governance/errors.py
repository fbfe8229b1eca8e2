"""The one exception family of gov: every failure a user can act on is a GovError, one line long.

The CLI prints the message on one line and exits with the error's code; `--traceback` shows
the stack. A library message never names a CLI flag: where the fix is a flag, the error carries
a `remedy` (the keyword argument that does it) and the CLI adds the flag's own words.
"""

from __future__ import annotations


class GovError(Exception):
    """A failure the user can act on. `exit_code` 2 means bad input or usage."""

    exit_code = 2

    def __init__(
        self, message: str, details: list[str] | None = None, *, remedy: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # Further lines (the next bad records of a refused report, say); the message stands alone.
        self.details = details or []
        # The API argument that would do what the user likely wants (`replace`, `override`).
        self.remedy = remedy

    def __str__(self) -> str:
        return self.message


class NotAWorkspace(GovError):
    """No gov workspace at or above the given folder."""


class NotAGitRepository(GovError):
    """The folder is not inside a git work tree."""


class InvalidName(GovError):
    """A run, environment or judge name that could escape its folder or break a reference."""


class RegistryFileError(GovError):
    """A registry file that cannot be read: bad YAML/JSON or a field that fails validation."""


class NotFound(GovError):
    """A run, checkpoint, environment, environment version or judge that is not registered."""


class AlreadyExists(GovError):
    """An add that would overwrite something already registered."""


class ArtifactError(GovError):
    """A checkpoint artifact that is missing, outside the workspace, or that DVC refused."""


class ExposureError(GovError):
    """An exposure that names an unknown environment or has invalid mixture weights."""


class LineageError(GovError):
    """A run lineage that does not hold together: an unknown parent or a cycle."""


class GitError(GovError):
    """git refused to record a change (no identity, a failing hook, a locked index)."""


class WorkspaceBusy(GovError):
    """Another gov process holds the workspace lock."""


class ExampleError(GovError):
    """The bundled example cannot be built where asked."""


class ReportRejected(GovError):
    """A report refused whole: bad records, unknown registry keys or conflicting verdicts."""


class PolicyError(GovError):
    """A policy file that cannot be used: bad YAML, a schema violation, a duplicate name."""


class AuditError(GovError):
    """The audit trail cannot be read: a malformed line, a missing folder."""


class TrailBroken(GovError):
    """The audit trail fails verification."""

    exit_code = 1


class EvidenceError(GovError):
    """The evidence cannot be turned into a verdict (a probability that is not a number): the
    gate refuses rather than decide on it."""


class TrailRefused(GovError):
    """A write refused because the audit trail it would extend fails verification."""


class Blocked(GovError):
    """The policies block this checkpoint's promotion."""

    exit_code = 1
