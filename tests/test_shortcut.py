"""The behaviour the off-chest components exist for: a classifier that reads a planted marker outside
the chest has its marked images ranked first by `wb suggest`'s loop.

Why the set-up is built this way: on the 48-image repo sample, markers on the PNEUMONIA train
images alone did not make a model read them (removing the marker moved its prediction by 0.00-0.21
on average over 5 seeds: the chests were easier to learn), so "has marker" was not something a
model-based score could be asked to find, and the old test's outcome hung on the machine. Here the
marker is the only thing that tells the classes apart in training: every train/val chest appears
twice, once unmarked as NORMAL and once with a marker (shape and place drawn at random anywhere
outside the chest box, corners included; 8% of the shorter side) as PNEUMONIA. The test checks
that premise (the model answers with the marker), then scores every image (the pairs and the
held-out test folder, half of it marked) with pipelines.scoring.score_pool_batches, exactly as
`wb suggest` does, and asks for the ROC-AUC of `off_chest_reliance` for "has marker".

Seeds, threads and algorithms are fixed (WB_SHORTCUT_SEED picks another seed; 0-4 are in the
closing note). Measured on seeds 0-4: off_chest_reliance 1.000, 1.000, 0.999, 1.000, 0.984; LayerCAM
off-lung 0.82, 0.93, 0.94, 0.95, 0.74; the old 7x7 Grad-CAM 0.64, 0.69, 0.74, 0.62, 0.75 (both
recorded as properties, not asserted).
"""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from tests.conftest import SAMPLE, require_imagenet_mobilenet_v2

pytestmark = pytest.mark.slow

MARKER = dict(shape="mixed", size=0.08, place="anywhere")


def _boxes() -> dict[str, tuple[float, float, float, float]]:
    with open(SAMPLE / "chest_boxes.csv", newline="") as fh:  # inclusive pixels -> edges
        return {r["path"]: (float(r["x_min"]), float(r["y_min"]), float(r["x_max"]) + 1, float(r["y_max"]) + 1)
                for r in csv.DictReader(fh)}


def _paired_copy(root, seed: int) -> dict[str, bool]:
    """Write the paired set under root/chest_xray; return rel path -> has a marker."""
    from pipelines.stress import MarkerSpec, plant_marker

    rng = np.random.default_rng(seed)
    spec = MarkerSpec(**MARKER)
    marked = {}
    for rel, box in sorted(_boxes().items()):
        _, part, label, name = rel.split("/")
        pixels = np.asarray(PILImage.open(SAMPLE / rel).convert("L"))
        copies = [("NORMAL", False), ("PNEUMONIA", True)] if part in ("train", "val") else [(label, rng.random() < 0.5)]
        for folder_label, mark in copies:
            out = plant_marker(pixels, box, spec, rng)[0] if mark else pixels
            target = f"chest_xray/{'train' if part == 'val' else part}/{folder_label}/{name}"
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(out).save(root / target, quality=95)  # every copy re-encoded alike
            marked[target] = bool(mark) and out is not pixels
    return marked


class _NoDetector(torch.nn.Module):
    """A detector that finds nothing: every chest box comes from the items (the annotations)."""

    def forward(self, images):
        return [{"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in images]


def test_off_chest_reliance_ranks_marker_images_first(tmp_path, record_property):
    from sklearn.metrics import roc_auc_score
    from sqlalchemy import select

    from db.models import Annotation, Image, Run
    from pipelines import active
    from pipelines.scoring import PoolItem, score_pool_batches
    from workbench.configs import SplitConfig, make_config
    from workbench.importing import import_dataset
    from workbench.runs import load_trained
    from workbench.splitting import create_split
    from workbench.training import train_classifier
    from workbench.workspace import Workspace

    require_imagenet_mobilenet_v2()  # the classifier learns the marker in 10 epochs only from ImageNet weights
    seed = int(os.environ.get("WB_SHORTCUT_SEED", "0"))
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    marked = _paired_copy(tmp_path / "data", seed)
    assert sum(marked.values()) >= 30
    ws = Workspace.from_options(workspace=str(tmp_path / "ws"), create_db=True)
    import_dataset(ws.db, tmp_path / "data", progress=False)
    create_split(ws.db, "s", SplitConfig(strategy="source", batch_per_class=0))
    by_name = {rel.split("/")[-1]: box for rel, box in _boxes().items()}
    with ws.db.session() as s:
        images = list(s.scalars(select(Image).order_by(Image.id)))
        s.add_all(Annotation(image_id=im.id, source="file", origin="machine", status="valid",
                             **dict(zip(("x_min", "y_min", "x_max", "y_max"), by_name[im.rel_path.split("/")[-1]], strict=True)))
                  for im in images)
        items = [(im.rel_path, im.abs_path, by_name[im.rel_path.split("/")[-1]]) for im in images]

    result = train_classifier(ws, make_config("classifier", members=("mobilenet_v2",), image_size=224, epochs=10,
                                              batch_size=8, lr=3e-4, weights="imagenet", device="cpu", seed=seed),
                              progress=False)
    with ws.db.session() as s:
        model, _ = load_trained(s.get(Run, result.run_id), "last")  # the model that saw the markers longest
    scores = {"reliance": [], "off_lung": [], "grad_cam_7x7": [], "p": []}
    for out in score_pool_batches(_NoDetector(), 64, model, 224, [PoolItem(path, box) for _, path, box in items],
                                  torch.device("cpu"), fill="blur"):
        sizes = np.array([PILImage.open(items[i][1]).size for i in out.indices], dtype=np.float64)
        scores["reliance"].extend(out.reliance)
        scores["off_lung"].extend(out.off_lung)
        scores["grad_cam_7x7"].extend(active.off_lung_members(out.classifier.cams, out.boxes, sizes)[1])
        scores["p"].extend(out.classifier.probs[:, 1])
    has_marker = np.array([marked[rel] for rel, _, _ in items])
    p = np.array(scores["p"])
    # The premise: the model answers with the marker.
    assert p[has_marker].mean() - p[~has_marker].mean() > 0.5
    aucs = {k: float(roc_auc_score(has_marker, np.nan_to_num(v, nan=0.0))) for k, v in scores.items() if k != "p"}
    for k, v in aucs.items():
        record_property(f"auc_has_marker_{k}", round(v, 3))
    reliance = np.array(scores["reliance"])
    print(f"\nseed {seed}: ROC-AUC for 'has marker' ({has_marker.sum()} of {len(items)}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in aucs.items())
          + f"; mean reliance marked {reliance[has_marker].mean():.3f}, unmarked {reliance[~has_marker].mean():.3f}")
    assert np.isfinite(reliance).all()
    assert aucs["reliance"] >= 0.75
    assert reliance[has_marker].mean() > 2 * reliance[~has_marker].mean()

