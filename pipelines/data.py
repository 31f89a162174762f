"""Datasets and albumentations transforms for the classifier and the detector.

Images are read as greyscale and fed as 3 identical channels (the Kermany set mixes L and RGB
files; the colour carries no information). Every image is resized (squashed) to a square
`image_size`, as the study did (299x299); boxes follow the same scaling.
Boxes are pixels of the imported file: (x_min, y_min, x_max, y_max), x_max/y_max exclusive.

The classifier's picture of an image comes from one function, `classifier_image` (a shortcut-
reliance view, then the run's input mode: full, chest crop or chest mask; see pipelines.chest),
used by training, evaluation, CAMs and suggest alike: a model is never trained one way and
asked another.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from numpy.typing import NDArray
from PIL import Image as PILImage

from pipelines import chest
from pipelines.chest import Box
from pipelines.imagecheck import DECODE_ERRORS, read_error
from pipelines.registry import AUGMENTATIONS

LABELS = ("NORMAL", "PNEUMONIA")  # class index 0, 1 for the classifier (pneumonia positive)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageRecord:
    """One image to train on or predict: where it is, its label index and, optionally, its box."""

    image_id: int | None
    path: str
    label: int  # 0 NORMAL, 1 PNEUMONIA
    box: Box | None = None


def load_grey_rgb(path: str, target: int | None = None, *, crop_box: Box | None = None,
                  margin: float = 0.0) -> tuple[NDArray[Any], tuple[int, int]]:
    """The image as uint8 [H, W, 3] (grey replicated) and the file's (width, height).

    With `target`, JPEG decoding may shrink by a power of two while keeping both sides >= target
    (a large speed-up for 1,000+ px X-rays resized to a few hundred pixels); with `crop_box`
    (file pixels) the sides are kept large enough that the crop (plus `margin`) still has `target`.
    """
    try:
        with PILImage.open(path) as im:
            size = im.size
            if target:
                target = int(np.ceil(target / chest.crop_fraction(crop_box, size, margin)))
                im.draft("L", (target, target))
            grey = np.asarray(im.convert("L"))
    except DECODE_ERRORS as exc:  # damaged or replaced since import: name the file
        raise read_error(path, exc) from exc
    return np.repeat(grey[:, :, None], 3, axis=2), size


def augmentation(name: str) -> list[Any]:
    """The study's augmentations: Affine(rotate 20 deg, translate 15%/20%) or Rotate(30 deg)."""
    if name == "none":
        return []
    if name == "affine":
        return [A.Affine(rotate=(-20, 20), translate_percent={"x": (-0.15, 0.15), "y": (-0.2, 0.2)}, p=1.0)]
    if name == "rotate":
        return [A.Rotate(limit=30, p=1.0)]
    raise ValueError(f"Unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")


def classifier_transform(image_size: int, augment: str = "none") -> A.Compose:
    """Resize, augment, ImageNet-normalise, to tensor [3, S, S] float."""
    return A.Compose(
        [A.Resize(image_size, image_size), *augmentation(augment), A.Normalize(IMAGENET_MEAN, IMAGENET_STD), ToTensorV2()]
    )


@functools.lru_cache(maxsize=8)
def _plain_classifier_transform(image_size: int) -> A.Compose:
    """The un-augmented classifier transform, built once per size (it holds no random state)."""
    return classifier_transform(image_size)


def detector_transform(image_size: int, augment: str = "none") -> A.Compose:
    """Resize and augment with the box; values in [0, 1] (Faster R-CNN normalises internally)."""
    return A.Compose(
        [A.Resize(image_size, image_size), *augmentation(augment), A.ToFloat(max_value=255.0), ToTensorV2()],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True, min_visibility=0.3),
    )


@dataclass(frozen=True)
class ClassifierInput:
    """How a classifier run sees images (stored in its config; every command applies the same).

    mode: a pipelines.chest.INPUT_MODES name; margin: crop margin as a fraction of the box size.
    Images without a box are seen whole in every mode.
    """

    mode: str = "full"
    margin: float = 0.0

    @property
    def uses_box(self) -> bool:
        return chest.get_input_mode(self.mode).uses_box


FULL_INPUT = ClassifierInput()


def classifier_image(image: NDArray[Any], file_size: tuple[int, int], box: Box | None,
                     inputs: ClassifierInput = FULL_INPUT, *, view: str = "full", fill: str = "grey") -> NDArray[Any]:
    """The uint8 picture [h, w, 3] the classifier gets before resizing.

    image: as loaded by `load_grey_rgb` (possibly draft-shrunk); file_size: the file's (W, H);
    box: the chest box in file pixels or None. First the reliance `view` (chest_only /
    chest_removed, filled with `fill`), then the input mode (crop or mask to the same box).
    """
    box_px = chest.box_on_array(box, file_size, image.shape) if box is not None else None
    image = chest.view(image, box_px, view, fill)
    mode = chest.get_input_mode(inputs.mode)
    if mode.uses_box and box_px is not None:
        image = mode.apply(image, box_px, inputs.margin)
    return image


