"""Synthetic markers outside the chest box: the planted shortcut of `wb stress plant`.

Real Kermany images carry laterality letters, text and hospital marks outside the lungs, and a
classifier can read the label off them (Zech et al. 2018). A planted marker whose presence
correlates with the label makes that failure measurable: a model that learns it fails when the
correlation is reversed. Everything here is pure NumPy on uint8 images [H, W] or [H, W, C];
boxes are file pixels (x_min, y_min, x_max, y_max), exclusive max (pipelines.chest's convention),
and a marker never covers a pixel of the box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipelines.chest import Box, box_on_array
from pipelines.registry import MARKER_PLACES, MARKER_SHAPES

SHAPES = MARKER_SHAPES
PLACES = MARKER_PLACES

# 5 x 7 block letters, like the laterality markers ("R", "L") on real radiographs.
_GLYPHS = {
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
}


@dataclass(frozen=True)
class MarkerSpec:
    """What to plant. size: the marker's side as a fraction of the image's shorter side."""

    shape: str = "square"  # one of SHAPES, or "mixed" (a shape drawn per image)
    size: float = 0.06
    # anywhere outside the box | corners (within the outer quarter in x and y) | margin (centre of the widest margin)
    place: str = "anywhere"
    intensity: int = 255

    def validate(self) -> None:
        if self.shape not in (*SHAPES, "mixed"):
            raise ValueError(f"Unknown marker shape {self.shape!r}; choose one of {', '.join(SHAPES)}, mixed")
        if self.place not in PLACES:
            raise ValueError(f"Unknown marker place {self.place!r}; choose one of {', '.join(PLACES)}")
        if not (0 < self.size <= 0.5):
            raise ValueError("marker size must be in (0, 0.5] of the shorter side")
        if not (0 <= self.intensity <= 255):
            raise ValueError("marker intensity must be in [0, 255]")


def marker_side(width: int, height: int, size: float) -> int:
    """The marker's side in pixels: `size` x the shorter side, at least 3."""
    return max(3, int(round(size * min(width, height))))


def stamp(shape: str, side: int, letter: str = "R") -> NDArray[Any]:
    """Boolean [side, side]: the marker's pixels."""
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    r = np.hypot(xx - side / 2, yy - side / 2)
    out: NDArray[Any]
    if shape == "square":
        out = np.ones((side, side), dtype=bool)
        return out
    if shape == "disc":
        out = r <= side / 2
        return out
    if shape == "ring":
        out = (r <= side / 2) & (r >= side / 2 - max(1.0, side / 5))
        return out
    if shape == "cross":
        bar = max(1, side // 4)
        lo = (side - bar) // 2
        out = np.zeros((side, side), dtype=bool)
        out[lo:lo + bar, :] = True
        out[:, lo:lo + bar] = True
        return out
    if shape == "letter":
        glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]])
        rows = np.minimum((np.arange(side) * glyph.shape[0]) // side, glyph.shape[0] - 1)
        cols = np.minimum((np.arange(side) * glyph.shape[1]) // side, glyph.shape[1] - 1)
        return glyph[np.ix_(rows, cols)]
    raise ValueError(f"Unknown marker shape {shape!r}; choose one of {', '.join(SHAPES)}")


def free_positions(width: int, height: int, box: Box | None, side: int, place: str = "anywhere") -> NDArray[Any]:
    """Top-left corners [K, 2] (x, y) where a side x side marker fits the image and misses the box.

    box: file pixels (exclusive max) or None (anywhere in the image). "corners": the marker lies
    within the outer quarter of the image in both x and y. "margin": the single position centred
    in the widest margin between the box and the image edge (the old test's placement).
    """
    if side > width or side > height:
        return np.zeros((0, 2), dtype=np.int64)
    bx0, by0, bx1, by1 = box_on_array(box, (width, height), (height, width)) if box is not None else (0, 0, 0, 0)
    xs: NDArray[Any] = np.arange(width - side + 1)
    ys: NDArray[Any] = np.arange(height - side + 1)
    if place == "margin":
        if box is None:
            return np.zeros((0, 2), dtype=np.int64)
        margins = {"left": bx0, "right": width - bx1, "top": by0, "bottom": height - by1}
        where = max(margins, key=lambda k: margins[k])
        if margins[where] < side:
            return np.zeros((0, 2), dtype=np.int64)
        cx = {"left": bx0 / 2, "right": (bx1 + width) / 2}.get(where, (bx0 + bx1) / 2)
        cy = {"top": by0 / 2, "bottom": (by1 + height) / 2}.get(where, (by0 + by1) / 2)
        x = int(min(max(round(cx - side / 2), 0), width - side))
        y = int(min(max(round(cy - side / 2), 0), height - side))
        xs, ys = np.array([x]), np.array([y])
    x_ok = (xs + side <= bx0) | (xs >= bx1)  # columns entirely left or right of the box
    y_ok = (ys + side <= by0) | (ys >= by1)
    if place == "corners":
        x_corner = (xs + side <= math.ceil(width / 4)) | (xs >= math.floor(3 * width / 4))
        y_corner = (ys + side <= math.ceil(height / 4)) | (ys >= math.floor(3 * height / 4))
        ok = (x_corner[None, :] & y_corner[:, None]) & (x_ok[None, :] | y_ok[:, None])
    else:
        ok = x_ok[None, :] | y_ok[:, None]
    iy, ix = np.nonzero(ok)
    return np.stack([xs[ix], ys[iy]], axis=1).astype(np.int64)


@dataclass(frozen=True)
class Planted:
    """Where a marker went: top-left (x, y), side and shape, in file pixels."""

    x: int
    y: int
    side: int
    shape: str

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.side, self.y + self.side


def plant_marker(image: NDArray[Any], box: Box | None, spec: MarkerSpec,
                 rng: np.random.Generator) -> tuple[NDArray[Any], Planted | None]:
    """(a copy of `image` with one marker outside `box`, where it went) or (image, None) when none fits."""
    spec.validate()
    height, width = image.shape[:2]
    side = marker_side(width, height, spec.size)
    positions = free_positions(width, height, box, side, spec.place)
    if len(positions) == 0:
        return image, None
    x, y = (int(v) for v in positions[rng.integers(len(positions))])
    shape = SHAPES[rng.integers(len(SHAPES))] if spec.shape == "mixed" else spec.shape
    pixels = stamp(shape, side, letter="RL"[rng.integers(2)])
    out = image.copy()
    out[y:y + side, x:x + side][pixels] = spec.intensity
    return out, Planted(x, y, side, shape)


def marked_share(label: str, part: str, rate_positive: float, rate_negative: float) -> float:
    """Probability that an image gets a marker: `rate_positive` for PNEUMONIA and `rate_negative`
    for NORMAL in train/val; reversed in test (so a model that learnt the marker fails there)."""
    positive = label == "PNEUMONIA"
    if part == "test":
        positive = not positive
    return rate_positive if positive else rate_negative
