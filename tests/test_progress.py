"""Progress bars: tqdm on a terminal, a plain line every few seconds in a log."""
from __future__ import annotations

import io
import re
import time

from pipelines import progress
from pipelines.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_whole_line_per_interval_and_no_carriage_returns(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.05)
    log = io.StringIO()
    for _ in progress_bar(range(200), desc="score", file=log, leave=False):
        time.sleep(0.002)  # 0.4 s of work: about one line per 0.05 s, not one per item
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 2 <= len(lines) < 100, lines
    assert all(line.startswith("score:") for line in lines) and "200/200" in lines[-1]  # the end, even with leave=False
    counts = [int(re.search(r"(\d+)/200", line).group(1)) for line in lines]
    assert counts == sorted(set(counts))  # each count once: closing does not repeat the last line


def test_quick_work_in_a_log_prints_nothing():
    log = io.StringIO()  # the default interval (10 s) is far longer than this loop
    for _ in progress_bar(range(5000), desc="import", file=log):
        pass
    assert log.getvalue() == ""


def test_a_terminal_gets_tqdms_redrawn_line():
    term = Terminal()
    for _ in progress_bar(range(3), desc="train", file=term):
        pass
    assert "\r" in term.getvalue() and "train" in term.getvalue()


def test_disable_none_still_reports_in_a_log_and_true_hides(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="import", file=log, disable=None):
        pass
    assert "import:" in log.getvalue()  # tqdm alone would hide a disable=None bar off a terminal
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="import", file=log, disable=True):
        pass
    assert log.getvalue() == ""
