"""The seed study's exploratory figures, as functions from arrays to PNG files (matplotlib, Agg).

Image arrays are greyscale intensities 0..255 as float, shaped [H, W]; sizes are in pixels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import NDArray

CLASS_COLOURS = {"NORMAL": "tab:blue", "PNEUMONIA": "tab:red"}
DPI = 110


def load_grey(path: str, size: tuple[int, int] | None = None) -> NDArray[Any]:
    """One image as float32[H, W] greyscale 0..255; resized (bilinear, aspect not kept) to
    size=(width, height) when given, as the seed study fed 299x299 inputs."""
    from PIL import Image

    with Image.open(path) as img:
        if size is not None and img.format == "JPEG":
            img.draft("L", size)  # DCT-scaled decode, never below the requested size
        grey = img.convert("L")
        if size is not None:
            grey = grey.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(grey, dtype=np.float32)


@dataclass
class RunningMoments:
    """Per-pixel mean and variance over a stream of equal-shaped images (Welford), float64."""

    shape: tuple[int, ...]
    n: int = 0
    _mean: NDArray[Any] = field(init=False, repr=False)
    _m2: NDArray[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._mean = np.zeros(self.shape, dtype=np.float64)
        self._m2 = np.zeros(self.shape, dtype=np.float64)

    def add(self, image: NDArray[Any]) -> None:
        if image.shape != self.shape:
            raise ValueError(f"image shape {image.shape} != {self.shape}")
        self.n += 1
        delta = image - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (image - self._mean)

    @property
    def mean(self) -> NDArray[Any]:
        return self._mean.copy()

    @property
    def variance(self) -> NDArray[Any]:
        """Population variance (divides by n); zeros before the first image."""
        return self._m2 / self.n if self.n else self._m2.copy()


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares y = slope * x + intercept; returns (slope, intercept). Needs 2+ distinct x."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < 2 or np.ptp(xs) == 0:
        raise ValueError("a line needs at least two distinct x values")
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(slope), float(intercept)


def plot_size_scatter(sizes: Mapping[str, tuple[Sequence[int], Sequence[int]]], path: Path) -> dict[str, Any]:
    """Figure 1: width vs height per class with the least-squares line height = a * width + b.

    sizes: label -> (widths, heights). Returns label -> {"n", "slope", "intercept"} (slope None
    when a class has too few distinct widths).
    """
    fig, ax = plt.subplots(figsize=(7, 5.5))
    fits: dict[str, dict[str, Any]] = {}
    for label, (widths, heights) in sorted(sizes.items()):
        colour = CLASS_COLOURS.get(label)
        ax.scatter(widths, heights, s=7, alpha=0.35, color=colour, edgecolors="none")
        try:
            slope, intercept = fit_line(widths, heights)
        except ValueError:
            fits[label] = {"n": len(widths), "slope": None, "intercept": None}
            ax.plot([], [], color=colour, label=f"{label} (n={len(widths)}, no fit)")
            continue
        xs = np.array([min(widths), max(widths)], dtype=float)
        ax.plot(xs, slope * xs + intercept, color=colour, lw=2,
                label=f"{label} (n={len(widths)}): height = {slope:.2f} x width {intercept:+.0f}")
        fits[label] = {"n": len(widths), "slope": round(slope, 4), "intercept": round(intercept, 2)}
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("Image size per class, with least-squares lines")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return fits


def plot_image_grid(images: Mapping[str, Sequence[NDArray[Any]]], captions: Mapping[str, Sequence[str]],
                    path: Path, title: str, *, same_scale: bool = False) -> None:
    """Figures 2 and 3: one row per class, one greyscale image per cell, each with its caption.

    same_scale=True draws every image at one pixel scale (cells as large as the largest image),
    so a 263x165 film looks smaller than an 857x825 one, as it is; otherwise each fills its cell.
    """
    labels = sorted(images)
    cols = max((len(v) for v in images.values()), default=1) or 1
    fig, axes = plt.subplots(len(labels), cols, figsize=(2.0 * cols, 2.7 * len(labels)), squeeze=False)
    all_images = [im for v in images.values() for im in v]
    max_h = max((im.shape[0] for im in all_images), default=1)
    max_w = max((im.shape[1] for im in all_images), default=1)
    for r, label in enumerate(labels):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images[label]):
                ax.imshow(images[label][c], cmap="gray", vmin=0, vmax=255)
                if same_scale:  # anchor top-left in a common max_w x max_h box
                    ax.set_xlim(-0.5, max_w - 0.5)
                    ax.set_ylim(max_h - 0.5, -0.5)
                ax.set_title(captions[label][c], fontsize=7)
        axes[r][0].text(-0.08, 0.5, label, transform=axes[r][0].transAxes, rotation=90,
                        va="center", ha="right", fontsize=11, color=CLASS_COLOURS.get(label, "black"))
    fig.suptitle(title)
    _save(fig, path)


def plot_mean_images(means: Mapping[str, NDArray[Any]], counts: Mapping[str, int], path: Path) -> None:
    """Figure 4: the per-pixel mean image of each class, on one shared grey scale."""
    labels = sorted(means)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 4.6), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        im = ax.imshow(means[label], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"mean {label} (n={counts[label]})")
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="mean intensity (0-255)")
    _save(fig, path, tight=False)


def plot_difference(a: NDArray[Any], b: NDArray[Any], label_a: str, label_b: str, path: Path) -> dict[str, Any]:
    """Figure 5: a - b on a diverging scale centred at 0. Returns {"min", "max", "mean_abs"}."""
    diff = a - b
    bound = float(np.abs(diff).max()) or 1.0
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    im = ax.imshow(diff, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set_title(f"mean {label_a} - mean {label_b}")
    ax.axis("off")
    fig.colorbar(im, ax=ax, label=f"intensity difference (red: brighter in {label_a})")
    _save(fig, path)
    return {"min": round(float(diff.min()), 2), "max": round(float(diff.max()), 2),
            "mean_abs": round(float(np.abs(diff).mean()), 2)}


def argmax_2d(values: NDArray[Any]) -> tuple[int, int]:
    """(row, col) of the largest value (the first one in row-major order on ties)."""
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(col)


def plot_variance(variances: Mapping[str, NDArray[Any]], path: Path) -> dict[str, Any]:
    """Figure 6: per-pixel variance per class, its maximum marked. Returns label -> {"max", "row", "col"}."""
    labels = sorted(variances)
    top = max(float(v.max()) for v in variances.values()) or 1.0
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 4.8), squeeze=False)
    peaks = {}
    for ax, label in zip(axes[0], labels, strict=True):
        var = variances[label]
        row, col = argmax_2d(var)
        peaks[label] = {"max": round(float(var[row, col]), 1), "row": row, "col": col}
        im = ax.imshow(var, cmap="magma", vmin=0, vmax=top)
        # A ring, not clipped: the maximum often sits on the image border.
        ax.plot(col, row, marker="o", mfc="none", color="cyan", markersize=14, mew=2.5, clip_on=False)
        ax.set_title(f"variance {label}\nmax {var[row, col]:.0f} at (x={col}, y={row})", fontsize=10)
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="variance (intensity^2)")
    _save(fig, path, tight=False)
    return peaks


def write_index(path: Path, title: str, sections: Sequence[tuple[str, str, str]]) -> None:
    """An HTML page showing each figure: sections are (heading, png file name, caption text)."""
    import html

    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    for heading, file_name, caption in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(caption)}</p>"
                     f"<a href='{file_name}'><img src='{file_name}' alt='{html.escape(heading)}'></a>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def _save(fig: Figure, path: Path, *, tight: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
