"""Several `wb` processes on one database at once (issue 12.2), on SQLite and on PostgreSQL.

Real processes (subprocess), as people and jobs sharing a workspace would start them: two
imports of overlapping folders, two pulls from the same Label Studio project, and an import
beside a `wb suggest` and a loop of `wb status`. Each must finish with exit code 0, no
traceback and no "database is locked"; the database must hold each thing once and lose nothing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import Image
from tests.conftest import SAMPLE, load_db
from tests.test_hostile import WB, wb_env

NORMAL_TRAIN = "chest_xray/train/NORMAL"


def _start(args, env) -> subprocess.Popen:
    return subprocess.Popen([*WB, *map(str, args)], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(procs, timeout: float = 600) -> list[str]:
    """Wait for every process; each exited 0 with no traceback and no lock error. Their stdouts."""
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"{p.args[3:]} -> {p.returncode}\n{err}"
        assert "Traceback" not in err and "locked" not in err, err
        outs.append(out)
    return outs


def _env(ws, **extra) -> dict:
    env = wb_env(WB_WORKSPACE=str(ws.root), **extra)
    env.pop("WB_DB", None)
    if "://" in ws.db_location:  # PostgreSQL: the processes share the server's database
        env["WB_DB"] = ws.db_location
    return env


def _dataset_copy(dest: Path, extra: int) -> Path:
    """The repo sample plus `extra` distinct small files in train/NORMAL (so imports take a while)."""
    shutil.copytree(SAMPLE, dest)
    folder = dest / NORMAL_TRAIN
    first = next(folder.glob("*.jpeg")).read_bytes()
    for i in range(extra):
        (folder / f"IM-{7000 + i}-0001.jpeg").write_bytes(first + i.to_bytes(2, "big"))  # after the end marker
    return dest


# ---- two imports of overlapping folders ----------------------------------------------------------

@pytest.mark.backends
@pytest.mark.slow
def test_two_imports_of_overlapping_folders(ws, tmp_path):
    """`wb import data/` (copies a and b) beside `wb import data/b`: b is imported by both at once, and
    every file of b is a byte copy of one in a, so the two also race to record each content's first copy."""
    data = tmp_path / "data"
    a = _dataset_copy(data / "a", 400)
    shutil.copytree(a, data / "b")
    env = _env(ws)
    procs = [_start(["import", data, "--workers", "1", "--json"], env),
             _start(["import", data / "b", "--workers", "1", "--json"], env)]
    outs = [json.loads(o) for o in _finish(procs)]
    per_copy = 48 + 400
    assert outs[0]["added"] + outs[1]["added"] == 2 * per_copy  # each file recorded by exactly one of them
    with ws.db.session() as s:
        rows = s.execute(select(Image.root_id, Image.rel_path, Image.sha256, Image.id, Image.duplicate_of_id)).all()
        assert len(rows) == 2 * per_copy == len({(r.root_id, r.rel_path) for r in rows})  # nothing lost, nothing twice
        firsts: dict[str, list[int]] = {}
        for r in rows:
            if r.duplicate_of_id is None:
                firsts.setdefault(r.sha256, []).append(r.id)
        assert all(len(ids) == 1 for ids in firsts.values()), "a content recorded as first copy twice"
        sha_of = {r.id: r.sha256 for r in rows}
        for r in rows:  # every later copy points at the first copy of the same content
            if r.duplicate_of_id is not None:
                assert r.duplicate_of_id == firsts[r.sha256][0] and sha_of[r.duplicate_of_id] == r.sha256
        assert len(firsts) == per_copy - 1  # the sample holds one byte-identical pair
        assert s.scalar(select(func.count()).select_from(Image).where(Image.status != "ok")) == 0


# ---- two pulls from one Label Studio project ---------------------------------------------------

