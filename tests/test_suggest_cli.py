"""`wb suggest` end to end on the repo sample with a tiny detector and classifier.

The models are trained once per module through the training use cases (seconds on CPU); each
test works on its own copy of the database. After training, the train part's chest boxes are
marked deleted, so the train part is an unlabelled pool.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sqlalchemy import select, update

from db.models import Annotation, Image, Prediction, Run, SplitMember, Suggestion
from tests.conftest import add_csv_boxes, load_db, require_imagenet_mobilenet_v2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, imported_sample_db):
    """(workspace root with wb.db, detector run id, classifier run id)."""
    import torch

    from workbench.configs import make_config
    from workbench.training import train_classifier, train_detector
    from workbench.workspace import Workspace

    require_imagenet_mobilenet_v2()  # a 1-epoch detector finds chests only from a pretrained start
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("suggest_ws")
    shutil.copyfile(imported_sample_db, root / "wb.db")
    add_csv_boxes(root / "wb.db")
    ws = Workspace.from_options(workspace=str(root))
    det = train_detector(ws, make_config("detector", backbone="mobilenet_v2", epochs=1, image_size=96, limit=6,
                                         batch_size=3, weights="imagenet", device="cpu"), progress=False)
    cls = train_classifier(ws, make_config("classifier", members=("mobilenet_v2", "resnet18"), epochs=1, image_size=64,
                                           limit=8, batch_size=4, weights="none", device="cpu"),
                           progress=False)
    with ws.db.session() as s:
        split_id = s.scalar(select(SplitMember.split_id).limit(1))
        train_ids = select(SplitMember.image_id).where(SplitMember.split_id == split_id, SplitMember.part == "train")
        s.execute(update(Annotation).where(Annotation.image_id.in_(train_ids)).values(status="deleted"))
    ws.db.dispose()
    return root, det.run_id, cls.run_id


@pytest.fixture
def sws(trained, ws):
    """The test's `ws` holding a copy of the trained workspace's database (on the test's backend)."""
    root, _, _ = trained
    load_db(ws, root / "wb.db")
    return ws


def _pool(ws) -> dict[str, Image]:
    """Unlabelled, un-batched first copies of the train part, by relative path."""
    from workbench.configs import SuggestConfig
    from workbench.suggesting import list_candidates

    with ws.db.session() as s:
        _, cands = list_candidates(s, SuggestConfig(detector_run=0, classifier_run=0))
        return {c.rel_path: c for c in cands}


@pytest.mark.backends
def test_suggest_json_on_the_sample(cli, sws, trained):
    _, det, cls = trained
    pool = _pool(sws)
    assert len(pool) >= 6
    rows = cli.json("suggest", "--detector", det, "--classifier", cls, "-k", 4, "--device", "cpu")
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert all(r["image"] in pool for r in rows)  # never an annotated, batched or other-part image
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert len({pool[r["image"]].patient_key for r in rows}) == 4  # one image per patient by default
    names = {"det_confidence", "det_ambiguity", "det_instability", "uncertainty", "cls_entropy",
             "cls_disagreement", "classifier", "off_lung"}
    for r in rows:
        assert names <= set(r["components"])
        for name in names:
            v = r["components"][name]
            assert v is None or 0.0 <= v <= 1.0
        assert set(r["components"]["off_lung_members"]) == {"0:mobilenet_v2", "1:resnet18"}
        assert r["reason"]
    with sws.db.session() as s:
        run = s.scalars(select(Run).where(Run.kind == "suggest")).one()
        assert run.status == "done" and run.metrics["candidates"] == len(pool)
        stored = list(s.scalars(select(Suggestion).where(Suggestion.run_id == run.id).order_by(Suggestion.rank)))
        assert [x.image_id for x in stored] == [pool[r["image"]].image_id for r in rows]
        assert s.scalar(select(Prediction.id).where(Prediction.run_id == run.id).limit(1)) is not None


@pytest.mark.backends
def test_weights_change_the_order_and_rescoring_is_reused(cli, sws, trained):
    _, det, cls = trained
    base = ["suggest", "--detector", det, "--classifier", cls, "-k", 6, "--per-patient", 0, "--device", "cpu"]
    by_off = cli.json(*base, "--weights", "off_lung=1")
    by_det = cli.json(*base, "--weights", "uncertainty=1")
    offs = [r["components"]["off_lung"] for r in by_off]
    finite = [v for v in offs if v is not None]
    assert finite == sorted(finite, reverse=True)  # ranks follow the single weighted component
    dets = [r["components"]["uncertainty"] for r in by_det]
    assert dets == sorted(dets, reverse=True)
    with sws.db.session() as s:
        runs = list(s.scalars(select(Run).where(Run.kind == "suggest").order_by(Run.id)))
        assert runs[1].metrics["resumed"] == runs[0].metrics["candidates"]  # second run ran no model


@pytest.mark.backends
def test_interrupted_scoring_resumes_and_matches_an_unbroken_run(cli, sws, trained, monkeypatch):
    from pipelines import scoring

    _, det, cls = trained
    args = ["suggest", "--detector", det, "--classifier", cls, "-k", 3, "--batch-size", 2, "--device", "cpu"]
    real = scoring.classify_with_cams
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(scoring, "classify_with_cams", flaky)
    cli.run(*args, "--json", code=130)
    with sws.db.session() as s:
        run = s.scalars(select(Run).where(Run.kind == "suggest")).one()
        assert run.status == "interrupted"
        stored = s.scalar(select(Prediction.id).where(Prediction.run_id == run.id).limit(1))
        n_stored = len(list(s.scalars(select(Prediction.id).where(Prediction.run_id == run.id))))
    assert stored is not None and n_stored == 4  # two batches of two were committed
    monkeypatch.setattr(scoring, "classify_with_cams", real)
    resumed = cli.json(*args)
    with sws.db.session() as s:
        runs = list(s.scalars(select(Run).where(Run.kind == "suggest")))
        assert len(runs) == 1 and runs[0].status == "done" and runs[0].metrics["resumed"] == 4
    # The same ranking as a run that was never interrupted (fresh DB copy, same models).
    shutil.copyfile(trained[0] / "wb.db", sws.root / "fresh.db")
    fresh = json.loads(cli.run("--db", sws.root / "fresh.db", *args, "--json").stdout)
    assert [r["image"] for r in fresh] == [r["image"] for r in resumed]
    np.testing.assert_allclose([r["score"] for r in fresh], [r["score"] for r in resumed], atol=1e-6)


def test_csv_and_show(cli, sws, trained, tmp_path):
    _, det, cls = trained
    out = tmp_path / "batch.csv"
    result = cli.run("suggest", "--detector", det, "--classifier", cls, "-k", 3, "--csv", out, "--device", "cpu")
    assert "rank" in result.stdout and "off-lung" in result.stdout
    lines = out.read_text().splitlines()
    assert lines[0].startswith("rank,image,image_id,label,score,") and len(lines) == 4
    first_image = lines[1].split(",")[1]
    with sws.db.session() as s:
        run_id = s.scalars(select(Run.id).where(Run.kind == "suggest")).one()
    png = tmp_path / "why.png"
    info = cli.json("suggest", "show", run_id, first_image, "--out", png, "--device", "cpu")
    assert info["file"] == str(png) and png.stat().st_size > 10_000
    if not torch.cuda.is_available():  # --device is used, not ignored
        assert "torch sees no CUDA device" in cli.run("suggest", "show", run_id, first_image, "--device", "cuda", code=1).output
    from PIL import Image as PILImage

    with PILImage.open(png) as im:
        # Two rows of 1 + members panels: the image and each member's LayerCAM, then each member's Grad-CAM.
        assert 1.2 * im.height < im.width < 2 * im.height


def test_same_seed_same_batch_and_diversity(cli, sws, trained):
    _, det, cls = trained
    args = ["suggest", "--detector", det, "--classifier", cls, "-k", 4, "--device", "cpu", "--seed", 3]
    a = cli.json(*args)
    b = cli.json(*args)
    assert [r["image"] for r in a] == [r["image"] for r in b]
    d = cli.json(*args, "--diversity")
    assert len(d) == 4 and [r["rank"] for r in d] == [1, 2, 3, 4]


def test_errors_are_one_line(cli, sws, trained):
    _, det, cls = trained
    r = cli.run("suggest", "--detector", det, "--classifier", cls, "--weights", "nope=1", code=1)
    assert "Unknown score component" in r.output
    r = cli.run("suggest", "--detector", cls, "--classifier", cls, code=1)
    assert "No detector run" in r.output
    r = cli.run("suggest", "--detector", det, "--classifier", cls, "--parts", "test", "--device", "cpu", code=1)
    assert "No candidates" in r.output  # every test image is annotated
    r = cli.run("suggest", "show", 999, "x.jpeg", code=1)
    assert "No suggest run" in r.output


@pytest.mark.labelstudio
def test_push_sends_the_batch_in_rank_order_with_detector_boxes(cli, sws, trained, ls_env):
    from label_studio_sdk import LabelStudio

    from db.models.labels import LsProject, LsTask

    _, det, cls = trained
    rows = cli.json("suggest", "--detector", det, "--classifier", cls, "-k", 3, "--device", "cpu", "--push")
    with sws.db.session() as s:
        run_id = s.scalars(select(Run.id).where(Run.kind == "suggest")).one()
        sugg = list(s.scalars(select(Suggestion).where(Suggestion.run_id == run_id).order_by(Suggestion.rank)))
        assert all(x.pushed for x in sugg)
        tasks = list(s.scalars(select(LsTask).order_by(LsTask.ls_task_id)))
        project = s.scalars(select(LsProject)).one().project_id
        boxes = {p.image_id: p for p in s.scalars(select(Prediction).where(Prediction.run_id == run_id))}
    assert [t.image_id for t in tasks] == [x.image_id for x in sugg]  # task ids follow the rank
    sdk = LabelStudio(base_url=ls_env["url"], api_key=ls_env["token"])
    for t in tasks:
        task = sdk.tasks.get(t.ls_task_id)
        preds = task.predictions or []
        has_box = boxes[t.image_id].x_min is not None
        assert len(preds) == int(has_box)
        if has_box:
            p = preds[0] if isinstance(preds[0], dict) else preds[0].__dict__
            assert str(p.get("model_version")) == str(run_id)
    # A second suggestion leaves the pushed images out.
    again = cli.json("suggest", "--detector", det, "--classifier", cls, "-k", 3, "--device", "cpu")
    assert not {r["image"] for r in again} & {r["image"] for r in rows}
    assert project
