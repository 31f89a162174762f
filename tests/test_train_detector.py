"""Faster R-CNN training: loss drops on a fixed batch, checkpoints reload, runs resume, the CLI end to end."""
from __future__ import annotations

import json

import pytest
import torch

from pipelines import engine
from pipelines.data import DetectionDataset, ImageRecord, collate_detection
from pipelines.detection import build_detector

torch.set_num_threads(1)
TINY = ("--image-size", "64", "--limit", "6", "--batch-size", "3", "--weights", "none", "--threads", "1")


@pytest.fixture
def boxed_records(sample_dir):
    import csv

    rows = list(csv.DictReader(open(sample_dir / "chest_boxes.csv")))[:4]
    return [
        ImageRecord(None, str(sample_dir / r["path"]), int("PNEUMONIA" in r["path"]),
                    (float(r["x_min"]), float(r["y_min"]), float(r["x_max"]) + 1, float(r["y_max"]) + 1))
        for r in rows
    ]


def test_loss_decreases_on_a_fixed_batch(boxed_records):
    torch.manual_seed(0)
    model = build_detector("mobilenet_v2", "none", image_size=64)
    images, targets = collate_detection([DetectionDataset(boxed_records, 64)[i] for i in range(4)])
    assert all(t["boxes"].shape == (1, 4) and t["labels"].item() in (1, 2) for t in targets)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    losses = []
    for _ in range(8):
        loss = sum(model(list(images), list(targets)).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.85 * losses[0], losses


def test_checkpoint_reloads_to_identical_predictions(tmp_path, boxed_records):
    torch.manual_seed(0)
    model = build_detector("mobilenet_v2", "none", image_size=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(DetectionDataset(boxed_records, 64), batch_size=2, collate_fn=collate_detection)
    engine.train_one_epoch(model, optimizer, loader, torch.device("cpu"), engine.DetectorTask(), progress=False)
    before = engine.predict_detections(model, loader, torch.device("cpu"))
    engine.save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer, scheduler=None, scaler=None, epoch=1,
                           config={}, history=[], best_val_loss=None)
    fresh = build_detector("mobilenet_v2", "none", image_size=64)
    fresh.load_state_dict(engine.load_checkpoint(tmp_path / "c.pt")["model"])
    after = engine.predict_detections(fresh, loader, torch.device("cpu"))
    for a, b in zip(before, after, strict=True):
        assert (a["boxes"] == b["boxes"]).all() and (a["scores"] == b["scores"]).all()


def test_non_finite_loss_aborts(boxed_records):
    model = build_detector("mobilenet_v2", "none", image_size=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e12)  # diverges at once
    loader = torch.utils.data.DataLoader(DetectionDataset(boxed_records, 64), batch_size=2, collate_fn=collate_detection)
    with pytest.raises(engine.NonFiniteLoss):
        for _ in range(5):
            engine.train_one_epoch(model, optimizer, loader, torch.device("cpu"), engine.DetectorTask(), progress=False)


@pytest.mark.slow
def test_train_resume_eval_cam_from_the_cli(cli, boxed_ws):
    out = cli.run("train", "detector", "--epochs", "1", *TINY, "--json").stdout
    assert out.rstrip().endswith("}") and json.loads(out)["run_id"] == 1
    first = json.loads(out)
    assert first["epochs_done"] == 1 and first["status"] == "done"
    folder = boxed_ws.root / "runs" / "1"
    assert (folder / "last.pt").is_file() and (folder / "best.pt").is_file()

    resumed = cli.json("train", "detector", "--resume", "1", "--epochs", "2")
    assert resumed["run_id"] == 1 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == first["history"][0]  # epoch 1 was not trained again
    assert engine.load_checkpoint(folder / "last.pt")["epoch"] == 2

    m = cli.json("eval", "1", "--part", "test", "--bootstrap", "50")
    for key in ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc", "map50", "map50_95", "mean_iou"):
        assert key in m
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    assert tn + fp + fn + tp == m["n"] == m["annotated_images"] > 0
    assert 0.0 <= m["map50"] <= 1.0 and 0.0 <= m["mean_iou"] <= 1.0
    assert (folder / "report-test" / "index.html").is_file() and (folder / "report-test" / "samples.png").is_file()

    status = cli.json("status")
    run = next(r for r in status["runs"] if r["id"] == 1)
    assert run["kind"] == "detector" and run["status"] == "done" and run["metrics"]["test"]["n"] == m["n"]

    from sqlalchemy import func, select

    from db.models import Prediction

    with boxed_ws.db.session() as s:
        assert s.scalar(select(func.count(Prediction.id)).where(Prediction.run_id == 1)) == m["n"]
    cli.run("eval", "1", "--bootstrap", "10", "--json")  # evaluating again replaces, not duplicates
    with boxed_ws.db.session() as s:
        assert s.scalar(select(func.count(Prediction.id)).where(Prediction.run_id == 1)) == m["n"]

    cam = cli.json("cam", "1", "--images", "1", "--device", "cpu")
    assert len(cam["files"]) == 1 and cam["files"][0].endswith(".png")
    if not torch.cuda.is_available():  # --device is used, not ignored: asking for CUDA here fails
        assert "torch sees no CUDA device" in cli.run("eval", "1", "--device", "cuda", code=1).output
        assert "torch sees no CUDA device" in cli.run("cam", "1", "--images", "1", "--device", "cuda", code=1).output


def test_no_annotated_images_is_one_line(cli, ws, imported_sample_db):
    import shutil

    ws.root.mkdir(parents=True)
    shutil.copyfile(imported_sample_db, ws.root / "wb.db")
    result = cli.run("train", "detector", "--epochs", "1", *TINY, code=1)
    assert "No annotated images in the train part" in result.output and "Traceback" not in result.output


def test_unknown_backbone_is_one_line(cli, boxed_ws):
    result = cli.run("train", "detector", "--backbone", "vgg16", *TINY, code=1)
    assert "Unknown detector backbone 'vgg16'" in result.output


def test_missing_weights_name_the_way_out(cli, boxed_ws, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    result = cli.run("train", "detector", "--backbone", "mobilenet_v3", "--epochs", "1", "--image-size", "64",
                     "--limit", "2", "--weights", "imagenet", code=1)
    assert "--weights none" in result.output and "TORCH_HOME" in result.output


def test_corrupt_checkpoint_is_one_line(cli, boxed_ws):
    cli.run("train", "detector", "--epochs", "1", *TINY)
    folder = boxed_ws.root / "runs" / "1"
    (folder / "last.pt").write_bytes(b"not a checkpoint")
    (folder / "best.pt").write_bytes(b"")
    assert "is unreadable" in cli.run("train", "detector", "--resume", "1", "--epochs", "2", code=1).output
    assert "is unreadable" in cli.run("eval", "1", code=1).output
    assert "No detector run with id 7" in cli.run("train", "detector", "--resume", "7", code=1).output