@pytest.mark.backends
@pytest.mark.labelstudio
@pytest.mark.slow
def test_two_pulls_at_once_record_each_annotation_once(cli, ws, imported_sample_db, ls_env):
    from label_studio_sdk import LabelStudio

    from annotations.convert import PixelBox, rectangle_result
    from db.models.labels import Annotation, LsTask

    load_db(ws, imported_sample_db)
    pushed = cli.json("ls", "push")  # the demo split's first batch: 24 tasks
    assert pushed["created"] == 24
    sdk = LabelStudio(base_url=ls_env["url"], api_key=ls_env["token"])
    with ws.db.session() as s:
        tasks = s.execute(select(LsTask.ls_task_id, Image.width, Image.height).join(Image, Image.id == LsTask.image_id)
                          .order_by(LsTask.ls_task_id)).all()
    made = []
    for task_id, width, height in tasks[:18]:
        box = PixelBox(width * 0.1, height * 0.1, width * 0.9, height * 0.9)
        made.append(sdk.annotations.create(id=task_id, result=[rectangle_result(box, "chest", width, height)]).id)
    skipped = sdk.annotations.create(id=tasks[18][0], result=[], was_cancelled=True).id
    env = _env(ws, WB_LS_URL=ls_env["url"], WB_LS_TOKEN=ls_env["token"], WB_LS_DOCUMENT_ROOT=ls_env["document_root"])
    outs = [json.loads(o) for o in _finish([_start(["ls", "pull", "--json"], env) for _ in range(2)])]
    assert sum(o["created"] for o in outs) == 19  # one pull recorded them, the other found them recorded
    assert all(o["updated"] == 0 and o["deleted"] == 0 for o in outs)
    with ws.db.session() as s:
        rows = s.execute(select(Annotation.ls_annotation_id, Annotation.status)).all()
    assert sorted(r.ls_annotation_id for r in rows) == sorted([*made, skipped])  # each once, none lost
    assert {r.ls_annotation_id: r.status for r in rows} == {**{a: "valid" for a in made}, skipped: "skipped"}
    again = cli.json("ls", "pull")
    assert (again["created"], again["updated"], again["deleted"]) == (0, 0, 0)


# ---- an import beside a suggest and a stream of status ------------------------------------------

@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, imported_sample_db):
    """(SQLite database with the sample boxed, detector run id, classifier run id): random-init tiny models."""
    import torch

    from tests.conftest import add_csv_boxes
    from workbench.configs import make_config
    from workbench.training import train_classifier, train_detector
    from workbench.workspace import Workspace

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_runs")
    shutil.copyfile(imported_sample_db, root / "wb.db")
    add_csv_boxes(root / "wb.db")
    ws = Workspace.from_options(workspace=str(root))
    det = train_detector(ws, make_config("detector", backbone="mobilenet_v2", epochs=1, image_size=64, limit=4,
                                         batch_size=2, weights="none", device="cpu"), progress=False)
    cls = train_classifier(ws, make_config("classifier", members=("mobilenet_v2",), epochs=1, image_size=32, limit=4,
                                           batch_size=2, weights="none", device="cpu"), progress=False)
    ws.db.dispose()
    return root / "wb.db", det.run_id, cls.run_id


@pytest.mark.backends
@pytest.mark.slow
def test_import_beside_suggest_and_status(ws, tmp_path, tiny_runs):
    source, det, cls = tiny_runs
    load_db(ws, source)
    with ws.db.session() as s:
        before = s.scalar(select(func.count(Image.id)))
    more = _dataset_copy(tmp_path / "more", 400)
    env = _env(ws, OMP_NUM_THREADS="1")
    importing = _start(["import", more, "--workers", "1", "--json"], env)
    suggesting = _start(["suggest", "--detector", det, "--classifier", cls, "-k", "5", "--device", "cpu",
                         "--include-annotated", "--parts", "train,val", "--batch-size", "4", "--json"], env)
    statuses, deadline = [], time.time() + 600
    while (importing.poll() is None or suggesting.poll() is None) and time.time() < deadline:
        done = subprocess.run([*WB, "status", "--json"], env=env, text=True, capture_output=True, timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        statuses.append(json.loads(done.stdout)["images"]["total"])
    added, ranked = (json.loads(o) for o in _finish([importing, suggesting]))
    assert added["added"] == 48 + 400
    assert len(ranked) == 5 and len({r["image_id"] for r in ranked}) == 5
    assert len(statuses) >= 2 and statuses == sorted(statuses)  # status saw the import grow, never shrink
    assert before <= statuses[0] and statuses[-1] <= before + 448
    with ws.db.session() as s:
        assert s.scalar(select(func.count(Image.id))) == before + 448
        assert s.scalar(select(func.count(func.distinct(Image.rel_path)))) == 48 + 400  # the new root's paths equal the old's
    from db.models import Run, Suggestion

    with ws.db.session() as s:
        run = s.scalars(select(Run).where(Run.kind == "suggest")).one()
        assert run.status == "done"
        assert sorted(s.scalars(select(Suggestion.rank).where(Suggestion.run_id == run.id))) == [1, 2, 3, 4, 5]
