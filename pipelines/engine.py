"""Training and evaluation loops (after torchvision references/detection/engine.py).

Knows nothing of the CLI or the DB: `train_one_epoch` and `evaluate` take a model, a loader, a
device and a `Task` (`ClassifierTask` or `DetectorTask`: how to get a loss and correct-count from one batch); checkpoints are one
dict per epoch (model, optimizer, scheduler, scaler, epoch, config, history) so a run resumes.
"""
from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable, Iterator, Sequence, Sized
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from pipelines.progress import progress_bar


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


class CorruptCheckpoint(ValueError):
    """A checkpoint file that cannot be read or lacks the expected entries."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a generator for DataLoader shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device must exist."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if name == "mps" and not has_mps:
        raise ValueError("--device mps asked for, but torch sees no MPS device")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def input_gradient_penalty(model: nn.Module, images: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """"Right for the Right Reasons" (Ross et al. 2017, IJCAI, eq. 1): the mean over images of
    sum_{pixels outside the box, channels} (d/dx sum_k log p_k(x))^2.

    images [B, 3, S, S] (all with a chest box); outside [B, S, S] (1 outside the box, 0 inside).
    The squared input gradient of the summed log-probabilities where the answer should not come
    from; taken with create_graph, so the penalty trains the model. It costs its own forward and a
    second-order backward on these images (about 4x a plain step per image at 224 px on a CPU),
    so callers pass only the images that have a box.
    """
    x = images.detach().requires_grad_(True)
    log_probs = torch.log_softmax(model(x).float(), dim=1)
    (grad,) = torch.autograd.grad(log_probs.sum(), x, create_graph=True)
    return (grad.pow(2).sum(dim=1) * outside).sum(dim=(1, 2)).mean()


class Task(Protocol):
    """What one batch means to the loops: how it moves to the device, its loss, its size, and the
    mode a model must be in for `evaluate` to get a loss. `ClassifierTask` and `DetectorTask` are
    the two kinds (workbench.kinds picks one per run)."""

    @property
    def stats(self) -> dict[str, float]:
        """Running sums the task keeps for the history (e.g. the guidance penalty); callers pop them."""
        ...

    def to_device(self, batch: Sequence[Any], device: torch.device) -> tuple[Any, Any]: ...

    def loss(self, model: nn.Module, images: Any, targets: Any) -> tuple[torch.Tensor, int | None]:
        """(mean loss, number of correct predictions or None when the model is not asked)."""
        ...

    def size(self, images: Sized) -> int: ...

    def loss_mode(self, model: nn.Module) -> AbstractContextManager[None]:
        """The model's mode while `evaluate` asks it for a loss (restored afterwards)."""
        ...


@contextmanager
def _restoring_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    try:
        yield
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class ClassifierTask:
    """Batches of (images [B, 3, S, S], labels [B] [, outside [B, S, S], has_box [B]]); cross-entropy.

    With `guide_weight` > 0, batches that carry chest-box masks (pipelines.data
    ClassificationDataset(guide=True)) add `guide_weight` x `input_gradient_penalty` to the loss;
    `stats["guide_penalty"]` sums the penalty of the batches seen (for the history).
    """

    class_weight: tuple[float, ...] | None = None  # cross-entropy weight per class
    guide_weight: float = 0.0
    stats: dict[str, float] = field(default_factory=dict, compare=False)

    def to_device(self, batch: Sequence[Any], device: torch.device) -> tuple[Any, Any]:
        images, targets, *masks = batch
        labels = torch.as_tensor(targets).to(device)
        if masks:  # (outside [B, S, S], has_box [B]) for guidance
            return images.to(device, non_blocking=True), (labels, masks[0].to(device), torch.as_tensor(masks[1]).to(device))
        return images.to(device, non_blocking=True), labels

    def loss(self, model: nn.Module, images: Any, targets: Any) -> tuple[torch.Tensor, int | None]:
        """(mean loss, number of correct predictions)."""
        penalty = None
        if isinstance(targets, tuple):
            targets, outside, has_box = targets
            if self.guide_weight > 0 and torch.is_grad_enabled() and bool(has_box.any()):
                penalty = input_gradient_penalty(model, images[has_box], outside[has_box])
        logits = model(images)
        weight = torch.tensor(self.class_weight, device=logits.device) if self.class_weight else None
        loss = nn.functional.cross_entropy(logits.float(), targets, weight=weight)
        if penalty is not None:
            self.stats["guide_penalty"] = self.stats.get("guide_penalty", 0.0) + float(penalty.detach())
            self.stats["guided_batches"] = self.stats.get("guided_batches", 0.0) + 1
            loss = loss + self.guide_weight * penalty
        return loss, int((logits.argmax(dim=1) == targets).sum())

    def size(self, images: Sized) -> int:
        return len(images)

    @contextmanager
    def loss_mode(self, model: nn.Module) -> Iterator[None]:
        with _restoring_mode(model):
            model.eval()
            yield


