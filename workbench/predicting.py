"""A detector's top box per image, and storing it as `Prediction` rows of its run.

Below the use cases, beside workbench/runs.py: `wb eval` reads a part's detections with
`top_detections`; `wb ls push --predictions RUN` calls `predict_missing_boxes` for the images the
run has never seen, so pre-annotations do not wait for a `wb eval` of the right part. Torch is
imported at module level here: import this module inside the function that needs it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from db.models import Image, Prediction, Run
from pipelines import engine
from pipelines.data import LABELS, DetectionDataset, collate_detection
from workbench.errors import InputError
from workbench.runs import dimensions, load_trained, require_files, to_record
from workbench.workspace import Workspace

LS_PUSH_PART = "ls-push"  # Prediction.extra["part"] of boxes predicted for a push (eval replaces only its own part)


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
                          progress: bool = True) -> int:
    """Run detector run `run_id` (best.pt, CPU) on the images it has no Prediction row for; store its top box.

    Returns how many images were predicted (0 when every image had a row already). Rows are
    tagged `extra["part"] = LS_PUSH_PART`.
    """
    with ws.db.session() as s:
        run = s.get(Run, run_id)
        if run is None or run.kind != "detector":
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
                             extra={"part": LS_PUSH_PART}))
    return len(images)
