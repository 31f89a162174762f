"""Model outputs that active learning needs, for a batch at a time (no model reloaded per image).

- `detect_with_flip`: the detector on each image and its horizontal mirror in one call; the
  top box (pixels of the file), its score, the best score per class, the mirror's top box.
- `classify_with_cams`: one forward of the ensemble with two class-activation maps per member
  from ONE backward pass: Grad-CAM (Selvaraju et al. 2017) at the member's last block (7x7 at
  224 px, the study's figure 11) and LayerCAM (Jiang et al. 2021) at its stride-16 block (14x14
  at 224 px: fine enough to see a small marker, where a 7x7 cell is a seventh of the image).
  LayerCAM rather than Grad-CAM at the finer block because it weighs each location by its own
  positive gradient instead of a channel mean, which keeps small, local evidence (Jiang et al.
  show Grad-CAM degrading at shallower layers). The backward runs only from the logits down to
  the stride-16 block (activations are cut there), so both maps cost a fraction of a forward.
  Optionally a second, gradient-free forward on chest-only images gives shortcut reliance.
  `wb cam`, `wb suggest` and `wb suggest show` all take their maps from here.
- `PoolDataset`: decodes each file for the detector; the classifier's images are made by
  pipelines.data.classifier_tensors, the one function training and evaluation use too.
- `score_pool_batches`: the one scoring loop `wb suggest`, `wb simulate` and the shortcut test
  share: both models on a batch, then off-lung attention and shortcut reliance per member.
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

from pipelines import active
from pipelines.active import class_scores_from_detections
from pipelines.chest import Box
from pipelines.data import (
    FULL_INPUT,
    ClassifierInput,
    ImageRecord,
    box_in_input,
    classifier_tensors,
    detector_transform,
    load_grey_rgb,
)

if TYPE_CHECKING:
    from pipelines.classification import Ensemble

_NO_BOXES = np.zeros((0, 4), dtype=np.float32)


class PoolDataset(torch.utils.data.Dataset[Any]):
    """Items: (index, detector image [3, Sd, Sd] in [0, 1], the file's (W, H))."""

    def __init__(self, paths: Sequence[str], det_size: int):
        self.paths = list(paths)
        self.det_size = det_size
        self.det_transform = detector_transform(det_size)  # the detector's own (resize, to [0, 1])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, tuple[int, int]]:
        image, size = load_grey_rgb(self.paths[i], self.det_size)
        return i, self.det_transform(image=image, bboxes=_NO_BOXES, labels=[])["image"], size


def collate_pool(
    batch: Sequence[tuple[int, torch.Tensor, tuple[int, int]]],
) -> tuple[list[int], list[torch.Tensor], NDArray[Any]]:
    idx, det, sizes = zip(*batch, strict=True)
    return list(idx), list(det), np.asarray(sizes, dtype=np.float64)


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
    cams: list[NDArray[Any]]  # M arrays [B, h_m, w_m]: ReLU'd Grad-CAM at each member's last block, unscaled
    fine_cams: list[NDArray[Any]]  # M arrays [B, h'_m, w'_m]: ReLU'd LayerCAM at each member's stride-16 block
    chest_probs: NDArray[Any] | None = None  # [B, 2] ensemble softmax on the chest-only images (when given)
    chest_member_probs: NDArray[Any] | None = None  # [M, B, 2]


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


Hook = Callable[[nn.Module, Any, torch.Tensor], "torch.Tensor | None"]


@contextmanager
def _hooks(pairs: Sequence[tuple[nn.Module, Hook]]) -> Iterator[None]:
    handles = [module.register_forward_hook(hook) for module, hook in pairs]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _store(store: list[torch.Tensor | None], i: int) -> Hook:
    def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        store[i] = out
    return hook


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


@torch.no_grad()
def ensemble_probabilities(model: Ensemble, images: torch.Tensor) -> tuple[NDArray[Any], NDArray[Any]]:
    """(ensemble softmax [B, 2], member probabilities [M, B, 2]) without gradients; images [B, 3, S, S]."""
    model.eval()
    heads: list[torch.Tensor | None] = [None] * len(model.member_heads)
    with _hooks([(h, _store(heads, i)) for i, h in enumerate(model.member_heads)]):
        logits = model(images)
    member = member_probabilities(model, _filled(heads))
    return (logits.float().softmax(dim=1).cpu().numpy().astype(np.float64),
            member.float().cpu().numpy().astype(np.float64))


def classify_with_cams(model: Ensemble, images: torch.Tensor, device: torch.device, *,
                       chest_only: torch.Tensor | None = None) -> ClassifierBatch:
    """Ensemble outputs and each member's Grad-CAM and LayerCAM for the predicted class, one backward.

    images: [B, 3, S, S] normalised; chest_only: the same images with everything outside the
    chest box filled (pipelines.data.classifier_tensors' "chest_only" view), or None. With y_c
    the ensemble's logit for its predicted class:
    Grad-CAM_m = ReLU(sum_k mean_xy(dy_c/dA_k) A_k) at member m's `cam_layers()` block;
    LayerCAM_m = ReLU(sum_k ReLU(dy_c/dF_k) F_k) at its `cam_layers(fine=True)` block.
    """
    model.eval()
    coarse_layers = list(model.cam_layers().values())
    fine_layers = list(model.cam_layers(fine=True).values())
    coarse: list[torch.Tensor | None] = [None] * len(coarse_layers)
    fine: list[torch.Tensor | None] = [None] * len(fine_layers)
    heads: list[torch.Tensor | None] = [None] * len(model.member_heads)
    feats: list[torch.Tensor | None] = [None] * len(model.members)

    def cut(i: int) -> Hook:  # the backward stops here: the fine block's output becomes a leaf
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            leaf = out.detach().requires_grad_(True)
            fine[i] = leaf
            return leaf.clone()  # a non-leaf, so in-place ops after the block are allowed
        return hook

    def keep(i: int) -> Hook:  # recorded inside the graph; the clone shields it from in-place ops (DenseNet's ReLU)
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            coarse[i] = out
            return out.clone()
        return hook

    pairs: list[tuple[nn.Module, Hook]] = [(layer, cut(i)) for i, layer in enumerate(fine_layers)]
    pairs += [(layer, keep(i)) for i, layer in enumerate(coarse_layers)]
    pairs += [(h, _store(heads, i)) for i, h in enumerate(model.member_heads)]
    pairs += [(m, _store(feats, i)) for i, m in enumerate(model.members)]
    with _frozen(model), _hooks(pairs), torch.enable_grad():
        logits = model(images.to(device))
        predicted = logits.argmax(dim=1)
        target = logits.gather(1, predicted[:, None]).sum()  # images are independent in eval mode
        kept_coarse, kept_fine = _filled(coarse), _filled(fine)
        kept_heads, kept_feats = _filled(heads), _filled(feats)
        grads = torch.autograd.grad(target, kept_coarse + kept_fine)
        with torch.no_grad():
            g_coarse, g_fine = grads[: len(kept_coarse)], grads[len(kept_coarse):]
            cams = [torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))
                    for g, a in zip(g_coarse, kept_coarse, strict=True)]
            fine_cams = [torch.relu((torch.relu(g) * a).sum(dim=1)) for g, a in zip(g_fine, kept_fine, strict=True)]
            probs = logits.float().softmax(dim=1)
            member = member_probabilities(model, kept_heads)
            if model.head == "fc2":
                emb = torch.stack(kept_heads).sum(dim=0)
            else:
                emb = torch.cat([nn.functional.normalize(f.flatten(1), dim=1) for f in kept_feats], dim=1)
    out = ClassifierBatch(
        probs=probs.cpu().numpy().astype(np.float64),
        member_probs=member.float().cpu().numpy().astype(np.float64),
        embeddings=emb.float().cpu().numpy(),
        cams=[c.float().cpu().numpy() for c in cams],
        fine_cams=[c.float().cpu().numpy() for c in fine_cams],
    )
    if chest_only is not None:
        out.chest_probs, out.chest_member_probs = ensemble_probabilities(model, chest_only.to(device))
    return out


