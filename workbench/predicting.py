"""Trained models applied to the workspace's images: a service below the use cases, beside runs.py.

- `top_detections`: a detector's top box per image (`wb eval`); `predict_missing_boxes` stores it
  as `Prediction` rows of its run for images the run has never seen (`wb ls push --predictions`).
- `chest_boxes` / `box_records`: each image's chest box: the annotated one, else a detector
  run's (predicted once and stored). Classifier runs that use boxes (an input mode, guidance)
  name that detector run in their config, and training, `wb eval`, `wb cam` and `wb suggest`
  all take boxes from here, so a model is asked the way it was trained.
- `decision_threshold`: the run's threshold, chosen on its val part (P(pneumonia) from its kind's
  `predict`, workbench.kinds).
Torch is imported at module level here: import this module inside the function that needs it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from db.models import Image, Prediction, Run, RunKind, Split
from pipelines import engine
from pipelines.chest import Box
from pipelines.data import LABELS, ClassifierInput, DetectionDataset, ImageRecord, collate_detection
from pipelines.metrics import youden_threshold
from workbench.configs import ClassifierConfig, TrainConfig
from workbench.errors import InputError
from workbench.kinds import get_kind
from workbench.runs import dimensions, latest_boxes, load_trained, part_images, require_files, to_record
from workbench.workspace import Workspace

LS_PUSH_PART = "ls-push"  # Prediction.extra["part"] of boxes predicted for a push (eval replaces only its own part)
BOXES_PART = "boxes"  # ... of boxes predicted to stand in for missing annotations (chest_boxes)
_CHUNK = 5000  # ids per IN (...) query


def top_detections(preds: list[dict], sizes: list[tuple[int, int]], image_size: int):
    """Top detection per image in file pixels: (labels 0/1, prob_pneumonia, scores, boxes, all scaled preds).

    preds: engine.predict_detections output (boxes in the model's image_size x image_size input);
    sizes: each file's (width, height). An image without a detection gets label 0, prob 0.5, no box.
    """
    labels: list[int] = []
    probs: list[float] = []
    scores: list[float | None] = []
    boxes: list[list[float] | None] = []
    scaled: list[dict[str, Any]] = []
    for p, (w, h) in zip(preds, sizes, strict=True):
        factor = np.array([w / image_size, h / image_size, w / image_size, h / image_size])
        b = p["boxes"].reshape(-1, 4) * factor
        scaled.append({"boxes": b, "scores": p["scores"], "labels": p["labels"]})
        if len(p["scores"]):
            pneumonia = int(p["labels"][0]) == 2
            s = float(p["scores"][0])
            labels.append(int(pneumonia))
            # Monotone in the top detection and consistent with its class: >= 0.5 iff pneumonia.
            probs.append(0.5 + 0.5 * s if pneumonia else 0.5 - 0.5 * s)
            scores.append(s)
            boxes.append(b[0].tolist())
        else:
            labels.append(0)
            probs.append(0.5)
            scores.append(None)
            boxes.append(None)
    return labels, probs, scores, boxes, scaled


def predict_missing_boxes(ws: Workspace, run_id: int, image_ids: Sequence[int], *, batch_size: int = 8,
                          progress: bool = True, part: str = LS_PUSH_PART) -> int:
    """Run detector run `run_id` (best.pt, CPU) on the images it has no Prediction row for; store its top box.

    Returns how many images were predicted (0 when every image had a row already). Rows are
    tagged `extra["part"] = part`.
    """
    with ws.db.session() as s:
        run = s.get(Run, run_id)
        if run is None or run.kind != RunKind.DETECTOR:
            raise InputError(f"Run {run_id} is not a detector run", "pass a detector run's id (see `wb status`)")
        have = set(s.scalars(select(Prediction.image_id).where(Prediction.run_id == run_id)))
        todo = [i for i in dict.fromkeys(image_ids) if i not in have]
        if not todo:
            return 0
        images = list(s.scalars(select(Image).where(Image.id.in_(todo)).order_by(Image.id)))
        for im in images:
            im.root  # noqa: B018 - abs_path needs the root after the session closes
        require_files(images, f"the images to predict with run {run_id}")
        model, config = load_trained(run)
    records = [to_record(im) for im in images]
    loader = torch.utils.data.DataLoader(DetectionDataset(records, config.image_size), batch_size=batch_size,
                                         collate_fn=collate_detection)
    preds = engine.predict_detections(model, loader, torch.device("cpu"), progress=progress)
    labels, probs, scores, boxes, _ = top_detections(preds, [dimensions(im) for im in images], config.image_size)
    with ws.db.session() as s:
        for im, label, score, prob, box in zip(images, labels, scores, probs, boxes, strict=True):
            x0, y0, x1, y1 = box if box is not None else (None,) * 4
            s.add(Prediction(run_id=run_id, image_id=im.id, label=LABELS[int(label)], score=score,
                             prob_pneumonia=float(prob), x_min=x0, y_min=y0, x_max=x1, y_max=y1,
                             extra={"part": part}))
    return len(images)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def chest_boxes(ws: Workspace, image_ids: Sequence[int], detector_run: int | None, *,
                progress: bool = True) -> dict[int, tuple[Box, str]]:
    """image id -> (chest box in file pixels, where it came from: "annotated" or "detector <run>").

    The newest valid annotated box first; for the other images, with `detector_run`, that run's
    top box (predicted now, and stored as `Prediction` rows, for images it has never seen).
    Images with neither are left out (no annotation, and no detector run or no detection).
    """
    ids = list(dict.fromkeys(image_ids))
    with ws.db.session() as s:
        out = {i: (b, "annotated") for i, b in latest_boxes(s, ids).items()}
    rest = [i for i in ids if i not in out]
    if detector_run is None or not rest:
        return out
    predict_missing_boxes(ws, detector_run, rest, progress=progress, part=BOXES_PART)
    source = f"detector {detector_run}"
    with ws.db.session() as s:
        for chunk in _chunks(rest):
            for p in s.scalars(select(Prediction).where(Prediction.run_id == detector_run, Prediction.image_id.in_(chunk),
                                                        Prediction.x_min.is_not(None)).order_by(Prediction.id)):
                if p.x_min is not None and p.y_min is not None and p.x_max is not None and p.y_max is not None:
                    out[p.image_id] = ((p.x_min, p.y_min, p.x_max, p.y_max), source)  # the newest row wins
    return out


def box_records(ws: Workspace, images: Sequence[Image], detector_run: int | None, *,
                progress: bool = True) -> tuple[list[ImageRecord], dict[str, int]]:
    """(one record per image with its chest box from `chest_boxes`, counts per box source incl. "none")."""
    boxes = chest_boxes(ws, [im.id for im in images], detector_run, progress=progress)
    records = [to_record(im, boxes[im.id][0] if im.id in boxes else None) for im in images]
    counts = Counter(boxes[im.id][1] if im.id in boxes else "none" for im in images)
    return records, dict(counts)


def classifier_input(config: ClassifierConfig) -> ClassifierInput:
    """How a classifier run sees images (its input mode and crop margin)."""
    return ClassifierInput(config.input_mode, config.margin)


def box_source(config: TrainConfig, requested: int | None = None) -> int | None:
    """The detector run whose boxes stand in for missing annotations: the run's own when its input
    uses boxes (a request for another is an error: a model is asked the way it was trained), else
    the request (e.g. boxes for reliance, which never change what the model is given)."""
    own = config.own_box_source()
    if config.uses_boxes():
        if requested is not None and requested != own:
            raise InputError(f"This run takes its chest boxes from {'detector run ' + str(own) if own else 'annotations only'}",
                             "drop --boxes-from: the run's own box source is used")
        return own
    return requested


def decision_threshold(ws: Workspace, run_id: int, checkpoint: str, model: torch.nn.Module | None = None, *,
                       device: torch.device | None = None, progress: bool = False) -> dict[str, Any]:
    """The run's decision threshold for `checkpoint`, chosen on its val part (Youden's J), stored on the run.

    Returns {"value", "rule", "part", "images"}; computed once per checkpoint and kept in
    run.metrics["threshold"][checkpoint]. Falls back to 0.5 (rule "default") when the val part
    lacks a class. Never tuned on test.
    """
    with ws.db.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise InputError(f"No run with id {run_id}")
        stored = ((run.metrics or {}).get("threshold") or {}).get(checkpoint)
        if stored is not None:
            return dict(stored)
        from workbench.configs import config_from_dict

        config = config_from_dict(run.kind, run.config)
        kind = get_kind(run.kind)
        if model is None:
            model, config = load_trained(run, checkpoint)
        split = s.get(Split, run.split_id) if run.split_id is not None else None
        _, images = part_images(s, split.name if split is not None else None, "val")
        for im in images:
            im.root  # noqa: B018 - abs_path needs the root after the session closes
    device = device or torch.device("cpu")
    model = model.to(device)
    records, _ = box_records(ws, images, box_source(config), progress=progress) if config.uses_boxes() else (
        [to_record(im) for im in images], {})
    labels = np.array([r.label for r in records])
    if len(set(labels.tolist())) < 2:
        found = {"value": 0.5, "rule": "default (the val part lacks a class)", "part": "val", "images": len(records)}
    else:
        probs, _ = kind.predict(model, config, records, device, progress=progress)
        found = {"value": round(youden_threshold(labels, probs), 6), "rule": "youden_j", "part": "val", "images": len(records)}
    with ws.db.session() as s:
        row = s.get(Run, run_id)
        assert row is not None  # read above in this command
        metrics = dict(row.metrics or {})
        metrics["threshold"] = {**(metrics.get("threshold") or {}), checkpoint: found}
        row.metrics = metrics
    return found
