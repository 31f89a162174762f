"""Use cases `train_detector` and `train_classifier`: configs, data from the DB, runs, resume.

Each training is a `Run` row (kind, config JSON, status, per-epoch history, metrics) with its
checkpoints in `<workspace>/runs/<id>/`: `last.pt` (written every epoch, for `--resume`) and
`best.pt` (lowest validation loss). The loops themselves live in pipelines.engine.
"""
from __future__ import annotations

import dataclasses
import math
import random
import shutil
import time
from dataclasses import dataclass

import torch

from db.models import RunStatus
from pipelines import engine
from pipelines.data import ImageRecord
from workbench.configs import ClassifierConfig, DetectorConfig, TrainConfig, config_from_dict, validate_train_config
from workbench.errors import ConflictError, InputError, WorkbenchError
from workbench.kinds import ModelKind, get_kind
from workbench.predicting import decision_threshold
from workbench.runs import (
    build_model,
    create_run,
    get_run,
    run_folder,
    running,
    update_run,
)
from workbench.workspace import Workspace


@dataclass
class TrainResult:
    run_id: int
    status: str
    epochs_done: int
    best_epoch: int | None
    best_val_loss: float | None
    artifact_dir: str
    history: list
    threshold: float | None = None  # best.pt's decision threshold, chosen on the val part (Youden's J)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- data from the DB -------------------------------------------------------------------------

def _subset(records: list[ImageRecord], limit: int | None, seed: int) -> list[ImageRecord]:
    if limit is None or len(records) <= limit:
        return records
    picked = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in picked]


def _training_records(ws: Workspace, config: TrainConfig, kind: ModelKind,
                      progress: bool = True) -> tuple[int, dict[str, list[ImageRecord]], dict[str, dict[str, int]]]:
    """(split id, records of the train and val parts, chest-box sources per part where boxes steer the model)."""
    parts, sources = {}, {}
    split_id = 0
    for part in ("train", "val"):
        split_id, records, counts = kind.records(ws, config, part, progress=progress)
        if counts is not None:
            sources[part] = counts
        if not records:
            raise InputError(f"The {part} part of the split is empty", "make a split with a val part, e.g. `wb split`")
        parts[part] = _subset(records, config.limit, config.seed)
    return split_id, parts, sources


# --- training ---------------------------------------------------------------------------------

def _optimizer(config: TrainConfig, model: torch.nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=0.9, weight_decay=1e-4)
    return torch.optim.Adam(params, lr=config.learning_rate)


def _scheduler(config: TrainConfig, optimizer):
    if config.lr_schedule == "cosine":
        epochs = config.epochs
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs)))
    return None


def _loaders(kind: ModelKind, config: TrainConfig, parts: dict[str, list[ImageRecord]], generator: torch.Generator):
    train_data, val_data = kind.datasets(config, parts["train"], parts["val"])
    collate = kind.collate()
    train = torch.utils.data.DataLoader(train_data, shuffle=True, generator=generator, collate_fn=collate,
                                        drop_last=len(parts["train"]) > config.batch_size, batch_size=config.batch_size,
                                        num_workers=config.workers)
    val = torch.utils.data.DataLoader(val_data, shuffle=False, collate_fn=collate, batch_size=config.batch_size,
                                      num_workers=config.workers)
    return train, val


