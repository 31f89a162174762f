"""Ensemble classifier: heads, loss drops on a fixed batch, checkpoints reload, runs resume, CLI end to end."""
from __future__ import annotations

import math

import pytest
import torch

from pipelines import engine
from pipelines.classification import Ensemble
from pipelines.data import ClassificationDataset, ImageRecord

torch.set_num_threads(1)
TINY = ("--members", "mobilenet_v2", "--image-size", "64", "--limit", "6", "--batch-size", "3", "--weights", "none",
        "--lr", "0.001", "--threads", "1")


@pytest.fixture
def records(sample_dir):
    files = sorted((sample_dir / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:3]
    files += sorted((sample_dir / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[:3]
    return [ImageRecord(None, str(f), int("PNEUMONIA" in str(f))) for f in files]


@pytest.mark.parametrize("head,members", [("fc1", ["mobilenet_v2", "resnet18"]), ("fc2", ["mobilenet_v2", "resnet18"])])
def test_heads_shapes(head, members):
    model = Ensemble(members, head, "none").eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 2)
    if head == "fc1":
        assert model.combine.in_features == 2 * len(members)  # the members' class probabilities
    else:
        assert [m.out_features for m in model.member_heads] == [128, 128] and model.combine[-1].out_features == 2


def test_freeze_keeps_early_layers(records):
    model = Ensemble(["mobilenet_v2"], "fc2", "none", freeze=0.5)
    params = list(model.members[0].parameters())
    assert not params[0].requires_grad and params[-1].requires_grad
    model.train()
    first_bn = next(m for m in model.members[0].modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not first_bn.training  # frozen BatchNorm keeps its ImageNet statistics


@pytest.mark.parametrize("head", ["fc1", "fc2"])
def test_loss_decreases_on_a_fixed_batch(records, head):
    torch.manual_seed(0)
    model = Ensemble(["mobilenet_v2", "resnet18"], head, "none")
    data = ClassificationDataset(records, 64)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_checkpoint_reloads_to_identical_predictions(tmp_path, records):
    torch.manual_seed(0)
    model = Ensemble(["mobilenet_v2"], "fc2", "none")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(ClassificationDataset(records, 64), batch_size=3)
    engine.train_one_epoch(model, optimizer, loader, torch.device("cpu"), engine.ClassifierTask(), progress=False)
    before = engine.predict_probs(model, loader, torch.device("cpu"))
    engine.save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer, scheduler=None, scaler=None, epoch=1,
                           config={}, history=[], best_val_loss=None)
    fresh = Ensemble(["mobilenet_v2"], "fc2", "none")
    fresh.load_state_dict(engine.load_checkpoint(tmp_path / "c.pt")["model"])
    after = engine.predict_probs(fresh, loader, torch.device("cpu"))
    assert before.shape == (6, 2) and (before == after).all()


@pytest.mark.slow
def test_train_resume_eval_cam_from_the_cli(cli, boxed_ws):
    first = cli.json("train", "classifier", "--epochs", "1", *TINY)
    run_id = first["run_id"]
    folder = boxed_ws.root / "runs" / str(run_id)
    assert first["status"] == "done" and (folder / "best.pt").is_file()
    resumed = cli.json("train", "classifier", "--resume", str(run_id), "--epochs", "2")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and resumed["history"][0] == first["history"][0]

    m = cli.json("eval", str(run_id), "--bootstrap", "50")
    for key in ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc", "confusion_matrix", "ci"):
        assert key in m
    assert "map50" not in m
    assert sum(map(sum, m["confusion_matrix"])) == m["n"] > 0
    assert 0.0 <= m["accuracy"] <= 1.0 and m["ci"]["accuracy"][0] <= m["accuracy"] <= m["ci"]["accuracy"][1]
    assert (folder / "report-test" / "index.md").read_text().count("![") >= 3  # curves, confusion, ROC, samples

    text = cli.run("eval", str(run_id), "--part", "val", "--bootstrap", "20").output
    assert "accuracy" in text and "Report:" in text

    cam = cli.json("cam", str(run_id), "--images", "1", "--images", "2")
    assert len(cam["files"]) == 2


def test_empty_split_part_is_one_line(cli, boxed_ws):
    cli.run("split", "--name", "noval", "--ratios", "0.9,0,0.1")
    result = cli.run("train", "classifier", "--split", "noval", "--epochs", "1", *TINY, code=1)
    assert "The val part of the split is empty" in result.output


def test_unknown_member_is_one_line(cli, boxed_ws):
    result = cli.run("train", "classifier", "--members", "mobilenet_v2,alexnet", "--epochs", "1", code=1)
    assert "Unknown backbone 'alexnet'" in result.output


def test_balanced_loss_weights_are_inverse_class_frequency():
    from workbench.kinds import _class_weight

    records = [ImageRecord(None, "x", 0)] + [ImageRecord(None, "x", 1)] * 3
    assert _class_weight(records) == pytest.approx((4 / 2, 4 / 6))
    task = engine.ClassifierTask((2.0, 0.5))
    logits = torch.log(torch.tensor([[1.0, 3.0], [1.0, 3.0]]))  # P(pneumonia) = 3/4 for both images
    loss, correct = task.loss(lambda x: x, logits, torch.tensor([0, 1]))
    # by hand: (2 * -ln(1/4) + 0.5 * -ln(3/4)) / (2 + 0.5)
    assert float(loss) == pytest.approx((2 * math.log(4) + 0.5 * math.log(4 / 3)) / 2.5)
    assert correct == 1


def test_missing_image_file_is_a_one_line_error(cli, tmp_path, monkeypatch, sample_copy):
    """A file deleted after import: training stops with one line, not a traceback."""
    cli.run("import", sample_copy)
    cli.run("split", "--strategy", "source", "--batch-per-class", "2")
    gone = next((sample_copy / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))
    gone.unlink()
    result = cli.run("train", "classifier", "--members", "mobilenet_v2", "--weights", "none", "--epochs", "1",
                     "--image-size", "32", code=1)
    assert result.stderr.startswith("Error: 1 image file(s) of split part 'train' are missing, e.g. ")
    assert gone.name in result.stderr and "Traceback" not in result.output
