"""Detector benchmark: Faster R-CNN on <= 400 annotated train images of the kermany subset.

Setup through the public use cases: import the subset, `wb split --strategy source` (its full
624-image test folder is the test part), the machine-made `chest_boxes.csv` loaded as chest boxes
(the `wb annotations import` path). Then, per backbone: train, evaluate on the test part, and
print wall time, seconds per image (train, inference) and the metrics. The goal: chest-box
mAP@0.5 >= 0.90 on the annotated test images; accuracy / F1 of the top detection's class beside
the study's 0.941 / 0.960.

Usage (full run, ~40-60 min CPU):  nice -n 10 .venv/bin/python benchmarks/train_detector.py
Short check:  .venv/bin/python benchmarks/train_detector.py --limit 48 --epochs 1 --image-size 160
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _setup import SUBSET, prepare_annotated_source_split  # sets TORCH_HOME to ../shared/torch-cache when present


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SUBSET)
    ap.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "wb-bench")
    ap.add_argument("--split", default="bench-source")
    ap.add_argument("--backbones", default="mobilenet_v2", help="comma-separated: mobilenet_v2,mobilenet_v3,resnet50")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--limit", type=int, default=400, help="at most this many annotated train (and val) images")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--augment", default="none")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy 2-core machine")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from workbench.configs import EvalConfig, make_config
    from workbench.evaluation import evaluate_run
    from workbench.training import train_detector
    from workbench.workspace import Workspace

    ws = Workspace.from_options(workspace=str(args.workspace))
    t0 = time.perf_counter()
    prepare_annotated_source_split(ws, args.data, args.split)
    print(f"setup (import, split, boxes): {time.perf_counter() - t0:.0f}s; workspace {args.workspace}")
    rows = []
    for backbone in args.backbones.split(","):
        config = make_config("detector", backbone=backbone, split=args.split, epochs=args.epochs,
                             image_size=args.image_size, limit=args.limit, batch_size=args.batch_size, lr=args.lr,
                             lr_schedule="cosine", augment=args.augment, weights=args.weights, allow_fallback=True)
        start = time.perf_counter()
        result = train_detector(ws, config)
        train_wall = time.perf_counter() - start
        m = evaluate_run(ws, result.run_id, EvalConfig(part="test", bootstrap=args.bootstrap))
        n_train = result.history[0]["train_images"]
        train_s = sum(h["seconds"] for h in result.history)
        rows.append((backbone, result.run_id, train_wall, train_s / (n_train * len(result.history)),
                     m["inference_seconds_per_image"], m))
        for h in result.history:
            print(f"  {backbone} epoch {h['epoch']}: train loss {h['train_loss']:.4f} val loss {h['val_loss']:.4f} "
                  f"val acc {h['val_accuracy']:.3f} ({h['seconds']:.0f}s)")
    print()
    print("| backbone | run | train wall s | s/img train (incl. val) | s/img infer | test n | mAP@0.5 | mAP@[.5:.95] "
          "| mean IoU | accuracy | F1 | ROC-AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for backbone, run_id, wall, s_train, s_inf, m in rows:
        print(f"| {backbone} | {run_id} | {wall:.0f} | {s_train:.3f} | {s_inf:.3f} | {m['n']} | {m['map50']:.3f} | "
              f"{m['map50_95']:.3f} | {m['mean_iou']:.3f} | {m['accuracy']:.3f} | {m['f1']:.3f} | {m['roc_auc']:.3f} |")
    print(f"(study: accuracy 0.941, F1 0.960; target mAP@0.5 >= 0.90)  total wall {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
