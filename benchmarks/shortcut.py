"""Shortcut reliance of each way to use chest boxes, on the Kermany subset and on a planted copy of it.

Two workspaces, each `--strategy source` (test = the complete 624-image test folder):
- "subset": ../shared/data/kermany-subset;
- "planted": a `wb stress plant` copy of it (markers of mixed shape, 6% of the shorter side,
  anywhere outside the machine-made chest box; on 90% of PNEUMONIA and 10% of NORMAL images in
  train/val, on 90% of NORMAL and 10% of PNEUMONIA in test: its test accuracy is the reversed one).
In each, the annotated boxes are the split's first batch (200 NORMAL + 200 PNEUMONIA train images,
from the subset's chest_boxes.csv) and its val part (for the detector's best epoch); a detector
trains on them and stands in (`--boxes-from`) for every other image. Rows: the classifier plain,
with --input chest-crop, --input chest-mask, with --guide boxes, and the detector itself (the
study's method 2). Each classifier: MobileNetV2
(ImageNet), 224 px, 60% frozen, Rotate(30), Adam 3e-4 cosine, balanced loss; decision threshold
chosen on the val part. Columns: accuracy, F1, ROC-AUC on the subset's test folder; off_chest_auc
there (reliance with the detector's boxes: the test images are not annotated); accuracy on the
planted copy's reversed test; train seconds per image (subset run).

Usage: python benchmarks/shortcut.py [--epochs 6] [--rows plain,chest-crop,chest-mask,guided,detector]
       [--workspace /tmp/wb-shortcut] [--fills grey,blur,noise]   (hours on 2 CPU cores; resumable:
       a finished row is read back from the workspace)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _setup import SUBSET, prepare_annotated_source_split  # sets TORCH_HOME to ../shared/torch-cache when present

ROWS = ("plain", "chest-crop", "chest-mask", "guided", "detector")


def _first_batch_boxes(ws, box_source: Path, out: Path) -> None:
    """Import only the chest boxes annotators would have drawn: the split's first annotation batch,
    and its val part (the detector keeps its best epoch by validation loss on boxed val images)."""
    from sqlalchemy import or_, select

    from annotations.boxfile import read_box_file, write_box_file
    from db.models import AnnotationBatchItem, Image, SplitMember
    from workbench.boxfiles import import_annotations

    with ws.db.session() as s:
        batched = select(AnnotationBatchItem.image_id)
        val = select(SplitMember.image_id).where(SplitMember.part == "val")
        first = {im.rel_path for im in s.scalars(select(Image).where(or_(Image.id.in_(batched), Image.id.in_(val))))}
    write_box_file(out, [r for r in read_box_file(box_source) if r.image in first])
    import_annotations(ws, out)


def prepare(root: Path, args) -> dict:
    """name -> workspace for "subset" and "planted", each split and holding its first batch's boxes."""
    from annotations.boxfile import records_from_chest_csv, write_box_file
    from workbench.configs import PlantConfig, SplitConfig
    from workbench.importing import import_dataset
    from workbench.splitting import create_split
    from workbench.stress import plant_shortcut
    from workbench.workspace import Workspace

    out = {}
    full = Workspace.from_options(workspace=str(root / "all-boxes"))
    prepare_annotated_source_split(full, args.data, "source")  # every machine box: for planting only
    planted = root / "planted-data"
    if not (planted / "stress_manifest.csv").is_file():
        plant_shortcut(full, planted, PlantConfig(split="source", shape="mixed", size=0.06, seed=0), progress=False)
    all_boxes = root / "subset-boxes.json"
    if not all_boxes.is_file():
        write_box_file(all_boxes, records_from_chest_csv(args.data / "chest_boxes.csv", args.data, args.data / "manifest.csv"))
    for name, data, boxes in (("subset", args.data, all_boxes), ("planted", planted, planted / "chest_boxes.json")):
        ws = Workspace.from_options(workspace=str(root / name))
        if not (root / name / "wb.db").is_file():
            import_dataset(ws.db, data, progress=False)
            create_split(ws.db, "source", SplitConfig(strategy="source"))
            _first_batch_boxes(ws, boxes, root / f"{name}-first-batch.json")
        out[name] = ws
    return out


