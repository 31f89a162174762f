"""`wb simulate`: the box-buying active-learning benchmark with a simulated annotator."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.registry import FILLS
from workbench.cli import app
from workbench.cli.common import DeviceOption, JsonOption, SplitOption, config_option, print_json, workspace
from workbench.configs import SIMULATE_STRATEGIES, STEERS, SimulateConfig, fill


def _ints(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter("give comma-separated integers, e.g. 0,1,2") from None


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(s.strip() for s in text.split(",") if s.strip())


def _opt(name: str, text: str, *flags: str, **kwargs) -> typer.models.OptionInfo:
    return config_option(SimulateConfig, name, text, *flags, **kwargs)


@app.command()
def simulate(
    ctx: typer.Context,
    strategies: Annotated[str | None, _opt("strategies", f"Comma-separated: {', '.join(SIMULATE_STRATEGIES)}.")] = None,
    seeds: Annotated[str | None, _opt("seeds", "Comma-separated seeds (each draws its own seed set).")] = None,
    rounds: Annotated[int | None, _opt("rounds", "Suggestion rounds after the seed set.")] = None,
    seed_size: Annotated[int | None, _opt("seed_size", "Chest boxes bought before round 1.", "--seed-size")] = None,
    batch: Annotated[int | None, _opt("batch", "Chest boxes bought per round.")] = None,
    pool_limit: Annotated[int | None, _opt("pool_limit", "Random subset of the boxed train part (0 = all).",
                                           "--pool-limit")] = None,
    test_limit: Annotated[int | None, _opt("test_limit", "Random subset of the boxed test part (0 = all).",
                                           "--test-limit")] = None,
    det_size: Annotated[int | None, _opt("det_size", "Detector image size (pixels).", "--det-size")] = None,
    cls_size: Annotated[int | None, _opt("cls_size", "Classifier image size (pixels).", "--cls-size")] = None,
    members: Annotated[str | None, _opt("members", "Ensemble members, comma-separated.")] = None,
    steer: Annotated[str | None, _opt("steer", f"How bought boxes steer the classifier: {', '.join(STEERS)} "
                                      "(guide: input-gradient penalty outside the box; chest-*: the detector's boxes "
                                      "for images not bought yet).")] = None,
    guide_weight: Annotated[float | None, _opt("guide_weight", "Weight of the guide penalty.", "--guide-weight")] = None,
    epochs: Annotated[int | None, _opt("epochs", "Epochs per training.")] = None,
    min_steps: Annotated[int | None, _opt("min_steps", "At least this many optimiser steps per training from ImageNet.",
                                          "--min-steps")] = None,
    warm_start: Annotated[bool | None, typer.Option(
        "--warm-start/--cold-start", help="Rounds after the first fine-tune the previous round's models, or retrain from "
        "ImageNet (default: warm).")] = None,
    warm_steps: Annotated[int | None, _opt("warm_steps", "At least this many steps per warm-started training.",
                                           "--warm-steps")] = None,
    weights: Annotated[str | None, _opt("weights", "imagenet, none or a state_dict PATH (random init when unavailable).")] = None,
    fill_: Annotated[str | None, _opt("fill", f"Fill for the reliance component: {', '.join(FILLS)}.", "--fill")] = None,
    no_full: Annotated[bool, typer.Option("--no-full", help="Skip the full-budget reference (no savings).")] = False,
    split: SplitOption = None,
    device: DeviceOption = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Results folder (default <workspace>/simulate/<time>); an existing one is resumed.")] = None,
    json_: JsonOption = False,
) -> None:
    """Benchmark suggestion strategies against random with a simulated annotator who sells chest boxes.

    Every pool image's class is known; each round a strategy buys --batch boxes (the workspace's
    valid boxes are the oracle), the detector trains on the boxed images and the classifier on all
    pool images, steered by the boxes. Writes results.json, table.md (mAP, accuracy, F1, ROC-AUC and
    off_chest_auc per round and strategy, mean ± std over seeds; savings; paired gain over random)
    and learning_curves.png. On a `wb stress plant` copy the test accuracy is the reversed-test one.

    Example: wb simulate --out sim-small --strategies random,reliance,off_lung --seeds 0,1,2
    """
    from workbench.simulate import simulate as run_simulation

    if threads:
        import torch

        torch.set_num_threads(threads)
    config = fill(
        SimulateConfig, split=split, strategies=_names(strategies), seeds=_ints(seeds), rounds=rounds,
        seed_size=seed_size, batch=batch, det_size=det_size, cls_size=cls_size, members=_names(members), steer=steer,
        guide_weight=guide_weight, epochs=epochs, min_steps=min_steps, warm_start=warm_start, warm_steps=warm_steps,
        weights=weights, fill=fill_, full_reference=False if no_full else None, device=device)
    import dataclasses

    # 0 means "all" for the two limits, which default to a subset.
    if pool_limit is not None:
        config = dataclasses.replace(config, pool_limit=pool_limit or None)
    if test_limit is not None:
        config = dataclasses.replace(config, test_limit=test_limit or None)
    result = run_simulation(workspace(ctx), config, out=out, progress=not json_)
    if json_:
        print_json(result.as_dict())
        return
    typer.echo((Path(result.folder) / "table.md").read_text())
    typer.echo(f"Results in {result.folder} ({result.seconds:.0f}s): results.json, table.md, learning_curves.png")
