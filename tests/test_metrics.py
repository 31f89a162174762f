"""Metrics against hand-computed values; chest-box mAP with a fake detector (after torchvision's test_coco_eval)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines import engine
from pipelines.metrics import classification_metrics, detection_map, mean_iou, rates_from_confusion


def test_rates_from_a_hand_computed_confusion_matrix():
    # tn=5, fp=2, fn=1, tp=7
    r = rates_from_confusion([[5, 2], [1, 7]])
    assert r["accuracy"] == pytest.approx(12 / 15)
    assert r["precision"] == pytest.approx(7 / 9)
    assert r["recall"] == pytest.approx(7 / 8)
    assert r["specificity"] == pytest.approx(5 / 7)
    assert r["f1"] == pytest.approx(2 * 7 / (2 * 7 + 2 + 1))


def test_zero_denominators_give_zero():
    r = rates_from_confusion([[4, 0], [0, 0]])  # no positives predicted or present
    assert r["precision"] == 0.0 and r["recall"] == 0.0 and r["f1"] == 0.0 and r["specificity"] == 1.0


def test_classification_metrics_layout_and_intervals():
    # 15 images: 7 NORMAL (5 right, 2 called pneumonia), 8 PNEUMONIA (7 right, 1 missed)
    y_true = [0] * 7 + [1] * 8
    y_score = [0.1, 0.2, 0.3, 0.2, 0.4, 0.7, 0.6] + [0.9, 0.8, 0.7, 0.95, 0.6, 0.85, 0.75, 0.3]
    m = classification_metrics(y_true, y_score, n_boot=300, seed=1)
    assert m["confusion_matrix"] == [[5, 2], [1, 7]]
    assert m["accuracy"] == pytest.approx(12 / 15)
    assert m["f1"] == pytest.approx(14 / 17)
    assert m["specificity"] == pytest.approx(5 / 7)
    # AUC by hand: pairs (pos, neg) with pos > neg, ties count half, over 8 * 7 pairs.
    pairs = [(p, n) for p in y_score[7:] for n in y_score[:7]]
    expected_auc = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert m["roc_auc"] == pytest.approx(expected_auc)
    for key in ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi and lo < hi
    (tn_lo, tn_hi), _ = m["ci"]["confusion_matrix"][0]
    assert tn_lo <= 5 <= tn_hi


def test_explicit_predictions_override_the_threshold():
    m = classification_metrics([0, 1, 1], [0.9, 0.8, 0.1], [0, 1, 1], n_boot=10)
    assert m["confusion_matrix"] == [[1, 0], [0, 2]]
    assert m["roc_auc"] == pytest.approx(0.0)  # the scores rank both pneumonia images below the normal one


def test_one_class_has_no_auc():
    assert classification_metrics([1, 1], [0.7, 0.8], n_boot=20)["roc_auc"] is None


class FakeDetector(torch.nn.Module):
    """Returns canned predictions (boxes in input pixels), one dict per input image, in order."""

    def __init__(self, canned):
        super().__init__()
        self.canned = canned
        self.calls = 0

    def forward(self, images):
        out = self.canned[self.calls: self.calls + len(images)]
        self.calls += len(images)
        return out


def _pred(box, score):
    return {"boxes": torch.tensor([box], dtype=torch.float32), "scores": torch.tensor([score]), "labels": torch.tensor([1])}


def test_chest_box_map_on_three_tiny_images():
    gts = [{"boxes": [[0.0, 0.0, 10.0, 10.0]]}] * 3
    canned = [
        _pred([0.0, 0.0, 10.0, 10.0], 0.9),  # IoU 1: a hit at every threshold
        _pred([0.0, 0.0, 10.0, 6.2], 0.8),  # IoU 0.62: a hit at 0.50, 0.55, 0.60 only
        _pred([20.0, 20.0, 30.0, 30.0], 0.7),  # IoU 0: a miss
    ]
    loader = [([torch.zeros(3, 32, 32)] * 2, None), ([torch.zeros(3, 32, 32)], None)]
    preds = engine.predict_detections(FakeDetector(canned), loader, torch.device("cpu"))
    result = detection_map(preds, gts)
    # COCO's 101-point AP: precision 1 up to recall 2/3 (67 points) at IoU <= 0.60, up to 1/3 (34) above.
    assert result["map50"] == pytest.approx(67 / 101, abs=1e-6)
    assert result["map50_95"] == pytest.approx((3 * 67 + 7 * 34) / 10 / 101, abs=1e-6)
    assert mean_iou([p["boxes"][0] for p in preds], [g["boxes"][0] for g in gts]) == pytest.approx((1 + 0.62 + 0) / 3)


def test_map_is_one_for_perfect_boxes_and_zero_without_detections():
    gts = [{"boxes": [[1.0, 2.0, 8.0, 9.0]]}, {"boxes": [[0.0, 0.0, 5.0, 5.0]]}]
    perfect = [{"boxes": np.array(g["boxes"]), "scores": np.array([0.5])} for g in gts]
    assert detection_map(perfect, gts) == {"map50": pytest.approx(1.0), "map50_95": pytest.approx(1.0)}
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0)} for _ in gts]
    assert detection_map(empty, gts) == {"map50": 0.0, "map50_95": 0.0}
    assert mean_iou([None, None], [g["boxes"][0] for g in gts]) == 0.0