def train_row(ws, row: str, det_run: int | None, args) -> tuple[int, float]:
    """(run id, train seconds per image and epoch) of one row, trained now or read back."""
    from workbench.configs import make_config
    from workbench.training import train_classifier, train_detector

    common = dict(split="source", image_size=224, seed=args.seed, device="cpu")
    if row == "detector":
        result = train_detector(ws, make_config("detector", backbone="mobilenet_v2", epochs=args.det_epochs, lr=0.01,
                                                batch_size=8, **common), progress=False)
    else:
        steer = {"plain": {}, "chest-crop": {"input_mode": "chest-crop", "margin": 0.05, "boxes_from": det_run},
                 "chest-mask": {"input_mode": "chest-mask", "boxes_from": det_run},
                 "guided": {"guide": "boxes", "guide_weight": args.guide_weight}}[row]
        result = train_classifier(ws, make_config("classifier", members=("mobilenet_v2",), epochs=args.epochs, batch_size=16,
                                                  lr=3e-4, lr_schedule="cosine", freeze=0.6, augment="rotate",
                                                  balance=True, **common, **steer), progress=False)
    n = result.history[0]["train_images"]
    return result.run_id, sum(h["seconds"] for h in result.history) / (n * len(result.history))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SUBSET)
    ap.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "wb-shortcut")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--det-epochs", type=int, default=6)
    ap.add_argument("--guide-weight", type=float, default=10.0)
    ap.add_argument("--fills", default="grey", help="reliance fills to report (the first is the headline)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from workbench.configs import EvalConfig
    from workbench.evaluation import evaluate_run

    args.workspace.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    spaces = prepare(args.workspace, args)
    print(f"setup: {time.perf_counter() - t0:.0f}s; workspaces under {args.workspace}", flush=True)
    state_file = args.workspace / "results.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    fills = args.fills.split(",")
    for name, ws in spaces.items():
        det_key = f"{name}/detector-run"
        if det_key not in state:
            state[det_key], state[f"{name}/detector/s_per_img"] = train_row(ws, "detector", None, args)
            state_file.write_text(json.dumps(state, indent=1))
        det_run = state[det_key]
        for row in args.rows.split(","):
            key = f"{name}/{row}"
            if key in state:
                continue
            t1 = time.perf_counter()
            run_id, s_per_img = (det_run, state[f"{name}/detector/s_per_img"]) if row == "detector" else \
                train_row(ws, row, det_run, args)
            entry = {"run": run_id, "s_per_img": s_per_img, "train_wall": round(time.perf_counter() - t1)}
            for fill in fills:
                uses_own = row in ("chest-crop", "chest-mask")
                m = evaluate_run(ws, run_id, EvalConfig(part="test", bootstrap=1000, fill=fill,
                                                        boxes_from=None if uses_own else det_run), progress=False)
                entry[fill] = {k: m[k] for k in ("accuracy", "f1", "roc_auc", "off_chest_auc", "threshold", "ci",
                                                 "confusion_matrix")}
                entry[fill]["at_0.5"] = {k: m["at_0.5"][k] for k in ("accuracy", "f1")}
                entry[fill]["reliance"] = m["reliance"]
            state[key] = entry
            state_file.write_text(json.dumps(state, indent=1))
            print(f"{key}: {json.dumps({f: {k: entry[f][k] for k in ('accuracy', 'roc_auc', 'off_chest_auc')} for f in fills})}",
                  flush=True)
    rows = [r for r in args.rows.split(",") if f"subset/{r}" in state]
    print()
    print("| row | accuracy (95% CI) | F1 | ROC-AUC (95% CI) | off_chest_auc | accuracy at 0.5 | reversed-test accuracy "
          "(planted) | planted off_chest_auc | train s/img/epoch |")
    print("|---|---|---|---|---|---|---|---|---|")
    head = fills[0]
    for row in rows:
        a, p = state[f"subset/{row}"][head], state.get(f"planted/{row}", {}).get(head)
        ci = a["ci"]

        def f(v):
            return "n/a" if v is None else f"{v:.3f}"

        print(f"| {row} | {f(a['accuracy'])} ({ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}) | {f(a['f1'])} | "
              f"{f(a['roc_auc'])} ({ci['roc_auc'][0]:.3f}-{ci['roc_auc'][1]:.3f}) | {f(a['off_chest_auc'])} | "
              f"{f(a['at_0.5']['accuracy'])} | {f(p['accuracy']) if p else 'n/a'} | {f(p['off_chest_auc']) if p else 'n/a'} | "
              f"{state[f'subset/{row}']['s_per_img']:.3f} |")
    for fill in fills[1:]:
        print(f"\noff_chest_auc with the {fill} fill: " + ", ".join(
            f"{row} {state[f'subset/{row}'][fill]['off_chest_auc']:.3f}" for row in rows
            if state[f"subset/{row}"][fill]["off_chest_auc"] is not None))
    print(f"\ntotal wall {time.perf_counter() - t0:.0f}s (this invocation)")


if __name__ == "__main__":
    main()
