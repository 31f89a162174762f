"""Model outputs that active learning needs, for a batch at a time (no model reloaded per image).

- `detect_with_flip`: the detector on each image and its horizontal mirror in one call; the
  top box (pixels of the file), its score, the best score per class, the mirror's top box.
- `classify_with_cams`: one forward of the ensemble with Grad-CAM for every member at once:
  ensemble and per-member probabilities, an embedding, and each member's CAM for the
  predicted class. The backward pass runs only from the logits down to the members' last
  convolutional blocks (the activations are cut from the backbone graph), so a CAM costs
  a small fraction of a forward pass instead of a full backward per member.
- `PoolDataset`: decodes each file once for both models.
Pure array scoring lives in pipelines.active; this module only runs models.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from pipelines.active import class_scores_from_detections
from pipelines.data import classifier_transform, detector_transform, load_grey_rgb

if TYPE_CHECKING:
    from pipelines.classification import Ensemble

_NO_BOXES = np.zeros((0, 4), dtype=np.float32)


class PoolDataset(torch.utils.data.Dataset[Any]):
    """Items: (index, detector image [3, Sd, Sd] in [0, 1], classifier image [3, Sc, Sc] normalised, (W, H))."""

    def __init__(self, paths: Sequence[str], det_size: int, cls_size: int):
        self.paths = list(paths)
        self.det_size, self.cls_size = det_size, cls_size
        self.cls_transform = classifier_transform(cls_size)
        self.det_transform = detector_transform(det_size)  # the detector's own (resize, to [0, 1])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor, tuple[int, int]]:
        image, size = load_grey_rgb(self.paths[i], max(self.det_size, self.cls_size))
        det = self.det_transform(image=image, bboxes=_NO_BOXES, labels=[])["image"]
        cls = self.cls_transform(image=image)["image"]
        return i, det, cls, size


def collate_pool(
    batch: Sequence[tuple[int, torch.Tensor, torch.Tensor, tuple[int, int]]],
) -> tuple[list[int], list[torch.Tensor], torch.Tensor, NDArray[Any]]:
    idx, det, cls, sizes = zip(*batch, strict=True)
    return list(idx), list(det), torch.stack(cls), np.asarray(sizes, dtype=np.float64)


@dataclass
class DetectorBatch:
    top_box: NDArray[Any]  # [B, 4] file pixels (NaN row = no chest found)
    top_score: NDArray[Any]  # [B] (NaN = no chest found)
    class_scores: NDArray[Any]  # [B, 2] best score for normal chest, pneumonia chest (NaN row = none)
    flip_box: NDArray[Any]  # [B, 4] top box on the mirrored image, in the mirror's file pixels


def _top(pred: dict[str, Any], sx: float, sy: float) -> tuple[NDArray[Any], float]:
    if len(pred["scores"]) == 0:
        return np.full(4, np.nan), float("nan")
    best = int(torch.argmax(pred["scores"]))
    b = pred["boxes"][best].float().cpu().numpy().astype(np.float64)
    return b * np.array([sx, sy, sx, sy]), float(pred["scores"][best])


@torch.inference_mode()
def detect_with_flip(model: nn.Module, images: list[torch.Tensor], sizes: NDArray[Any], device: torch.device) -> DetectorBatch:
    """images: B tensors [3, S, S] in [0, 1] (the file squashed to S); sizes[B, 2] file (W, H)."""
    model.eval()
    batch = [im.to(device) for im in images]
    preds = model(batch + [im.flip(-1) for im in batch])
    b = len(images)
    out = DetectorBatch(np.full((b, 4), np.nan), np.full(b, np.nan), np.full((b, 2), np.nan), np.full((b, 4), np.nan))
    for i in range(b):
        s_h, s_w = images[i].shape[-2:]
        sx, sy = sizes[i][0] / s_w, sizes[i][1] / s_h
        out.top_box[i], out.top_score[i] = _top(preds[i], sx, sy)
        out.flip_box[i], _ = _top(preds[b + i], sx, sy)
    out.class_scores = class_scores_from_detections(
        [p["labels"].cpu().numpy() for p in preds[:b]], [p["scores"].float().cpu().numpy() for p in preds[:b]])
    return out


@dataclass
class ClassifierBatch:
    probs: NDArray[Any]  # [B, 2] ensemble softmax (column 1 = PNEUMONIA)
    member_probs: NDArray[Any]  # [M, B, 2]
    embeddings: NDArray[Any]  # [B, D]
    cams: list[NDArray[Any]]  # M arrays [B, h_m, w_m], ReLU'd Grad-CAM at each member's grid, unscaled


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """No parameter tracks gradients (the CAM graph then starts at the hooked activations)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def member_probabilities(model: Ensemble, head_outputs: list[torch.Tensor]) -> torch.Tensor:
    """[M, B, 2] each member's own class probabilities.

    fc1: the member's 2-class layer. fc2 (members only project to 128 and are summed): the
    shared head applied to M times one member's projection, i.e. as if every member agreed with it.
    """
    if model.head == "fc1":
        return torch.stack([o.softmax(dim=1) for o in head_outputs])
    m = len(head_outputs)
    combined: list[torch.Tensor] = [model.combine(o * m) for o in head_outputs]
    return torch.stack([c.softmax(dim=1) for c in combined])