@dataclass(frozen=True)
class DetectorTask:
    """Batches of (images: list of [3, S, S], targets: list of {"boxes", "labels"}); torchvision's summed losses."""

    stats: dict[str, float] = field(default_factory=dict, compare=False)

    def to_device(self, batch: Sequence[Any], device: torch.device) -> tuple[Any, Any]:
        images, targets, *_ = batch
        return [im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets]

    def loss(self, model: nn.Module, images: Any, targets: Any) -> tuple[torch.Tensor, int | None]:
        """(sum of the detector's losses, None: a detector's accuracy is measured apart)."""
        losses: dict[str, torch.Tensor] = model(images, targets)
        return cast(torch.Tensor, sum(losses.values())), None

    def size(self, images: Sized) -> int:
        return len(images)

    @contextmanager
    def loss_mode(self, model: nn.Module) -> Iterator[None]:
        """torchvision detectors return losses only in train mode; keep BatchNorm/Dropout frozen."""
        with _restoring_mode(model):
            model.train()
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Dropout):
                    m.eval()
            yield


def _autocast(device: torch.device) -> AbstractContextManager[Any]:
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()


def _check_finite(loss: torch.Tensor) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(f"Loss is {value}; training stopped (lower --lr, or check the input)")
    return value


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable[Any], device: torch.device,
                    task: Task, *, scaler: torch.amp.GradScaler | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, desc: str = "train",
                    progress: bool = True) -> dict[str, Any]:
    """One pass over `loader`; returns {"loss": mean per image, "accuracy": or None}."""
    model.train()
    total, correct, n, n_scored = 0.0, 0, 0, 0
    bar = progress_bar(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for batch in bar:
        images, targets = task.to_device(batch, device)
        with _autocast(device):
            loss, ok = task.loss(model, images, targets)
        value = _check_finite(loss)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        size = task.size(images)
        total += value * size
        n += size
        if ok is not None:
            correct += ok
            n_scored += size
        bar.set_postfix(loss=f"{total / n:.4f}")
    if scheduler is not None:
        scheduler.step()
    return {"loss": total / max(n, 1), "accuracy": correct / n_scored if n_scored else None}


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable[Any], device: torch.device, task: Task, *, progress: bool = False,
             desc: str = "val") -> dict[str, Any]:
    """Mean loss (and accuracy for classifiers) on `loader` without changing the model."""
    total, correct, n, n_scored = 0.0, 0, 0, 0
    with task.loss_mode(model):
        for batch in progress_bar(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
            images, targets = task.to_device(batch, device)
            with _autocast(device):
                loss, ok = task.loss(model, images, targets)
            size = task.size(images)
            total += float(loss) * size
            n += size
            if ok is not None:
                correct += ok
                n_scored += size
    return {"loss": total / max(n, 1), "accuracy": correct / n_scored if n_scored else None}


@torch.inference_mode()
def predict_probs(model: nn.Module, loader: Iterable[Any], device: torch.device, *, progress: bool = False) -> NDArray[Any]:
    """Classifier softmax probabilities, probs[N, 2] (column 1 = PNEUMONIA)."""
    model.eval()
    out: list[NDArray[Any]] = []
    for images, _ in progress_bar(loader, desc="predict", leave=False, disable=not progress, unit="batch"):
        with _autocast(device):
            logits = model(images.to(device))
        out.append(logits.float().softmax(dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


@torch.inference_mode()
def predict_detections(model: nn.Module, loader: Iterable[Any], device: torch.device, *,
                       progress: bool = False) -> list[dict[str, Any]]:
    """Per image: {"boxes": [K, 4] input pixels, "scores": [K], "labels": [K]} as NumPy, best first."""
    model.eval()
    out: list[dict[str, Any]] = []
    for images, _ in progress_bar(loader, desc="predict", leave=False, disable=not progress, unit="batch"):
        with _autocast(device):
            preds = model([im.to(device) for im in images])
        out.extend({k: v.float().cpu().numpy() if k != "labels" else v.cpu().numpy() for k, v in p.items()} for p in preds)
    return out


CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "config", "history")


def save_checkpoint(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None, scaler: torch.amp.GradScaler | None,
                    epoch: int, config: dict[str, Any], history: list[Any], best_val_loss: float | None) -> None:
    """Write the checkpoint dict atomically (a crash mid-write never leaves a half file)."""
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch, "config": config, "history": history, "best_val_loss": best_val_loss,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict; CorruptCheckpoint when missing, unreadable or incomplete."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CorruptCheckpoint(f"Checkpoint {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors vary; the user's problem is one
        raise CorruptCheckpoint(f"Checkpoint {path} is unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise CorruptCheckpoint(f"Checkpoint {path} lacks the expected entries")
    return state
