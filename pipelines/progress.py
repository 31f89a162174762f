"""wb's one progress bar: tqdm on a terminal, a plain line every few seconds anywhere else.

On a terminal tqdm redraws one line with carriage returns. Written to a log or a CI console,
the same bar becomes one line of 100 kB of carriage returns; there it reports instead at most
every `LOG_INTERVAL_S` seconds, one whole line each time, and a last line when it ends. Work
done within the first interval prints nothing, so quick commands keep their output clean.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL_S = 10.0  # seconds between progress lines when the output is not a terminal


class _Lines:
    """A file for tqdm that turns each redraw ('\\r' + status + padding) into one plain line."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.last = ""  # the previous line up to its timings: closing redraws the final count once more

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line and line.split(" [")[0] != self.last:
            self.stream.write(line + "\n")
            self.last = line.split(" [")[0]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable[Any] | None = None, *, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """`tqdm(iterable, **kwargs)` writing to `file` (default: stderr), shaped for where it goes.

    `disable=True` hides it; tqdm's own `disable=None` (hide when not a terminal) shows the
    periodic lines instead, since a log is where a long job's progress is read later.
    """
    stream = file if file is not None else sys.stderr
    if kwargs.get("disable") is None:
        kwargs["disable"] = False
    if not _is_terminal(stream):
        kwargs.update(file=_Lines(stream), mininterval=max(kwargs.get("mininterval", 0), LOG_INTERVAL_S),
                      maxinterval=max(kwargs.get("maxinterval", 0), LOG_INTERVAL_S), delay=LOG_INTERVAL_S,
                      ascii=True, ncols=100, dynamic_ncols=False, leave=True)
        return tqdm(iterable, **kwargs)
    return tqdm(iterable, file=stream, **kwargs)
