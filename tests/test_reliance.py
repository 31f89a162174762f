"""Shortcut reliance against hand-made models: one reads only a corner pixel (outside the chest box),
one only the centre (inside it). The corner model keeps its answer without the chest and loses it
without the outside; the centre model the reverse. Also the decision threshold rule (Youden's J)
and the pure reliance numbers, by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from pipelines import active
from pipelines.data import ClassificationDataset, ImageRecord, classifier_tensors
from pipelines.metrics import reliance_metrics, youden_threshold

SIZE = 32
BOX = (8.0, 8.0, 24.0, 24.0)  # the chest box: the centre; pixel (1, 1) lies outside it


class PixelModel(torch.nn.Module):
    """logits = (-v, v) with v = 4 x the (normalised) value of one input pixel."""

    def __init__(self, y: int, x: int):
        super().__init__()
        self.y, self.x = y, x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        v = 4 * images[:, 0, self.y, self.x]
        return torch.stack([-v, v], dim=1)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[ImageRecord]:
    """8 images: class 1 bright at the corner and in the centre, class 0 dark in both (the rest mid grey)."""
    folder = tmp_path_factory.mktemp("pixels")
    rng = np.random.default_rng(0)
    out = []
    for i in range(8):
        label = i % 2
        pixels = np.full((SIZE, SIZE), 100, dtype=np.uint8)
        level = int(rng.integers(200, 250)) if label else int(rng.integers(5, 40))
        pixels[0:4, 0:4] = level  # corner, outside the box
        pixels[12:20, 12:20] = level  # centre, inside the box
        path = folder / f"{i}.png"
        PILImage.fromarray(pixels).save(path)
        out.append(ImageRecord(i, str(path), label, BOX))
    return out


def _probs(model: torch.nn.Module, records: list[ImageRecord], view: str) -> np.ndarray:
    data = ClassificationDataset(records, SIZE, view=view, fill="grey")
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        return model(x).softmax(dim=1)[:, 1].numpy()


def test_a_corner_pixel_model_relies_on_the_outside(records):
    model = PixelModel(1, 1)
    probs = {v: _probs(model, records, v) for v in ("full", "chest_only", "chest_removed")}
    r = reliance_metrics([rec.label for rec in records], probs, n_boot=50)
    assert r["views"]["full"]["roc_auc"] == 1.0
    assert r["off_chest_auc"] == 1.0  # the chest removed changes nothing for it
    assert r["views"]["chest_only"]["roc_auc"] == 0.5  # the corner filled grey: one answer for all
    assert r["flip_share"] == 0.5  # the class-1 half loses its answer (grey is below the threshold)


def test_a_centre_model_does_not(records):
    model = PixelModel(SIZE // 2, SIZE // 2)
    probs = {v: _probs(model, records, v) for v in ("full", "chest_only", "chest_removed")}
    r = reliance_metrics([rec.label for rec in records], probs, n_boot=50)
    assert r["views"]["full"]["roc_auc"] == 1.0
    assert r["views"]["chest_only"]["roc_auc"] == 1.0 and r["flip_share"] == 0.0
    assert r["off_chest_auc"] == 0.5  # nothing outside the chest tells the classes apart


@pytest.mark.parametrize("where, high", [((1, 1), True), ((SIZE // 2, SIZE // 2), False)])
def test_the_suggest_component_scores_the_corner_model_high_and_the_centre_model_zero(records, where, high):
    model = PixelModel(*where)
    pairs = [classifier_tensors(rec, SIZE, views=("full", "chest_only"), fill="grey") for rec in records]
    with torch.no_grad():
        full = model(torch.stack([p[0] for p in pairs])).softmax(dim=1).numpy()
        only = model(torch.stack([p[1] for p in pairs])).softmax(dim=1).numpy()
    shift = active.probability_shift(full, only)
    if high:
        # Its corner made every answer: grey there (P 0.64) is far from bright (P ~1) and dark (P ~0) alike.
        assert shift.min() > 0.3
    else:
        assert shift.max() < 1e-6


def test_probability_shift_by_hand():
    probs = np.array([[0.1, 0.9], [0.6, 0.4], [np.nan, np.nan]])
    chest = np.array([[0.7, 0.3], [0.6, 0.4], [0.5, 0.5]])
    out = active.probability_shift(probs, chest)
    assert out[:2] == pytest.approx([0.6, 0.0]) and np.isnan(out[2])
    members = np.stack([probs, chest])  # [M=2, N=3, 2]
    assert active.probability_shift(members, members[::-1]).shape == (2, 3)
    with pytest.raises(ValueError):
        active.probability_shift(probs, chest[:2])


def test_reliance_metrics_by_hand():
    y = [0, 0, 1, 1]
    probs = {"full": [0.1, 0.2, 0.8, 0.9], "chest_only": [0.1, 0.6, 0.8, 0.4], "chest_removed": [0.5, 0.5, 0.5, 0.5]}
    r = reliance_metrics(y, probs, threshold=0.5, n_boot=0)
    assert r["images"] == 4 and r["flip_share"] == 0.5  # images 2 and 4 change sides
    assert r["off_chest_auc"] == 0.5 and r["views"]["chest_only"]["accuracy"] == 0.5
    with pytest.raises(ValueError, match="missing chest_removed"):
        reliance_metrics(y, {"full": probs["full"], "chest_only": probs["chest_only"]})


def test_youden_threshold_by_hand():
    # J = 0.5 at score >= 0.8 and at >= 0.35; halfway to the next lower score: 0.6 and 0.225; nearer 0.5 wins.
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.6)
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == pytest.approx(0.45)  # perfect split: between 0.2 and 0.7
    with pytest.raises(ValueError):
        youden_threshold([1, 1], [0.2, 0.3])
