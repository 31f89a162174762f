"""Evaluation metrics: classification with bootstrap 95% intervals (scikit-learn), chest-box
mAP (pycocotools) and mean IoU (torchvision). Pure functions over arrays.

Classes: 0 = NORMAL, 1 = PNEUMONIA (the positive class, as in the study).
"""
from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import confusion_matrix, roc_auc_score
from torchvision.ops import box_iou

SCALAR_METRICS = ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc")


def _safe(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def rates_from_confusion(cm: NDArray[Any]) -> dict[str, Any]:
    """Accuracy, F1, precision, recall, specificity from cm = [[tn, fp], [fn, tp]].

    A ratio with a zero denominator is 0.0 (scikit-learn's zero_division=0).
    """
    (tn, fp), (fn, tp) = np.asarray(cm)
    precision = _safe(tp, tp + fp)
    recall = _safe(tp, tp + fn)
    return {
        "accuracy": _safe(tp + tn, tn + fp + fn + tp),
        "f1": _safe(2 * tp, 2 * tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "specificity": _safe(tn, tn + fp),
    }


def _point(y_true: NDArray[Any], y_pred: NDArray[Any], y_score: NDArray[Any], *, fast: bool = False) -> dict[str, Any]:
    # The bootstrap's 1000 resamples count with bincount; the point estimate uses scikit-learn.
    cm = np.bincount(2 * y_true + y_pred, minlength=4).reshape(2, 2) if fast else confusion_matrix(y_true, y_pred, labels=[0, 1])
    out = rates_from_confusion(cm)
    out["roc_auc"] = float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else None
    out["confusion_matrix"] = cm.tolist()
    return out


def classification_metrics(y_true: ArrayLike, y_score: ArrayLike, y_pred: ArrayLike | None = None, *,
                           threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics with pneumonia positive and percentile bootstrap 95% intervals.

    y_true[N] in {0, 1}; y_score[N] = P(pneumonia); y_pred[N] defaults to y_score >= threshold.
    Returns {"n", "accuracy", ..., "roc_auc" (None with one class), "confusion_matrix":
    [[tn, fp], [fn, tp]], "ci": {metric: [lo, hi], "confusion_matrix": [[[lo, hi], ...], ...]}}.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_score = np.asarray(y_score, dtype=float)
    y_pred = (y_score >= threshold).astype(int) if y_pred is None else np.asarray(y_pred, dtype=int)
    if not (len(y_true) == len(y_score) == len(y_pred)) or len(y_true) == 0:
        raise ValueError("y_true, y_score and y_pred must be non-empty and of one length")
    result = {"n": int(len(y_true)), **_point(y_true, y_pred, y_score)}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[Any]] = {k: [] for k in (*SCALAR_METRICS, "confusion_matrix")}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        boot = _point(y_true[idx], y_pred[idx], y_score[idx], fast=True)
        for k, v in boot.items():
            if v is not None:
                samples[k].append(v)
    ci: dict[str, Any] = {}
    for k in SCALAR_METRICS:
        vals = np.asarray(samples[k], dtype=float)
        ci[k] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if len(vals) else None
    cms = np.asarray(samples["confusion_matrix"], dtype=float).reshape(-1, 2, 2)
    ci["confusion_matrix"] = (
        np.stack([np.percentile(cms, 2.5, axis=0), np.percentile(cms, 97.5, axis=0)], axis=-1).tolist()
        if len(cms) else None
    )
    result["ci"] = ci
    result["threshold"] = threshold
    return result


def youden_threshold(y_true: Any, y_score: Any) -> float:
    """The decision threshold that maximises Youden's J = sensitivity + specificity - 1.

    y_true[N] in {0, 1} (both present); y_score[N] = P(pneumonia). Predicting pneumonia when
    score >= t, t is placed halfway between the lowest score called positive and the next lower
    score (so it generalises instead of sitting on one image); ties in J go to the threshold
    nearest 0.5. Source: Youden 1950, "Index for rating diagnostic tests" (Cancer 3:32-35).
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(y_true, dtype=int)
    s = np.asarray(y_score, dtype=float)
    if len(np.unique(y)) != 2:
        raise ValueError("Youden's J needs both classes")
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    j = tpr - fpr
    best = np.flatnonzero(np.isclose(j, j.max()))
    finite = [int(i) for i in best if np.isfinite(thresholds[i])]
    candidates = []
    for i in finite or [int(best[0])]:
        t = float(min(thresholds[i], 1.0))
        lower = s[s < t]
        candidates.append((t + float(lower.max())) / 2 if len(lower) else t)
    return float(min(candidates, key=lambda t: abs(t - 0.5)))


RELIANCE_VIEWS = ("full", "chest_only", "chest_removed")  # pipelines.chest.VIEWS


def reliance_metrics(y_true: Any, probs: dict[str, Any], *, threshold: float = 0.5, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Shortcut reliance: how a model scores the same images as they are, chest only, chest removed.

    y_true[N] in {0, 1}; probs: view -> P(pneumonia)[N] for each of RELIANCE_VIEWS (pipelines.chest:
    chest_only = everything outside the box filled, chest_removed = the box filled). Returns
    {"images", "threshold", "views": {view: {"accuracy", "roc_auc", "ci": {...}, "confusion_matrix"}},
    "flip_share": share of predictions (at `threshold`) that change when the outside is removed,
    "off_chest_auc": ROC-AUC on chest-removed images (0.5: nothing outside the chest tells the
    classes apart; 1.0: the outside alone does)}.
    """
    missing = [v for v in RELIANCE_VIEWS if v not in probs]
    if missing:
        raise ValueError(f"reliance needs every view; missing {', '.join(missing)}")
    views: dict[str, Any] = {}
    for view in RELIANCE_VIEWS:
        m = classification_metrics(y_true, probs[view], threshold=threshold, n_boot=n_boot, seed=seed)
        views[view] = {"accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "confusion_matrix": m["confusion_matrix"],
                       "ci": {k: m["ci"][k] for k in ("accuracy", "roc_auc")}}
    full = np.asarray(probs["full"], dtype=float) >= threshold
    only = np.asarray(probs["chest_only"], dtype=float) >= threshold
    return {"images": int(len(full)), "threshold": threshold, "views": views,
            "flip_share": float(np.mean(full != only)), "off_chest_auc": views["chest_removed"]["roc_auc"]}


def detection_map(predictions: list[dict[str, Any]], targets: list[dict[str, Any]]) -> dict[str, Any]:
    """Class-agnostic chest-box COCO mAP (pycocotools).

    predictions[i]: {"boxes": [K, 4] xyxy pixels, "scores": [K]}; targets[i]: {"boxes": [M, 4]}.
    Returns {"map50": AP@IoU0.5, "map50_95": AP@[.5:.95]} (-1 from COCO becomes None).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(predictions) != len(targets) or not targets:
        raise ValueError("need one prediction per target image, and at least one image")
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    for i, (pred, tgt) in enumerate(zip(predictions, targets, strict=True)):
        boxes = np.asarray(tgt["boxes"], dtype=float).reshape(-1, 4)
        w = float(max(boxes[:, 2].max(initial=1.0), 1.0))
        h = float(max(boxes[:, 3].max(initial=1.0), 1.0))
        images.append({"id": i, "width": w, "height": h})
        for b in boxes:
            bw, bh = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [b[0], b[1], bw, bh],
                         "area": bw * bh, "iscrowd": 0})
        for b, s in zip(np.asarray(pred["boxes"], dtype=float).reshape(-1, 4), np.asarray(pred["scores"]).reshape(-1),
                        strict=True):
            dets.append({"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "chest"}]}
        gt.createIndex()
        if not dets:
            return {"map50": 0.0, "map50_95": 0.0}
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    def clean(x: float) -> float | None:
        return None if x < 0 else float(x)

    return {"map50_95": clean(ev.stats[0]), "map50": clean(ev.stats[1])}


def mean_iou(pred_boxes: list[Any], gt_boxes: list[Any]) -> float:
    """Mean IoU of each image's top predicted box with its ground-truth box (0 when none predicted).

    pred_boxes[i]: [4] xyxy or None; gt_boxes[i]: [4] xyxy.
    """
    if not gt_boxes:
        raise ValueError("no ground-truth boxes")
    ious = []
    for p, g in zip(pred_boxes, gt_boxes, strict=True):
        if p is None:
            ious.append(0.0)
            continue
        iou = box_iou(torch.as_tensor(np.asarray(p, dtype=float).reshape(1, 4)),
                      torch.as_tensor(np.asarray(g, dtype=float).reshape(1, 4)))
        ious.append(float(iou[0, 0]))
    value = float(np.mean(ious))
    return value if math.isfinite(value) else 0.0
