"""`wb train detector` and `wb train classifier`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipelines.presets import CLASSIFIER_PRESETS, DETECTOR_PRESETS
from pipelines.registry import AUGMENTATIONS, BACKBONES, DETECTOR_BACKBONES, HEADS, INPUT_MODES
from workbench.cli import app
from workbench.cli.common import JsonOption, SplitOption, config_option, print_json, workspace
from workbench.configs import DEFAULT_LR, DEVICES, ClassifierConfig, DetectorConfig, make_config, shown_default

if TYPE_CHECKING:
    from workbench.training import TrainResult

train_app = typer.Typer(
    help="Train the Faster R-CNN chest detector or the ensemble classifier.\n\n"
         "Example: wb train detector --preset table3-4 --epochs 2",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


def _defaults(name: str) -> str:
    """'(default: 10)', or '(default: detector 10, classifier 30)' where the two trainers differ."""
    det, cls = shown_default(DetectorConfig, name), shown_default(ClassifierConfig, name)
    return f"(default: {det})" if det == cls else f"(default: detector {det}, classifier {cls})"


def _option(name: str, text: str, *flags: str, **kwargs: Any) -> Any:
    """An option for config field `name`, its help ending with the trainers' default(s)."""
    return typer.Option(*flags, help=f"{text} {_defaults(name)}", **kwargs)


_LR_DEFAULTS = ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items())
Epochs = Annotated[int | None, _option("epochs", "Epochs to train (with --resume: train up to this many).")]
ImageSize = Annotated[int | None, _option("image_size", "Images are resized to this square size (pixels).", "--image-size")]
BatchSize = Annotated[int | None, _option("batch_size", "Images per batch.", "--batch-size")]
Limit = Annotated[int | None, typer.Option(help="At most N images per part (train, val): tiny runs.")]
Optimizer = Annotated[str | None, _option("optimizer", "sgd (momentum 0.9) or adam.")]
Lr = Annotated[float | None, typer.Option(help=f"Learning rate (default: {_LR_DEFAULTS}).")]
LrSchedule = Annotated[str | None, _option("lr_schedule", "constant or cosine.", "--lr-schedule")]
Augment = Annotated[str | None, _option("augment", f"One of {', '.join(AUGMENTATIONS)}.")]
Weights = Annotated[str | None, _option(
    "weights", "imagenet (torchvision weights API, $TORCH_HOME), none, or a state_dict PATH.")]
Fallback = Annotated[bool, typer.Option(
    "--allow-fallback", help="Start from random weights when ImageNet weights cannot be had.")]
Seed = Annotated[int | None, _option("seed", "Random seed.")]
Device = Annotated[str | None, _option("device", f"One of {', '.join(DEVICES)}; mixed precision on CUDA.")]
Workers = Annotated[int | None, _option("workers", "DataLoader worker processes.", min=0)]
Resume = Annotated[int | None, typer.Option(
    "--resume", metavar="RUN", help="Continue run RUN from its last epoch (its own config).")]
Threads = Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")]


def _print(result: TrainResult, json_: bool) -> None:
    if json_:
        data = result.as_dict()
        data["run_id"] = data.pop("run_id")  # last, for scripts that read the tail
        print_json(data)
        return
    for h in result.history:
        acc = f"{h['val_accuracy']:.3f}" if h["val_accuracy"] is not None else "n/a"
        typer.echo(f"  epoch {h['epoch']:>3}: train loss {h['train_loss']:.4f}  val loss {h['val_loss']:.4f}  "
                   f"val acc {acc}  ({h['seconds']:.0f}s)")
    typer.echo(f"Run {result.run_id} {result.status}: best epoch {result.best_epoch} (val loss {result.best_val_loss:.4f}); "
               f"checkpoints in {result.artifact_dir}")
    if result.threshold is not None:
        typer.echo(f"Decision threshold {result.threshold:.3f} (chosen on the val part, Youden's J)")
    typer.echo(f"Next: wb eval {result.run_id}")


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@train_app.command("detector")
def detector(
    ctx: typer.Context,
    preset: Annotated[str | None, typer.Option(help=f"Study row: {', '.join(DETECTOR_PRESETS)}.")] = None,
    backbone: Annotated[str | None, config_option(DetectorConfig, "backbone", f"One of {', '.join(DETECTOR_BACKBONES)}.")] = None,
    split: SplitOption = None,
    epochs: Epochs = None, image_size: ImageSize = None, batch_size: BatchSize = None, limit: Limit = None,
    optimizer: Optimizer = None, lr: Lr = None, lr_schedule: LrSchedule = None, augment: Augment = None,
    weights: Weights = None, allow_fallback: Fallback = False, seed: Seed = None, device: Device = None,
    workers: Workers = None, threads: Threads = None, resume: Resume = None, json_: JsonOption = False,
) -> None:
    """Train the Faster R-CNN chest detector on the annotated images of the split's train part.

    Keeps best.pt (lowest validation loss on the annotated val images) and last.pt (for --resume).

    Example: wb train detector --backbone mobilenet_v2 --epochs 2 --image-size 224 --limit 32
    """
    from workbench.training import train_detector  # torch: only when a command runs

    _threads(threads)
    ws = workspace(ctx)
    if resume is not None:
        result = train_detector(ws, resume=resume, epochs=epochs, progress=True)
    else:
        config = make_config("detector", preset, backbone=backbone, split=split, epochs=epochs, image_size=image_size,
                             batch_size=batch_size, limit=limit, optimizer=optimizer, lr=lr, lr_schedule=lr_schedule,
                             augment=augment, weights=weights, allow_fallback=allow_fallback or None, seed=seed,
                             device=device, workers=workers)
        result = train_detector(ws, config, progress=True)
    _print(result, json_)


