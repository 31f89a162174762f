"""What `wb suggest` costs beside plain inference, on the same images, in one run.

Baseline: load both models from their run checkpoints, one detector inference pass
(engine.predict_detections over the trainer's DetectionDataset) plus one classifier forward
pass (engine.predict_probs over ClassificationDataset). Suggest: the whole `suggest` use case
(candidate query, model loading, detector on each image and its mirror, ensemble forward with
every member's Grad-CAM and stride-16 LayerCAM from one backward, the chest-only forward for
off_chest_reliance, per-image rows written to the DB, ranking, selection, Suggestion rows).
The target is suggest <= 1.5 x baseline (issue 10). Models are untrained (cost does not depend on weights).

Usage: .venv/bin/python benchmarks/suggest_cost.py [--data sample/kermany] [--images 48]
       [--det-size 512] [--cls-size 299] [--members resnet18,densenet121,inception_v3] [--threads 1] [--repeats 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TORCH_HOME", str(REPO.parent / "shared" / "torch-cache"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO / "sample" / "kermany"))
    ap.add_argument("--images", type=int, default=48, help="score at most this many images")
    ap.add_argument("--det-size", type=int, default=512)
    ap.add_argument("--cls-size", type=int, default=299)
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--members", default="resnet18,densenet121,inception_v3")
    ap.add_argument("--head", default="fc2")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="baseline/suggest pairs, alternating")
    args = ap.parse_args()

    import dataclasses

    import torch
    from sqlalchemy import select

    from db.models import Image, Run
    from pipelines import engine
    from pipelines.data import ClassificationDataset, DetectionDataset, collate_detection
    from workbench.configs import SplitConfig, SuggestConfig, make_config
    from workbench.importing import import_dataset
    from workbench.runs import build_model, load_trained, to_record
    from workbench.splitting import create_split
    from workbench.suggesting import list_candidates, suggest
    from workbench.workspace import Workspace

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="wb-suggest-cost-"))
    ws = Workspace.from_options(workspace=str(tmp))
    import_dataset(ws.db, Path(args.data), progress=False)
    create_split(ws.db, "bench", SplitConfig(ratios=(1.0, 0.0, 0.0), batch_per_class=0))

    # Two runs with checkpoints of untrained models, as the trainers would leave them.
    run_ids = {}
    for kind, config in (
        ("detector", make_config("detector", backbone=args.backbone, image_size=args.det_size, weights="none",
                                 device="cpu")),
        ("classifier", make_config("classifier", members=tuple(args.members.split(",")), head=args.head,
                                   image_size=args.cls_size, weights="none", device="cpu")),
    ):
        model = build_model(kind, config)
        with ws.db.session() as s:
            run = Run(kind=kind, status="done", config=dataclasses.asdict(config))
            s.add(run)
            s.flush()
            folder = ws.folder("runs", str(run.id))
            run.artifact_dir = str(folder)
            run_ids[kind] = run.id
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        engine.save_checkpoint(folder / "best.pt", model=model, optimizer=opt, scheduler=None, scaler=None, epoch=1,
                               config=dataclasses.asdict(config), history=[], best_val_loss=None)

    config = SuggestConfig(detector_run=run_ids["detector"], classifier_run=run_ids["classifier"], k=20,
                           split="bench", limit=args.images, batch_size=args.batch_size, device="cpu")
    with ws.db.session() as s:
        _, cands = list_candidates(s, config)
        images = list(s.scalars(select(Image).where(Image.id.in_([c.image_id for c in cands])).order_by(Image.id)))
        records = [to_record(im) for im in images]
    n = len(records)

    def baseline() -> float:
        t0 = time.perf_counter()
        with ws.db.session() as s:
            det, det_cfg = load_trained(s.get(Run, run_ids["detector"]))
            cls, cls_cfg = load_trained(s.get(Run, run_ids["classifier"]))
        device = torch.device("cpu")
        dl = torch.utils.data.DataLoader(DetectionDataset(records, det_cfg.image_size), batch_size=args.batch_size,
                                         collate_fn=collate_detection)
        engine.predict_detections(det, dl, device)
        cl = torch.utils.data.DataLoader(ClassificationDataset(records, cls_cfg.image_size), batch_size=args.batch_size)
        engine.predict_probs(cls, cl, device)
        return time.perf_counter() - t0

    def scoring() -> float:
        with ws.db.session() as s:  # a fresh scoring each time: no stored scores to reuse
            for run in s.scalars(select(Run).where(Run.kind == "suggest")):
                s.delete(run)
        t0 = time.perf_counter()
        suggest(ws, config, progress=False)
        return time.perf_counter() - t0

    print(f"{n} images from {args.data}; detector {args.backbone} @ {args.det_size} px; ensemble "
          f"{args.members} ({args.head}) @ {args.cls_size} px; batch {args.batch_size}; torch threads {args.threads}")
    # Alternate the two sides (the machine is shared: load changes over minutes) and compare totals.
    bases, suggs = [], []
    for _ in range(args.repeats):
        bases.append(baseline())
        suggs.append(scoring())
    base, sugg = sum(bases) / len(bases), sum(suggs) / len(suggs)
    print("baseline (detector inference + classifier forward): " + ", ".join(f"{b:.1f} s" for b in bases)
          + f" (mean {base:.1f} s, {base / n:.3f} s/image)")
    print("wb suggest scoring (mirror pass, CAMs, reliance forward, rows, ranking): " + ", ".join(f"{x:.1f} s" for x in suggs)
          + f" (mean {sugg:.1f} s, {sugg / n:.3f} s/image)")
    print(f"ratio suggest / baseline: {sugg / base:.2f} (target <= 1.5); per pair: "
          + ", ".join(f"{x / b:.2f}" for b, x in zip(bases, suggs, strict=True)))

if __name__ == "__main__":
    main()