@dataclass(frozen=True)
class PoolItem:
    """An image to score: its file and, when known, its chest box in file pixels (an annotated
    box, or the classifier's own box source); None: the detector's top box stands in."""

    path: str
    box: Box | None = None


@dataclass
class PoolScores:
    """One scored batch. M members, B images; NaN where a value cannot be measured (no chest box)."""

    indices: list[int]  # positions in the items given to `score_pool_batches`
    detector: DetectorBatch
    classifier: ClassifierBatch
    boxes: NDArray[Any]  # [B, 4] the chest box measured against, file pixels (NaN row: none)
    off_lung_members: NDArray[Any]  # [M, B] off-lung attention of each member's LayerCAM (pipelines.active)
    off_lung: NDArray[Any]  # [B] mean over members
    cam_outside: NDArray[Any]  # [M, B] raw share of each member's LayerCAM mass outside the box
    reliance_members: NDArray[Any]  # [M, B] |P_m(pneumonia) - P_m(pneumonia | outside filled)|
    reliance: NDArray[Any]  # [B] the same for the ensemble


def score_pool_batches(detector: nn.Module, det_size: int, classifier: Ensemble, cls_size: int, items: Sequence[PoolItem],
                       device: torch.device, *, inputs: ClassifierInput = FULL_INPUT, fill: str = "blur",
                       batch_size: int = 8) -> Iterator[PoolScores]:
    """Score `items` batch by batch: detector (with its mirror), classifier (with CAMs), reliance.

    Each image's chest box is its item's box, else the detector's top box. The classifier sees
    the image as it was trained to (`inputs`: a chest input mode uses the item's box only, never
    this detector's, as training and `wb eval` do), once as it is and once with everything outside
    the box filled with `fill` (pipelines.chest.FILLS) for the reliance component.
    """
    loader = torch.utils.data.DataLoader(PoolDataset([it.path for it in items], det_size), batch_size=batch_size,
                                         shuffle=False, collate_fn=collate_pool)
    for idx, det_images, sizes in loader:
        det = detect_with_flip(detector, det_images, sizes, device)
        boxes = np.full((len(idx), 4), np.nan)
        records = []
        for j, i in enumerate(idx):
            given = items[i].box
            if given is not None:
                boxes[j] = given
            elif np.isfinite(det.top_box[j]).all():
                boxes[j] = det.top_box[j]
            box = tuple(float(v) for v in boxes[j]) if np.isfinite(boxes[j]).all() else None
            records.append(ImageRecord(None, items[i].path, 0, given if inputs.uses_box else box))  # type: ignore[arg-type]
        tensors = [classifier_tensors(r, cls_size, inputs, views=("full", "chest_only"), fill=fill) for r in records]
        cls = classify_with_cams(classifier, torch.stack([t[0] for t in tensors]), device,
                                 chest_only=torch.stack([t[1] for t in tensors]))
        frame_boxes = np.full((len(idx), 4), np.nan)
        frame_sizes = np.asarray(sizes, dtype=np.float64).copy()
        for j in range(len(idx)):
            if np.isfinite(boxes[j]).all():
                box, frame = box_in_input(tuple(boxes[j]), (int(sizes[j][0]), int(sizes[j][1])), inputs)
                frame_boxes[j], frame_sizes[j] = box, frame
        per_member, combined = active.off_lung_members(cls.fine_cams, frame_boxes, frame_sizes)
        shares = np.stack([active.cam_outside_share(c, frame_boxes, frame_sizes)[0] for c in cls.fine_cams])
        assert cls.chest_probs is not None and cls.chest_member_probs is not None
        measured = np.array([r.box is not None for r in records])  # no box: nothing was filled
        rel_members = np.where(measured[None, :], active.probability_shift(cls.member_probs, cls.chest_member_probs), np.nan)
        rel = np.where(measured, active.probability_shift(cls.probs, cls.chest_probs), np.nan)
        yield PoolScores(indices=list(idx), detector=det, classifier=cls, boxes=boxes, off_lung_members=per_member,
                         off_lung=combined, cam_outside=shares, reliance_members=rel_members, reliance=rel)
