"""The WorkbenchError family. Core code raises these; only the CLI turns them into exit codes."""
from __future__ import annotations

import errno


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


class DatabaseError(WorkbenchError):
    """The database cannot be opened or used: wrong path or URL, not wb's, too new, unreachable."""


def from_exception(exc: BaseException) -> WorkbenchError | None:
    """The one-line form of an expected failure that arrived as a foreign exception; None if unknown.

    The CLI's error funnel calls this for anything that is not a WorkbenchError, so every command
    reports database races, full disks, permissions and unreadable images the same way. Unknown
    exceptions (bugs) keep their traceback.
    """
    from sqlalchemy import exc as sa

    from pipelines.imagecheck import ImageReadError

    if isinstance(exc, WorkbenchError):
        return exc
    if isinstance(exc, ImageReadError):
        return InputError(exc.message, "the file changed after `wb import`: restore it, or see `wb doctor`")
    if type(exc).__name__ == "DecompressionBombError":  # Pillow's, from a reader that did not name the file
        return InputError(f"An image is too large to decode safely: {exc}", "`wb doctor` finds image files that changed")
    if isinstance(exc, sa.IntegrityError):
        return ConflictError(f"Another wb command changed the same rows at the same time ({_first_line(exc.orig)})",
                             "run the command again: what was committed is kept")
    if isinstance(exc, sa.OperationalError) and "database is locked" in str(exc.orig):
        return ConflictError("The database stayed locked by another wb command for 30 s",
                             "let it finish (or stop it), then run this again")
    if isinstance(exc, sa.DBAPIError):
        return DatabaseError(f"Database error: {_first_line(exc.orig)}",
                             "check the database (--db / WB_DB) is reachable, writable and not damaged")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InputError(f"{exc.strerror}: {exc.filename or ''}".rstrip(": "), "free some space, or choose another place")
    if isinstance(exc, OSError) and exc.filename and exc.errno in _PATH_ERRNOS:
        # A path the user gave or wb must write (an output file, the workspace): name it.
        return InputError(f"{exc.strerror}: {exc.filename}", "check the path, and that you may read or write there")
    return None


# Failures that are about a path (the user's, or one wb must write), not a bug.
_PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                errno.ENAMETOOLONG, errno.ELOOP}


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__