@train_app.command("classifier")
def classifier(
    ctx: typer.Context,
    preset: Annotated[str | None, typer.Option(help=f"Study row: {', '.join(CLASSIFIER_PRESETS)}.")] = None,
    members: Annotated[str | None, config_option(
        ClassifierConfig, "members", f"Comma-separated backbones from: {', '.join(BACKBONES)}.")] = None,
    head: Annotated[str | None, config_option(ClassifierConfig, "head", f"One of {', '.join(HEADS)}.")] = None,
    freeze: Annotated[float | None, config_option(
        ClassifierConfig, "freeze", "Fraction of each member's early parameters to freeze (0-1).")] = None,
    balance: Annotated[bool, typer.Option("--balance", help="Weight the loss by inverse class frequency.")] = False,
    input_mode: Annotated[str | None, config_option(
        ClassifierConfig, "input_mode", f"What the classifier sees: {', '.join(INPUT_MODES)} (crop to / fill outside the "
        "chest box; eval, cam and suggest then do the same).", "--input")] = None,
    margin: Annotated[float | None, config_option(
        ClassifierConfig, "margin", "chest-crop: extra border, a fraction of the box size on each side.")] = None,
    boxes_from: Annotated[int | None, config_option(
        ClassifierConfig, "boxes_from", "Detector RUN whose boxes stand in for images without an annotated box.",
        "--boxes-from", metavar="RUN")] = None,
    guide: Annotated[str | None, config_option(
        ClassifierConfig, "guide", "boxes: penalise input gradients outside the annotated chest box "
        "(Right for the Right Reasons) on full images.")] = None,
    guide_weight: Annotated[float | None, config_option(
        ClassifierConfig, "guide_weight", "Weight of the --guide penalty.", "--guide-weight")] = None,
    split: SplitOption = None,
    epochs: Epochs = None, image_size: ImageSize = None, batch_size: BatchSize = None, limit: Limit = None,
    optimizer: Optimizer = None, lr: Lr = None, lr_schedule: LrSchedule = None, augment: Augment = None,
    weights: Weights = None, allow_fallback: Fallback = False, seed: Seed = None, device: Device = None,
    workers: Workers = None, threads: Threads = None, resume: Resume = None, json_: JsonOption = False,
) -> None:
    """Train the ensemble classifier (NORMAL vs PNEUMONIA) on every readable image of the train part.

    Chest boxes can steer it: --input chest-crop|chest-mask trains and predicts on the chest only
    (annotated boxes, else those of --boxes-from RUN); --guide boxes trains on full images with a
    penalty on attributions outside the annotated boxes. The decision threshold is chosen on the
    val part (Youden's J) and stored with the run.

    Example: wb train classifier --members mobilenet_v2 --head fc2 --epochs 3 --image-size 224 --input chest-crop --boxes-from 1
    """
    from workbench.training import train_classifier  # torch: only when a command runs

    _threads(threads)
    ws = workspace(ctx)
    if resume is not None:
        result = train_classifier(ws, resume=resume, epochs=epochs, progress=True)
    else:
        names = tuple(m.strip() for m in members.split(",") if m.strip()) if members else None
        config = make_config("classifier", preset, members=names, head=head, freeze=freeze, balance=balance or None,
                             input_mode=input_mode, margin=margin, boxes_from=boxes_from, guide=guide,
                             guide_weight=guide_weight, split=split, epochs=epochs,
                             image_size=image_size, batch_size=batch_size, limit=limit, optimizer=optimizer, lr=lr,
                             lr_schedule=lr_schedule, augment=augment, weights=weights,
                             allow_fallback=allow_fallback or None, seed=seed, device=device, workers=workers)
        result = train_classifier(ws, config, progress=True)
    _print(result, json_)
