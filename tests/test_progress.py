"""Progress bars: tqdm on a terminal, a plain line every few seconds in a log."""
from __future__ import annotations

import io
import re

from pipelines import progress
from pipelines.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_and_no_carriage_returns(monkeypatch):
    log = io.StringIO()
    for _ in progress_bar(range(5000), desc="score", file=log, leave=False):
        pass
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    # Far under one line per item: the first line, then one per LOG_INTERVAL_S (the loop takes
    # milliseconds), and the last line even though leave=False.
    assert 2 <= len(lines) <= 3, lines
    assert lines[0].startswith("score:") and "5000/5000" in lines[-1]

    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # every update is due: each is its own line
    log = io.StringIO()
    with progress_bar(total=3, desc="pull", file=log) as bar:
        for _ in range(3):
            bar.update(1)
    counts = [re.search(r"\d+/\d+", line).group() for line in log.getvalue().splitlines()]
    assert counts == ["0/3", "1/3", "2/3", "3/3"]  # each update once; closing does not repeat the last
    assert "\r" not in log.getvalue()


def test_a_terminal_gets_tqdms_redrawn_line():
    term = Terminal()
    for _ in progress_bar(range(3), desc="train", file=term):
        pass
    assert "\r" in term.getvalue()


def test_disable_none_still_reports_in_a_log_and_true_hides():
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="import", file=log, disable=None):
        pass
    assert "import:" in log.getvalue()
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="import", file=log, disable=True):
        pass
    assert log.getvalue() == ""
