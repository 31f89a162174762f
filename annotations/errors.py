"""Errors of the Label Studio room. `annotations` cannot import `workbench`, so the use cases in
workbench/labelling.py turn these into WorkbenchError subclasses (one line + a hint, exit 1)."""
from __future__ import annotations


class LabelStudioError(Exception):
    """Something about the server, the project or the token; `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None, *, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status_code = status_code  # the HTTP status when the server answered with an error


class ServerUnreachable(LabelStudioError):
    """No answer from the server (not started, stopped, or went away mid-sync)."""


class AuthRejected(LabelStudioError):
    """The server refused the API token."""


class ProjectGone(LabelStudioError):
    """The project wb created no longer exists on the server."""


class LabelConfigError(LabelStudioError):
    """The label config is malformed or its labels do not match wb's classes."""


class ServerStartError(LabelStudioError):
    """`label-studio start` failed or did not answer in time."""


class AlreadyExists(LabelStudioError):
    """What wb was asked to create exists on the server already (e.g. a user)."""
