"""Active-learning benchmark: `wb simulate`'s small configuration on the kermany subset.

Setup through the public use cases: import the subset, `wb split --strategy source`, the
machine-made `chest_boxes.csv` loaded as chest boxes (the simulated annotator answers from
them). Then `simulate` with its defaults: 3 seeds; a 300-image pool from the train folder and
300 test-folder images; 20 seed images, 3 rounds of 20; MobileNetV2 detector at 160 px and
classifier at 128 px; random / uncertainty / off_lung / combined. Prints the table (per round
and strategy; label savings; paired gain over random) and the wall time beside the goal:
under 45 minutes on a 2-core CPU.

Usage (~35 min on 2 cores):  .venv/bin/python benchmarks/simulate_small.py
Resume or re-print a finished run: the same command (the `--out` folder is resumed).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _setup import SUBSET, prepare_annotated_source_split  # sets TORCH_HOME to ../shared/torch-cache when present

GOAL_MINUTES = 45


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SUBSET)
    ap.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "wb-bench")
    ap.add_argument("--split", default="bench-source")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default <workspace>/simulate-small)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated (fewer for a smoke check)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    seeds = tuple(int(x) for x in args.seeds.split(","))

    from workbench.simulate import SimulateConfig, simulate
    from workbench.workspace import Workspace

    ws = Workspace.from_options(workspace=str(args.workspace))
    prepare_annotated_source_split(ws, args.data, args.split)
    out = args.out or ws.folder(f"simulate-small-s{len(seeds)}-r{args.rounds}")
    t0 = time.perf_counter()
    result = simulate(ws, SimulateConfig(split=args.split, seeds=seeds, rounds=args.rounds), out=out)
    minutes = (time.perf_counter() - t0) / 60
    print((Path(result.folder) / "table.md").read_text())
    print(f"wall time this call: {minutes:.1f} min (goal < {GOAL_MINUTES} min for a fresh run; a resumed run only "
          f"trains what was missing); results in {result.folder}")


if __name__ == "__main__":
    main()
