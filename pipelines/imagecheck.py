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

# What Pillow raises for a file it cannot open or decode (the bomb error is not an OSError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageReadError(Exception):
    """An image that was readable at import cannot be read now; `message` names the file.

    One string argument, so a DataLoader worker can re-raise it in the main process.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message.strip().splitlines()[-1].split("ImageReadError: ", 1)[-1]


def read_error(path: str, exc: BaseException) -> ImageReadError:
    """The ImageReadError for `path` that failed with `exc` (one of DECODE_ERRORS)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ImageReadError(f"Cannot read image {path}: {reason}")


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
    except Image.DecompressionBombError as exc:
        # Over twice Pillow's pixel limit (~179 MP): an error, not a warning, and not an OSError.
        return FileFacts(digest, len(data), error=f"too large to decode safely: {exc}")
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
            present[folder] = _files_in(folder)
        if name not in present[folder]:
            missing.append(im.abs_path)
    return missing


def _files_in(folder: str) -> set[str]:
    """Names of the regular files (or links to them) in `folder`; empty when it cannot be read.

    One bad entry (a symlink loop raises ELOOP from is_file) must not hide the folder's other files.
    """
    names = set()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file():
                        names.add(entry.name)
                except OSError:
                    continue
    except OSError:
        pass
    return names
