"""The WorkbenchError family. Core code raises these; only the CLI turns them into exit codes."""
from __future__ import annotations


class WorkbenchError(Exception):
    """A failure the user can act on: one line of message plus an optional hint."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputError(WorkbenchError):
    """Bad input: a missing path, an unknown name, an empty selection."""


class NotFoundError(WorkbenchError):
    """A named thing (split, run, image, project) does not exist."""


class ConflictError(WorkbenchError):
    """The thing exists already or the state does not allow the action."""


class ExternalServiceError(WorkbenchError):
    """A server (Label Studio) refused, failed or could not be reached."""
