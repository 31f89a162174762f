"""Finding a shortcut: does each `wb suggest` component rank the marked images of a planted pool first?

For each seed: a planted copy of ../shared/data/kermany-subset (`wb stress plant`: markers of
mixed shape, 6% of the shorter side, anywhere outside the machine-made chest box, corners
included; on 90% of PNEUMONIA and 10% of NORMAL images in train/val, reversed in test), imported
into its own workspace with a `--strategy source` split and the chest boxes of the split's first
batch (200 + 200 train images) and its val part as annotations. A detector trains on those boxes; a plain
classifier (MobileNetV2, ImageNet, full images) trains on every train image, as a team would
before annotating. The pool is the train part without a box (what `wb suggest` ranks), scored by
pipelines.scoring.score_pool_batches; for each component, the ROC-AUC for "has a marker" over the
pool. Target (issue 10): the best component >= 0.90, mean over 3 seeds.

Usage: python benchmarks/shortcut_finding.py [--seeds 0,1,2] [--epochs 5] [--image-size 224]
       [--workspace /tmp/wb-finding]     (about 25 min per seed on 2 CPU cores)
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from _setup import SUBSET, prepare_annotated_source_split  # sets TORCH_HOME to ../shared/torch-cache when present

COMPONENTS = ("off_chest_reliance", "reliance_grey", "off_lung", "grad_cam_7x7", "uncertainty", "classifier")


def plant_and_import(root: Path, seed: int, args) -> tuple:
    """(planted workspace, its split name, image id -> marked) for one seed (idempotent)."""
    from sqlalchemy import or_, select

    from annotations.boxfile import read_box_file, write_box_file
    from db.models import AnnotationBatch, AnnotationBatchItem, Image, SplitMember
    from workbench.boxfiles import import_annotations
    from workbench.configs import PlantConfig, SplitConfig
    from workbench.importing import import_dataset
    from workbench.splitting import create_split
    from workbench.stress import plant_shortcut
    from workbench.workspace import Workspace

    source = Workspace.from_options(workspace=str(root / "source"), create_db=True)
    prepare_annotated_source_split(source, args.data, "source")
    copy = root / f"planted-{seed}"
    if not (copy / "stress_manifest.csv").is_file():
        plant_shortcut(source, copy, PlantConfig(split="source", shape="mixed", size=args.marker_size, seed=seed),
                       progress=False)
    ws = Workspace.from_options(workspace=str(root / f"ws-{seed}"), create_db=True)
    import_dataset(ws.db, copy, progress=False)
    with ws.db.session() as s:
        has_split = s.scalar(select(AnnotationBatch.id).limit(1)) is not None
    if not has_split:
        create_split(ws.db, "planted", SplitConfig(strategy="source"))
        with ws.db.session() as s:  # the boxes annotators would have drawn: the first batch, and val (for best.pt)
            batched = select(AnnotationBatchItem.image_id)
            val = select(SplitMember.image_id).where(SplitMember.part == "val")
            first = {im.rel_path for im in s.scalars(select(Image).where(or_(Image.id.in_(batched), Image.id.in_(val))))}
        records = [r for r in read_box_file(copy / "chest_boxes.json") if r.image in first]
        write_box_file(root / f"first-batch-{seed}.json", records)
        import_annotations(ws, root / f"first-batch-{seed}.json")
    with open(copy / "stress_manifest.csv", newline="") as fh:
        marked_paths = {r["path"]: r["marked"] == "1" for r in csv.DictReader(fh)}
    with ws.db.session() as s:
        marked = {im.id: marked_paths[im.rel_path] for im in s.scalars(select(Image))}
    return ws, "planted", marked


def score_seed(ws, split: str, marked: dict, seed: int, args) -> dict:
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from pipelines import active
    from pipelines.scoring import PoolItem, score_pool_batches
    from workbench.configs import SuggestConfig, make_config
    from workbench.runs import load_models
    from workbench.suggesting import list_candidates
    from workbench.training import train_classifier, train_detector

    t0 = time.perf_counter()
    det = train_detector(ws, make_config("detector", backbone="mobilenet_v2", split=split, epochs=args.det_epochs,
                                         image_size=224, lr=0.01, seed=seed, device="cpu"), progress=False)
    cls = train_classifier(ws, make_config("classifier", members=("mobilenet_v2",), split=split, epochs=args.epochs,
                                           image_size=args.image_size, batch_size=16, lr=3e-4, lr_schedule="cosine",
                                           freeze=0.6, augment="rotate", balance=True, seed=seed, device="cpu"),
                           progress=False)
    trained = time.perf_counter() - t0
    config = SuggestConfig(detector_run=det.run_id, classifier_run=cls.run_id, split=split, device="cpu")
    with ws.db.session() as s:
        _, candidates = list_candidates(s, config)
    detector, det_cfg, classifier, cls_cfg = load_models(ws, config, torch.device("cpu"))
    parts: dict[str, list] = {k: [] for k in (*COMPONENTS, "top_scores", "class_scores", "boxes", "flip_boxes", "widths",
                                              "probs", "member_probs", "off_lung_raw", "reliance_raw")}
    items = [PoolItem(c.abs_path, None) for c in candidates]
    t1 = time.perf_counter()
    for fill, key in (("blur", "reliance_raw"), ("grey", "reliance_grey")):
        for out in score_pool_batches(detector, det_cfg.image_size, classifier, cls_cfg.image_size, items,
                                      torch.device("cpu"), fill=fill):
            parts[key].append(out.reliance)
            if fill != "blur":
                continue
            d, c = out.detector, out.classifier
            sizes = np.array([(candidates[i].width, candidates[i].height) for i in out.indices], dtype=np.float64)
            for k, v in (("top_scores", d.top_score), ("class_scores", d.class_scores), ("boxes", d.top_box),
                         ("flip_boxes", d.flip_box), ("widths", sizes[:, 0]), ("probs", c.probs),
                         ("off_lung_raw", out.off_lung)):
                parts[k].append(v)
            parts["member_probs"].append(c.member_probs)
            parts["grad_cam_7x7"].append(active.off_lung_members(c.cams, out.boxes, sizes)[1])
    scored = time.perf_counter() - t1
    cat = {k: np.concatenate(v, axis=1 if k == "member_probs" else 0) for k, v in parts.items() if v}
    comps = active.score_components(top_scores=cat["top_scores"], class_scores=cat["class_scores"], boxes=cat["boxes"],
                                    flip_boxes=cat["flip_boxes"], widths=cat["widths"], probs=cat["probs"],
                                    member_probs=cat["member_probs"], off_lung=cat["off_lung_raw"],
                                    reliance=cat["reliance_raw"])
    comps["reliance_grey"] = cat["reliance_grey"]
    comps["grad_cam_7x7"] = cat["grad_cam_7x7"]
    y = np.array([marked[c.image_id] for c in candidates])
    aucs = {k: float(roc_auc_score(y, np.nan_to_num(comps[k], nan=0.0))) for k in COMPONENTS}
    return {"seed": seed, "pool": len(candidates), "marked": int(y.sum()), "aucs": aucs,
            "train_seconds": round(trained), "score_seconds": round(scored), "classifier_run": cls.run_id,
            "detector_run": det.run_id}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SUBSET)
    ap.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "wb-finding")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--det-epochs", type=int, default=6)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--marker-size", type=float, default=0.06)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    args.workspace.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        done = args.workspace / f"result-{seed}.json"
        if done.is_file():
            results.append(json.loads(done.read_text()))
            continue
        ws, split, marked = plant_and_import(args.workspace, seed, args)
        result = score_seed(ws, split, marked, seed, args)
        done.write_text(json.dumps(result, indent=1))
        results.append(result)
        print(json.dumps(result), flush=True)
    print()
    print("| seed | pool | marked | " + " | ".join(COMPONENTS) + " | train s | score s |")
    print("|---|---|---|" + "---|" * len(COMPONENTS) + "---|---|")
    for r in results:
        print(f"| {r['seed']} | {r['pool']} | {r['marked']} | " + " | ".join(f"{r['aucs'][k]:.3f}" for k in COMPONENTS)
              + f" | {r['train_seconds']} | {r['score_seconds']} |")
    means = {k: sum(r["aucs"][k] for r in results) / len(results) for k in COMPONENTS}
    print("| mean | | | " + " | ".join(f"{means[k]:.3f}" for k in COMPONENTS) + " | | |")
    best = max(means, key=lambda k: means[k])
    print(f"best component: {best} (mean ROC-AUC {means[best]:.3f}; target >= 0.90)")


if __name__ == "__main__":
    main()
