"""`wb simulate`: the active-learning benchmark with a simulated annotator."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import JsonOption, SplitOption, print_json, workspace


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter("give comma-separated integers, e.g. 0,1,2") from None


@app.command()
def simulate(
    ctx: typer.Context,
    strategies: Annotated[str, typer.Option(help="Comma-separated: random, uncertainty, off_lung, combined.")] = "random,uncertainty,off_lung,combined",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (each draws its own seed set).")] = "0,1,2",
    rounds: Annotated[int, typer.Option(help="Suggestion rounds after the seed set.")] = 3,
    seed_size: Annotated[int, typer.Option("--seed-size", help="Images labelled before round 1.")] = 20,
    batch: Annotated[int, typer.Option(help="Images 'annotated' per round.")] = 20,
    pool_limit: Annotated[int | None, typer.Option("--pool-limit", help="Random subset of the annotated train part (0 = all).")] = 300,
    test_limit: Annotated[int | None, typer.Option("--test-limit", help="Random subset of the annotated test part (0 = all).")] = 300,
    det_size: Annotated[int, typer.Option("--det-size", help="Detector image size (pixels).")] = 160,
    cls_size: Annotated[int, typer.Option("--cls-size", help="Classifier image size (pixels).")] = 128,
    members: Annotated[str, typer.Option(help="Ensemble members, comma-separated.")] = "mobilenet_v2",
    epochs: Annotated[int, typer.Option(help="Epochs per training.")] = 3,
    min_steps: Annotated[int, typer.Option("--min-steps", help="At least this many optimiser steps per training from ImageNet (more epochs for small labelled sets).")] = 120,
    warm_start: Annotated[bool, typer.Option("--warm-start/--cold-start", help="Rounds after the first fine-tune the previous round's models, or retrain from ImageNet.")] = True,
    warm_steps: Annotated[int, typer.Option("--warm-steps", help="At least this many steps per warm-started training.")] = 40,
    weights: Annotated[str, typer.Option(help="imagenet, none or a state_dict PATH (random init when unavailable).")] = "imagenet",
    no_full: Annotated[bool, typer.Option("--no-full", help="Skip the full-pool reference (no label savings).")] = False,
    split: SplitOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    out: Annotated[Path | None, typer.Option(help="Results folder (default <workspace>/simulate/<time>); an existing one is resumed.")] = None,
    json_: JsonOption = False,
) -> None:
    """Benchmark suggestion strategies against random with a simulated annotator (the existing boxes).

    Writes results.json, table.md (mAP@0.5, mAP@[.5:.95], accuracy, F1, ROC-AUC per round and
    strategy, mean ± std over seeds; label savings; each strategy's paired gain over random)
    and learning_curves.png.

    The defaults are the small CPU configuration (3 seeds x 3 rounds of 20 on a 300-image pool).

    Example: wb simulate --out sim-small
    """
    from workbench.simulate import SimulateConfig
    from workbench.simulate import simulate as run_simulation

    if threads:
        import torch

        torch.set_num_threads(threads)
    config = SimulateConfig(
        split=split, strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()), seeds=_ints(seeds),
        rounds=rounds, seed_size=seed_size, batch=batch, pool_limit=pool_limit or None, test_limit=test_limit or None,
        det_size=det_size, cls_size=cls_size, members=tuple(m.strip() for m in members.split(",") if m.strip()),
        epochs=epochs, min_steps=min_steps, warm_start=warm_start, warm_steps=warm_steps, weights=weights, full_reference=not no_full, device=device,
    )
    result = run_simulation(workspace(ctx), config, out=out, progress=not json_)
    if json_:
        print_json(result.as_dict())
        return
    typer.echo((Path(result.folder) / "table.md").read_text())
    typer.echo(f"Results in {result.folder} ({result.seconds:.0f}s): results.json, table.md, learning_curves.png")
