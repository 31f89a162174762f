"""The behaviour off-lung attention exists for: a planted shortcut outside the chest is found.

On a copy of the repo sample, a small bright square (10% of the shorter side) is drawn outside
the chest box, in the middle of the widest margin, on the PNEUMONIA images of the train part
only. A small classifier (MobileNetV2, ImageNet weights, 224 px) trained on the train part
learns the marker (the unmarked val part drops to chance). Each image's off-lung attention is
then measured exactly as `wb suggest` does (one-pass Grad-CAM for the predicted class against
the annotated chest box), and its ROC-AUC for "has marker" over all 48 images is reported.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from tests.conftest import require_imagenet_mobilenet_v2

pytestmark = pytest.mark.slow


def _plant(path: str, box: list[float], width: int, height: int) -> bool:
    x0, y0, x1, y1 = box
    side = int(0.10 * min(width, height))
    margins = {"left": x0, "right": width - x1, "top": y0, "bottom": height - y1}
    where = max(margins, key=margins.get)
    if margins[where] < side:
        return False
    cx = {"left": x0 / 2, "right": (x1 + width) / 2}.get(where, width / 2)
    cy = {"top": y0 / 2, "bottom": (y1 + height) / 2}.get(where, height / 2)
    left, top = int(cx - side / 2), int(cy - side / 2)
    with PILImage.open(path) as im:
        arr = np.array(im)
    arr[top:top + side, left:left + side] = 255
    PILImage.fromarray(arr).save(path, quality=95)
    return True


def test_off_lung_attention_ranks_marker_images_first(sample_copy, tmp_path, record_property):
    import torch
    from sklearn.metrics import roc_auc_score

    from db.models import Image, Run, SplitMember
    from pipelines import active
    from pipelines.scoring import PoolDataset, classify_with_cams, collate_pool
    from workbench.configs import SplitConfig, make_config
    from workbench.importing import import_dataset
    from workbench.runs import load_trained
    from workbench.splitting import create_split
    from workbench.training import train_classifier
    from workbench.workspace import Workspace

    torch.set_num_threads(1)
    ws = Workspace.from_options(workspace=str(tmp_path / "ws"))
    import_dataset(ws.db, sample_copy, progress=False)
    create_split(ws.db, "s", SplitConfig(strategy="source", batch_per_class=0))
    with open(sample_copy / "chest_boxes.csv", newline="") as fh:  # inclusive pixels -> edges
        boxes = {r["path"]: [float(r["x_min"]), float(r["y_min"]), float(r["x_max"]) + 1, float(r["y_max"]) + 1]
                 for r in csv.DictReader(fh)}
    with ws.db.session() as s:
        items = [(im.rel_path, im.abs_path, im.label, part, im.width, im.height) for im, part in
                 s.execute(select(Image, SplitMember.part).join(SplitMember, SplitMember.image_id == Image.id)
                           .order_by(Image.id)).all()]
    marked = {rel for rel, path, label, part, w, h in items
              if part == "train" and label == "PNEUMONIA" and _plant(path, boxes[rel], w, h)}
    assert len(marked) >= 10
    require_imagenet_mobilenet_v2()  # a classifier learns the marker in 8 epochs only from ImageNet weights

    result = train_classifier(ws, make_config("classifier", members=("mobilenet_v2",), image_size=224, epochs=8,
                                              batch_size=8, lr=1e-3, weights="imagenet", device="cpu"), progress=False)
    with ws.db.session() as s:
        model, config = load_trained(s.get(Run, result.run_id), "last")  # the model that saw the markers longest
    loader = torch.utils.data.DataLoader(PoolDataset([it[1] for it in items], 64, config.image_size), batch_size=8,
                                         collate_fn=collate_pool)
    scores = []
    for idx, _, images, sizes in loader:
        out = classify_with_cams(model, images, torch.device("cpu"))
        _, combined = active.off_lung_members(out.cams, np.array([boxes[items[i][0]] for i in idx]), sizes)
        scores.extend(combined)
    scores = np.array(scores)
    assert np.isfinite(scores).all()
    has_marker = np.array([it[0] in marked for it in items])
    auc = roc_auc_score(has_marker, scores)
    record_property("off_lung_auc_has_marker", auc)
    print(f"\noff-lung ROC-AUC for 'has marker': {auc:.3f} ({has_marker.sum()} marked of {len(items)}); "
          f"mean off-lung marked {scores[has_marker].mean():.3f}, unmarked {scores[~has_marker].mean():.3f}")
    assert auc >= 0.75
    assert scores[has_marker].mean() > 2 * scores[~has_marker].mean()
