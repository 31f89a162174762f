"""wb starts like a small tool: the everyday commands never load the heavy libraries.

Each probe runs the real entry point (`workbench.cli:main`) in a fresh interpreter and reports
which heavy modules were loaded by the time it exits; a module-level `import torch` anywhere on
the path of `wb --help` or `wb status` makes these fail.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLE

HEAVY = ("torch", "torchvision", "label_studio_sdk", "pandas", "matplotlib", "sklearn", "albumentations", "cv2",
         "pycocotools", "pytorch_grad_cam", "scipy")

PROBE = """
import atexit, json, sys
heavy = json.loads(sys.argv[1])
atexit.register(lambda: sys.__stderr__.write("\\nLOADED " + json.dumps(sorted(m for m in heavy if m in sys.modules)) + "\\n"))
from workbench.cli import main
sys.argv = ["wb", *sys.argv[2:]]
main()
"""


def loaded_by(env: dict, *args: str, heavy=HEAVY) -> tuple[int, list[str]]:
    """(exit code, heavy modules loaded) of `wb ARGS` run as its own process."""
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(heavy), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    line = [x for x in proc.stderr.splitlines() if x.startswith("LOADED ")]
    assert line, proc.stderr
    return proc.returncode, json.loads(line[-1].removeprefix("LOADED "))


@pytest.fixture
def env(tmp_path) -> dict:
    return {**os.environ, "WB_WORKSPACE": str(tmp_path / "ws"), "WB_DB": str(tmp_path / "ws" / "wb.db"),
            "PYTHONPATH": str(REPO)}


def test_everyday_commands_load_no_heavy_library(env):
    assert loaded_by(env, "--help") == (0, [])
    assert loaded_by(env, "import", str(SAMPLE)) == (0, [])
    for args in (["status"], ["status", "--json"], ["split"], ["ls", "status"], ["train", "--help"],
                 ["suggest", "--help"], ["eval", "--help"]):
        assert loaded_by(env, *args) == (0, []), args


def test_status_on_a_current_database_does_not_import_alembic(env):
    assert loaded_by(env, "import", str(SAMPLE), heavy=("alembic",)) == (0, ["alembic"])  # a new DB is migrated
    assert loaded_by(env, "status", heavy=("alembic",)) == (0, [])  # then it is current: no alembic


def test_import_workers_load_no_heavy_library():
    """What a `wb import` worker imports when it is spawned (macOS, or a forkserver default)."""
    code = ("import json, sys; import pipelines.imagecheck; "
            "print(json.dumps(sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(HEAVY)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, timeout=60)
    assert json.loads(out.stdout) == []
