"""workbench.runs: creating runs, their status through Ctrl-C and errors, the code they ran."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from db.models import Run, RunStatus
from tests.conftest import REPO
from workbench.errors import InputError, NotFoundError
from workbench.runs import PACKAGES, code_version, create_run, get_run, recording_failures, source_hash, update_run


def _run(ws, run_id: int) -> Run:
    with ws.db.session() as s:
        return s.get(Run, run_id)


@pytest.mark.backends
def test_create_run_stores_config_folder_and_code_version(ws):
    run_id, folder = create_run(ws, "classifier", {"epochs": 3}, split_id=None, name="table2-1")
    run = _run(ws, run_id)
    assert (run.kind, run.name, run.status, run.config) == ("classifier", "table2-1", "created", {"epochs": 3})
    assert folder.is_dir() and folder == ws.root / "runs" / str(run_id) and run.artifact_dir == str(folder)
    assert run.code_version == code_version()


@pytest.mark.backends
def test_get_run_checks_the_kind(ws):
    run_id, _ = create_run(ws, "suggest", {}, split_id=None)
    with ws.db.session() as s:
        assert get_run(s, run_id, ("suggest",)).id == run_id
        with pytest.raises(NotFoundError, match=f"No detector or classifier run with id {run_id}"):
            get_run(s, run_id)
        with pytest.raises(NotFoundError):
            get_run(s, run_id + 1, ("suggest",))


@pytest.mark.backends
def test_ctrl_c_marks_interrupted_and_errors_mark_failed_with_the_message(ws):
    run_id, _ = create_run(ws, "detector", {}, split_id=None, status=RunStatus.RUNNING)
    with pytest.raises(KeyboardInterrupt), recording_failures(ws, run_id):
        raise KeyboardInterrupt
    assert (_run(ws, run_id).status, _run(ws, run_id).error) == ("interrupted", None)
    with pytest.raises(ZeroDivisionError), recording_failures(ws, run_id):
        1 / 0  # noqa: B018
    assert (_run(ws, run_id).status, _run(ws, run_id).error) == ("failed", "ZeroDivisionError: division by zero")
    with pytest.raises(InputError), recording_failures(ws, run_id):
        raise InputError("Loss is nan", "lower --lr")
    assert _run(ws, run_id).error == "Loss is nan"  # wb's own errors keep their one-line message
    update_run(ws, run_id, status=RunStatus.DONE, error=None)
    with recording_failures(ws, run_id):
        pass
    assert _run(ws, run_id).status == RunStatus.DONE == "done"


def test_code_version_names_the_git_commit_in_a_checkout():
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    head = git.stdout.strip()
    assert code_version(REPO).split("+git.")[1].removesuffix(".dirty") == head


def test_code_version_hashes_the_code_outside_git(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    first = code_version(tmp_path)
    assert first.endswith("+code." + source_hash(tmp_path)) and source_hash(tmp_path) == source_hash(REPO)
    with open(tmp_path / "pipelines" / "active.py", "a") as fh:
        fh.write("\n# changed\n")
    assert code_version(tmp_path) != first
