"""Prove a file is a whole, decodable image, and hash it, in one read; find image files that are gone.

JPEGs are decoded in draft mode (libjpeg's DCT scaling to 1/8 size): every entropy-coded byte is
still read, so truncation and corruption raise, at a fraction of a full decode's cost.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size_bytes: int
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    error: str | None = None  # None when the image decoded completely


def inspect_bytes(data: bytes) -> FileFacts:
    """Hash and verify one image's bytes. Never raises for bad content: see `error`."""
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return FileFacts(digest, 0, error="empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height, mode = img.width, img.height, img.mode
                if img.format == "JPEG":
                    img.draft(mode, (max(1, width // 8), max(1, height // 8)))
                img.load()
    except UnidentifiedImageError:
        return FileFacts(digest, len(data), error="not an image (Pillow cannot identify it)")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        return FileFacts(digest, len(data), error=f"cannot decode: {exc}")
    return FileFacts(digest, len(data), width, height, mode)


def inspect_file(path: str) -> FileFacts:
    """`inspect_bytes` on a file; an unreadable file gives an error, not an exception."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return FileFacts("", 0, error=f"cannot read: {exc.strerror or exc}")
    return inspect_bytes(data)


class HasPath(Protocol):
    @property
    def abs_path(self) -> str: ...


def missing_files(images: Iterable[HasPath]) -> list[str]:
    """Paths of the images whose file is gone (one directory listing per folder, not a stat per file)."""
    present: dict[str, set[str]] = {}
    missing = []
    for im in images:
        folder, name = os.path.split(im.abs_path)
        if folder not in present:
            try:
                present[folder] = {e.name for e in os.scandir(folder) if e.is_file()}
            except OSError:
                present[folder] = set()
        if name not in present[folder]:
            missing.append(im.abs_path)
    return missing