def box_in_input(box: Box, file_size: tuple[int, int], inputs: ClassifierInput = FULL_INPUT
                 ) -> tuple[Box, tuple[int, int]]:
    """(box, (width, height)) of the frame the classifier sees, in file pixels: the crop for
    chest-crop (the box shifted into it), the whole file otherwise. For CAM shares in that frame."""
    if inputs.mode != "chest-crop":
        return box, file_size
    w, h = file_size
    x0, y0, x1, y1 = chest.crop_range((h, w), chest.box_on_array(box, file_size, (h, w)), inputs.margin)
    return (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0), (x1 - x0, y1 - y0)


def _decode_for_classifier(rec: ImageRecord, image_size: int, inputs: ClassifierInput) -> tuple[NDArray[Any], tuple[int, int]]:
    crop_box = rec.box if inputs.mode == "chest-crop" else None
    return load_grey_rgb(rec.path, image_size, crop_box=crop_box, margin=inputs.margin)


def classifier_tensors(rec: ImageRecord, image_size: int, inputs: ClassifierInput = FULL_INPUT,
                       views: Sequence[str] = ("full",), fill: str = "grey") -> list[torch.Tensor]:
    """One file decoded once, as the classifier sees it in each of `views`: tensors [3, S, S] normalised."""
    image, size = _decode_for_classifier(rec, image_size, inputs)
    transform = _plain_classifier_transform(image_size)
    return [transform(image=classifier_image(image, size, rec.box, inputs, view=v, fill=fill))["image"] for v in views]


class ClassificationDataset(torch.utils.data.Dataset[Any]):
    """Items: (image [3, S, S] float, label int); with `guide`: (image, label, outside [S, S] float, has_box bool).

    `outside` marks the input pixels outside the record's chest box (1.0), moved by the same
    augmentation as the image; all zeros when the record has no box (`has_box` False).
    """

    def __init__(self, records: Sequence[ImageRecord], image_size: int, augment: str = "none", *,
                 inputs: ClassifierInput = FULL_INPUT, view: str = "full", fill: str = "grey", guide: bool = False):
        if guide and inputs.uses_box:
            raise ValueError("box guidance trains on full images: it cannot be combined with a chest input mode")
        self.records = list(records)
        self.image_size = image_size
        self.inputs, self.view, self.fill, self.guide = inputs, view, fill, guide
        self.transform = classifier_transform(image_size, augment)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        rec = self.records[i]
        raw, size = _decode_for_classifier(rec, self.image_size, self.inputs)
        image = classifier_image(raw, size, rec.box, self.inputs, view=self.view, fill=self.fill)
        if not self.guide:
            return self.transform(image=image)["image"], rec.label
        inside = (chest.box_mask(image.shape, chest.box_on_array(rec.box, size, image.shape)) if rec.box is not None
                  else np.ones(image.shape[:2], dtype=bool))
        out = self.transform(image=image, mask=(~inside).astype(np.uint8))
        return out["image"], rec.label, out["mask"].float(), rec.box is not None


def _scaled_box(box: Box, file_size: tuple[int, int], loaded_shape: tuple[int, ...]) -> list[float]:
    sx = loaded_shape[1] / file_size[0]
    sy = loaded_shape[0] / file_size[1]
    x0, y0, x1, y1 = box
    h, w = loaded_shape[:2]
    return [max(0.0, x0 * sx), max(0.0, y0 * sy), min(float(w), x1 * sx), min(float(h), y1 * sy)]


class DetectionDataset(torch.utils.data.Dataset[Any]):
    """Items: (image [3, S, S] in [0, 1], target {boxes [1, 4] in S-pixels, labels [1]}).

    With `view` "chest_only" / "chest_removed" the record's box is also what gets filled.
    Detector label = 1 + classifier label (1 normal chest, 2 pneumonia chest). Records without a
    box give an empty target (used for prediction only).
    """

    def __init__(self, records: Sequence[ImageRecord], image_size: int, augment: str = "none", *,
                 view: str = "full", fill: str = "grey"):
        self.records = list(records)
        self.image_size = image_size
        self.view, self.fill = view, fill  # a shortcut-reliance view of the record's box (pipelines.chest)
        self.transform = detector_transform(image_size, augment)
        self.plain = detector_transform(image_size, "none")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rec = self.records[i]
        image, file_size = load_grey_rgb(rec.path, self.image_size)
        if self.view != "full" and rec.box is not None:
            image = chest.view(image, chest.box_on_array(rec.box, file_size, image.shape), self.view, self.fill)
        boxes = [_scaled_box(rec.box, file_size, image.shape)] if rec.box is not None else []
        labels = [rec.label + 1] * len(boxes)
        out = self.transform(image=image, bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), labels=labels)
        if len(out["bboxes"]) < len(boxes):
            # The augmentation pushed the chest out of the frame: keep this sample un-augmented.
            out = self.plain(image=image, bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), labels=labels)
        target = {
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(list(out["labels"]), dtype=torch.int64),
        }
        return out["image"], target


def collate_detection(batch: Sequence[tuple[Any, ...]]) -> tuple[tuple[Any, ...], ...]:
    """Detection batches stay lists (images may differ in content, targets in length)."""
    return tuple(zip(*batch, strict=True))
