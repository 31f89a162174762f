"""Boxes reach the classifier: a chest-crop run is trained, evaluated, explained and used by suggest
with the same preprocessing (the test fails if any path sees the image another way); `wb eval`
reports shortcut reliance and the val-chosen threshold, in --json and in the DB."""
from __future__ import annotations

import pytest
import torch
from sqlalchemy import select

from db.models import Image, Prediction, Run, SplitMember

pytestmark = pytest.mark.slow

TINY = ["--epochs", "1", "--image-size", "64", "--batch-size", "4", "--weights", "none", "--device", "cpu", "--threads", "1"]


@pytest.fixture
def crop_run(cli, boxed_ws):
    """(detector run id, chest-crop classifier run id taking stand-in boxes from that detector)."""
    det = cli.json("train", "detector", "--backbone", "mobilenet_v2", "--limit", "4", *TINY)["run_id"]
    # Half the train images lose their box: they take the detector's, as --boxes-from promises.
    with boxed_ws.db.session() as s:
        from db.models import Annotation

        train = list(s.scalars(select(SplitMember.image_id).where(SplitMember.part == "train").order_by(SplitMember.image_id)))
        for a in s.scalars(select(Annotation).where(Annotation.image_id.in_(train[::2]))):
            a.status = "deleted"
    cls = cli.json("train", "classifier", "--members", "mobilenet_v2", "--input", "chest-crop", "--margin", "0.05",
                   "--boxes-from", det, *TINY)
    return det, cls


def test_train_eval_suggest_and_cam_see_the_same_chest_crop(cli, boxed_ws, crop_run):
    from pipelines.data import ClassificationDataset, ClassifierInput, classifier_tensors
    from workbench.predicting import box_records
    from workbench.runs import load_trained

    det, result = crop_run
    cls = result["run_id"]
    with boxed_ws.db.session() as s:
        run = s.get(Run, cls)
        assert run.config["input_mode"] == "chest-crop" and run.config["boxes_from"] == det
        sources = run.metrics["boxes"]["train"]
        assert sources["annotated"] > 0 and sources[f"detector {det}"] > 0  # both kinds of box were used
        assert "best" in run.metrics["threshold"] and "last" in run.metrics["threshold"]
    assert result["threshold"] is not None

    m = cli.json("eval", cls, "--part", "train", "--bootstrap", "20", "--device", "cpu")
    assert m["input_boxes"]["annotated"] > 0 and m["input_boxes"][f"detector {det}"] > 0
    cli.json("suggest", "--detector", det, "--classifier", cls, "-k", 2, "--include-annotated", "--parts", "train",
             "--device", "cpu")
    with boxed_ws.db.session() as s:
        evaluated = {p.image_id: p.prob_pneumonia for p in s.scalars(select(Prediction).where(Prediction.run_id == cls))}
        suggest_run = s.scalars(select(Run.id).where(Run.kind == "suggest")).one()
        suggested = {p.image_id: p.prob_pneumonia for p in s.scalars(select(Prediction).where(Prediction.run_id == suggest_run))}
        images = list(s.scalars(select(Image).where(Image.id.in_(list(evaluated))).order_by(Image.id)))
        for im in images:
            im.root  # noqa: B018 - abs_path after the session
        model, config = load_trained(s.get(Run, cls))
    assert set(suggested) <= set(evaluated) and len(suggested) >= 10
    for image_id, p in suggested.items():
        assert p == pytest.approx(evaluated[image_id], abs=1e-5), f"suggest and eval disagree on image {image_id}"
    # Training's own dataset gives the very tensors the other paths give.
    records, _ = box_records(boxed_ws, images, det, progress=False)
    inputs = ClassifierInput("chest-crop", 0.05)
    train_view = ClassificationDataset(records, config.image_size, inputs=inputs)
    for i, rec in enumerate(records[:6]):
        assert torch.equal(train_view[i][0], classifier_tensors(rec, config.image_size, inputs)[0])
    # wb cam explains the crop it was trained on.
    out = cli.json("cam", cls, "--images", str(images[0].id), "--device", "cpu")
    assert len(out["files"]) == 1


def test_eval_reports_reliance_and_the_threshold(cli, boxed_ws, crop_run):
    det, result = crop_run
    cls = result["run_id"]
    m = cli.json("eval", cls, "--bootstrap", "20", "--device", "cpu")
    r = m["reliance"]
    assert r["images"] == m["n"] and set(r["views"]) == {"full", "chest_only", "chest_removed"}
    assert m["off_chest_auc"] == r["off_chest_auc"] and r["fill"] == "grey"
    # A chest crop without margin filled outside the box changes only its margin; removing the chest leaves grey.
    assert 0.0 <= r["flip_share"] <= 1.0
    assert m["threshold"] == m["threshold_rule"]["value"] and m["threshold_rule"]["part"] == "val"
    assert m["at_0.5"]["threshold"] == 0.5
    report = boxed_ws.root / "runs" / str(cls) / "report-test"
    assert (report / "reliance.png").stat().st_size > 5_000 and "Shortcut reliance" in (report / "index.md").read_text()
    with boxed_ws.db.session() as s:
        stored = s.get(Run, cls).metrics["test"]
        assert stored["off_chest_auc"] == m["off_chest_auc"]
        p = s.scalars(select(Prediction).where(Prediction.run_id == cls)).first()
        assert {"prob_chest_only", "prob_chest_removed"} <= set(p.extra)
    plain = cli.json("eval", cls, "--no-reliance", "--bootstrap", "0", "--device", "cpu")
    assert plain["reliance"] is None and plain["off_chest_auc"] is None
    # The run takes its boxes from its own detector: asking for another is refused in one line.
    assert "takes its chest boxes from detector run" in cli.run("eval", cls, "--boxes-from", 999, code=1).output
