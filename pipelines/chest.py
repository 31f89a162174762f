"""What lies inside and outside the chest box: pixel geometry, fills, crops and input modes.

Pure NumPy over uint8 images [H, W, C] (C = 3, grey replicated, as pipelines.data loads them).
Boxes arrive in pixels of the image file, (x_min, y_min, x_max, y_max) with exclusive max edges,
and are mapped onto the loaded array by `box_on_array` (JPEG draft decoding may have shrunk it).
A pixel belongs to the box when its centre lies inside: column j is in when x_min <= j + 0.5 < x_max.

Two uses share these functions, so that what is measured and what is trained agree:
- shortcut reliance (`view`): the image as it is, "chest_only" (everything outside the box
  filled) and "chest_removed" (the box filled); the same fill as `wb suggest`'s reliance component.
- classifier input modes (`INPUT_MODES`): "full", "chest-crop" (crop to the box plus a margin),
  "chest-mask" (fill outside the box).

Fills: "grey" (constant mid grey 128, the default: no image statistic leaks through it), "blur"
(a strong Gaussian blur of the image itself: keeps brightness and large shapes, removes detail)
and "noise" (Gaussian noise with the image's own mean and standard deviation).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipelines.registry import FILLS

Box = tuple[float, float, float, float]

VIEWS = ("full", "chest_only", "chest_removed")
GREY = 128


def box_on_array(box: Box, file_size: tuple[int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Integer pixel range (x0, y0, x1, y1) of `box` on an array of `shape` [H, W, ...].

    box: file pixels (exclusive max); file_size: the file's (width, height). Pixels whose centres
    lie in the scaled box are in: x0 = ceil(x_min * sx - 0.5), x1 = ceil(x_max * sx - 0.5), clipped
    to [0, W] (likewise y). An empty range (x1 <= x0 or y1 <= y0) means no pixel is inside.
    """
    h, w = shape[:2]
    sx, sy = w / file_size[0], h / file_size[1]
    xs = [min(w, max(0, math.ceil(v * sx - 0.5))) for v in (box[0], box[2])]
    ys = [min(h, max(0, math.ceil(v * sy - 0.5))) for v in (box[1], box[3])]
    return xs[0], ys[0], xs[1], ys[1]


def _blur(image: NDArray[Any]) -> NDArray[Any]:
    import cv2

    sigma = max(2.0, 0.05 * min(image.shape[:2]))
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def fill_values(image: NDArray[Any], fill: str, seed: int = 0) -> NDArray[Any]:
    """An array like `image` holding what a filled region shows (see the module docstring)."""
    if fill == "grey":
        return np.full_like(image, GREY)
    if fill == "blur":
        return _blur(image)
    if fill == "noise":
        grey = image[..., 0].astype(np.float64)
        rng = np.random.default_rng(seed)
        noise = rng.normal(grey.mean(), grey.std() + 1e-6, size=grey.shape)
        return np.repeat(np.clip(np.rint(noise), 0, 255).astype(image.dtype)[..., None], image.shape[2], axis=2)
    raise ValueError(f"Unknown fill {fill!r}; choose one of {', '.join(FILLS)}")


def box_mask(shape: tuple[int, ...], box_px: tuple[int, int, int, int]) -> NDArray[Any]:
    """Boolean [H, W], True inside the integer box (x0, y0, x1, y1)."""
    mask = np.zeros(shape[:2], dtype=bool)
    x0, y0, x1, y1 = box_px
    if x1 > x0 and y1 > y0:
        mask[y0:y1, x0:x1] = True
    return mask


def fill_region(image: NDArray[Any], box_px: tuple[int, int, int, int], *, inside: bool, fill: str = "grey",
                seed: int = 0) -> NDArray[Any]:
    """A copy of `image` with the box (inside=True) or everything outside it (inside=False) filled."""
    mask = box_mask(image.shape, box_px)
    region = mask if inside else ~mask
    out = image.copy()
    if region.any():
        out[region] = fill_values(image, fill, seed)[region]
    return out


def view(image: NDArray[Any], box_px: tuple[int, int, int, int] | None, name: str, fill: str = "grey",
         seed: int = 0) -> NDArray[Any]:
    """One of VIEWS of `image`: as it is, chest only (outside filled) or chest removed (box filled).

    Without a box every view is the image as it is (nothing can be said about inside or outside).
    """
    if name not in VIEWS:
        raise ValueError(f"Unknown view {name!r}; choose one of {', '.join(VIEWS)}")
    if name == "full" or box_px is None:
        return image
    return fill_region(image, box_px, inside=name == "chest_removed", fill=fill, seed=seed)


def crop_range(shape: tuple[int, ...], box_px: tuple[int, int, int, int], margin: float) -> tuple[int, int, int, int]:
    """The box grown by `margin` x its width (height) on each side, clipped to the image; never empty."""
    h, w = shape[:2]
    x0, y0, x1, y1 = box_px
    mx, my = margin * max(x1 - x0, 0), margin * max(y1 - y0, 0)
    cx0, cy0 = max(0, math.floor(x0 - mx)), max(0, math.floor(y0 - my))
    cx1, cy1 = min(w, math.ceil(x1 + mx)), min(h, math.ceil(y1 + my))
    if cx1 <= cx0 or cy1 <= cy0:  # a degenerate box keeps the whole image rather than nothing
        return 0, 0, w, h
    return cx0, cy0, cx1, cy1


def crop(image: NDArray[Any], box_px: tuple[int, int, int, int], margin: float = 0.0) -> NDArray[Any]:
    x0, y0, x1, y1 = crop_range(image.shape, box_px, margin)
    return image[y0:y1, x0:x1]


@dataclass(frozen=True)
class InputMode:
    """How the classifier sees an image: `apply(image, box_px, margin)` before resizing."""

    name: str
    uses_box: bool
    apply: Callable[[NDArray[Any], tuple[int, int, int, int], float], NDArray[Any]]
    help: str


INPUT_MODES: dict[str, InputMode] = {m.name: m for m in (
    InputMode("full", False, lambda image, box_px, margin: image, "the whole image"),
    InputMode("chest-crop", True, crop, "crop to the chest box (plus --margin of its size on each side)"),
    InputMode("chest-mask", True, lambda image, box_px, margin: fill_region(image, box_px, inside=False),
              "fill everything outside the chest box with mid grey (the image keeps its frame)"),
)}


def get_input_mode(name: str) -> InputMode:
    try:
        return INPUT_MODES[name]
    except KeyError:
        raise ValueError(f"Unknown input mode {name!r}; choose one of {', '.join(INPUT_MODES)}") from None


def crop_fraction(box: Box | None, file_size: tuple[int, int], margin: float) -> float:
    """The smaller of the crop's width and height as a fraction of the image's (1.0 without a box).

    Lets the loader decode a JPEG at a size where the crop still has `image_size` pixels.
    """
    if box is None:
        return 1.0
    w, h = file_size
    fx = min(1.0, (box[2] - box[0]) * (1 + 2 * margin) / w)
    fy = min(1.0, (box[3] - box[1]) * (1 + 2 * margin) / h)
    return max(min(fx, fy), 1e-3)