def train(ws: Workspace, kind_name: str, config: TrainConfig | None = None, *, resume: int | None = None,
          epochs: int | None = None, progress: bool = True) -> TrainResult:
    """Train a new run of kind `kind_name` with `config`, or continue run `resume` (optionally to `epochs`)."""
    kind = get_kind(kind_name)
    if resume is not None:
        with ws.db.session() as s:
            run = get_run(s, resume, (kind.name,))
            config = config_from_dict(kind.name, run.config)
            run_id, folder = run.id, run_folder(run)
        if epochs is not None:
            config = dataclasses.replace(config, epochs=epochs)
            validate_train_config(config)
        try:
            state = engine.load_checkpoint(folder / "last.pt")
        except engine.CorruptCheckpoint as exc:
            raise InputError(str(exc), "start a new run instead of --resume") from None
    else:
        assert config is not None
        state = None
    try:
        device = engine.pick_device(config.device)
    except ValueError as exc:
        raise InputError(str(exc), "use --device auto or cpu") from None
    generator = engine.seed_everything(config.seed)
    split_id, parts, box_sources = _training_records(ws, config, kind, progress)
    model = build_model(kind.name, config, "none" if state else None).to(device)
    if resume is None:
        run_id, folder = create_run(ws, kind.name, dataclasses.asdict(config), split_id=split_id, name=config.preset)
    optimizer = _optimizer(config, model)
    scheduler = _scheduler(config, optimizer)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    history, best, start = [], None, 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(f"Checkpoint {folder / 'last.pt'} does not fit the run's model ({type(exc).__name__})") from None
        history, best, start = list(state["history"]), state.get("best_val_loss"), int(state["epoch"])
        # Each epoch reseeds from (seed, epoch), so a resumed run shuffles as an unbroken one would.
    task = kind.task(config, parts["train"])
    train_loader, val_loader = _loaders(kind, config, parts, generator)
    with running(ws, run_id, config=dataclasses.asdict(config)):
        for epoch in range(start, config.epochs):
            generator.manual_seed(config.seed + epoch)
            t0 = time.perf_counter()
            try:
                tr = engine.train_one_epoch(model, optimizer, train_loader, device, task, scaler=scaler, scheduler=scheduler,
                                            desc=f"{kind.name} epoch {epoch + 1}/{config.epochs}", progress=progress)
            except engine.NonFiniteLoss as exc:
                raise WorkbenchError(f"Run {run_id}: {exc}", f"the last good epoch is kept in {folder}/last.pt") from None
            penalty = task.stats.pop("guide_penalty", None)
            guided = task.stats.pop("guided_batches", 0)
            va = engine.evaluate(model, val_loader, device, task)
            va.update(kind.val_metrics(model, val_loader, device, parts["val"]))
            seconds = time.perf_counter() - t0
            history.append({"epoch": epoch + 1, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                            "val_loss": va["loss"], "val_accuracy": va["accuracy"], "seconds": round(seconds, 2),
                            "train_images": len(parts["train"]), "lr": optimizer.param_groups[0]["lr"],
                            **({"guide_penalty": penalty / guided} if penalty is not None and guided else {})})
            improved = best is None or va["loss"] < best
            best = va["loss"] if improved else best
            engine.save_checkpoint(folder / "last.pt", model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                   epoch=epoch + 1, config=dataclasses.asdict(config), history=history, best_val_loss=best)
            if improved:
                shutil.copyfile(folder / "last.pt", folder / "best.pt")
            update_run(ws, run_id, history=list(history), metrics=_training_metrics(history, box_sources))
        metrics = _training_metrics(history, box_sources)
        update_run(ws, run_id, metrics=metrics)
        # The decision threshold of each checkpoint, chosen on the val part (never on test).
        for checkpoint in ("last", "best"):
            if checkpoint == "best":
                model.load_state_dict(engine.load_checkpoint(folder / "best.pt")["model"])
            decision_threshold(ws, run_id, checkpoint, model, device=device, progress=progress)
    with ws.db.session() as s:
        metrics = dict(get_run(s, run_id).metrics or {})
    update_run(ws, run_id, status=RunStatus.DONE)
    return TrainResult(run_id=run_id, status=RunStatus.DONE, epochs_done=len(history), best_epoch=metrics.get("best_epoch"),
                       best_val_loss=metrics.get("best_val_loss"), artifact_dir=str(folder), history=history,
                       threshold=(metrics.get("threshold") or {}).get("best", {}).get("value"))


def _training_metrics(history: list[dict], box_sources: dict[str, dict[str, int]] | None = None) -> dict:
    if not history:
        return {}
    best = min(history, key=lambda h: h["val_loss"])
    out = {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"], "best_val_accuracy": best["val_accuracy"],
           "train_seconds": round(sum(h["seconds"] for h in history), 2)}
    if box_sources:
        out["boxes"] = box_sources  # part -> chest-box source ("annotated", "detector N", "none") -> images
    return out


def train_detector(ws: Workspace, config: DetectorConfig | None = None, *, resume: int | None = None,
                   epochs: int | None = None, progress: bool = True) -> TrainResult:
    """Faster R-CNN on the annotated images of the split's train part (val part for best.pt)."""
    if resume is None and config is None:
        raise ConflictError("Give a config or --resume RUN")
    return train(ws, "detector", config, resume=resume, epochs=epochs, progress=progress)


def train_classifier(ws: Workspace, config: ClassifierConfig | None = None, *, resume: int | None = None,
                     epochs: int | None = None, progress: bool = True) -> TrainResult:
    """The ensemble classifier on every readable image of the split's train part."""
    if resume is None and config is None:
        raise ConflictError("Give a config or --resume RUN")
    return train(ws, "classifier", config, resume=resume, epochs=epochs, progress=progress)