def _filled(kept: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """The hooked outputs, each of which the forward pass must have set."""
    if any(t is None for t in kept):
        raise RuntimeError("a hooked layer did not run in the forward pass")
    return [t for t in kept if t is not None]


def classify_with_cams(model: Ensemble, images: torch.Tensor, device: torch.device) -> ClassifierBatch:
    """Ensemble outputs and per-member Grad-CAM (Selvaraju et al. 2017) for the predicted class.

    images: [B, 3, S, S] normalised. The model is a pipelines.classification.Ensemble.
    CAM_m = ReLU(sum_k mean_xy(dy_c/dA_k) * A_k) at member m's `cam_layers()` block, where y_c is
    the ensemble's logit for its predicted class.
    """
    model.eval()
    layers = list(model.cam_layers().values())
    acts: list[torch.Tensor | None] = [None] * len(layers)
    heads: list[torch.Tensor | None] = [None] * len(model.member_heads)
    feats: list[torch.Tensor | None] = [None] * len(model.members)

    def keep_act(i: int) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            leaf = out.detach().requires_grad_(True)
            acts[i] = leaf
            return leaf.clone()  # a non-leaf, so in-place ops after the block (DenseNet's ReLU) are allowed
        return hook

    def keep(store: list[torch.Tensor | None], i: int) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            store[i] = out
        return hook

    handles = [layer.register_forward_hook(keep_act(i)) for i, layer in enumerate(layers)]
    handles += [h.register_forward_hook(keep(heads, i)) for i, h in enumerate(model.member_heads)]
    handles += [m.register_forward_hook(keep(feats, i)) for i, m in enumerate(model.members)]
    try:
        with _frozen(model), torch.enable_grad():
            logits = model(images.to(device))
            predicted = logits.argmax(dim=1)
            target = logits.gather(1, predicted[:, None]).sum()  # images are independent in eval mode
            kept_acts, kept_heads, kept_feats = _filled(acts), _filled(heads), _filled(feats)
            grads = torch.autograd.grad(target, kept_acts)
            with torch.no_grad():
                cams = [torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))
                        for g, a in zip(grads, kept_acts, strict=True)]
                probs = logits.float().softmax(dim=1)
                member = member_probabilities(model, kept_heads)
                if model.head == "fc2":
                    emb = torch.stack(kept_heads).sum(dim=0)
                else:
                    emb = torch.cat([nn.functional.normalize(f.flatten(1), dim=1) for f in kept_feats], dim=1)
    finally:
        for h in handles:
            h.remove()
    return ClassifierBatch(
        probs=probs.cpu().numpy().astype(np.float64),
        member_probs=member.float().cpu().numpy().astype(np.float64),
        embeddings=emb.float().cpu().numpy(),
        cams=[c.float().cpu().numpy() for c in cams],
    )
