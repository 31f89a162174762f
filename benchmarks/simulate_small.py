"""Box-buying active-learning benchmark: `wb simulate`'s small configuration on the kermany subset,
or on a planted copy of it (`wb stress plant`), where the test accuracy is the reversed-test one.

Setup through the public use cases: import the data, `wb split --strategy source`, and every chest
box loaded as an annotation (the simulated annotator answers from them: the subset's machine-made
`chest_boxes.csv`, or a planted copy's `chest_boxes.json`). Then `simulate` with its defaults: 3
seeds; a 300-image pool from the train folder and 300 test-folder images; 20 seed boxes, 3 rounds
of 20; MobileNetV2 detector at 160 px and classifier at 128 px (steered by box guidance); random /
uncertainty / off_lung / reliance / combined. Prints the table (per round and strategy; savings;
paired gain over random) and the wall time.

Usage:  .venv/bin/python benchmarks/simulate_small.py [--planted DIR] [--steer guide] [--guide-weight 10]
Resume or re-print a finished run: the same command (the `--out` folder is resumed).
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from _setup import SUBSET, prepare_annotated_source_split, prepare_source_split  # sets TORCH_HOME when present


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SUBSET)
    ap.add_argument("--planted", type=Path, default=None, help="a `wb stress plant` copy to run on instead")
    ap.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "wb-bench")
    ap.add_argument("--split", default="bench-source")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default <workspace>/simulate-...)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated (fewer for a smoke check)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--strategies", default=None, help="comma-separated (default: all)")
    ap.add_argument("--steer", default=None, help="guide | chest-crop | chest-mask (default: guide)")
    ap.add_argument("--guide-weight", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from workbench.boxfiles import import_annotations
    from workbench.configs import SimulateConfig, fill
    from workbench.simulate import simulate
    from workbench.workspace import Workspace

    ws = Workspace.from_options(workspace=str(args.workspace))
    if args.planted:
        prepare_source_split(ws, args.planted, args.split)
        import_annotations(ws, args.planted / "chest_boxes.json")
    else:
        prepare_annotated_source_split(ws, args.data, args.split)
    config = fill(SimulateConfig, split=args.split, seeds=tuple(int(x) for x in args.seeds.split(",")), rounds=args.rounds,
                  strategies=tuple(args.strategies.split(",")) if args.strategies else None, steer=args.steer,
                  guide_weight=args.guide_weight)
    name = f"simulate-{config.steer}-s{len(config.seeds)}-r{config.rounds}-w{config.guide_weight:g}"
    out = args.out or ws.folder(name)
    t0 = time.perf_counter()
    result = simulate(ws, config, out=out)
    minutes = (time.perf_counter() - t0) / 60
    print((Path(result.folder) / "table.md").read_text())
    print(f"wall time this call: {minutes:.1f} min (a resumed run only trains what was missing); results in {result.folder}")
    print("config:", dataclasses.asdict(config))


if __name__ == "__main__":
    main()
