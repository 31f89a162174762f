"""Kermany chest X-ray layouts and file names (pure functions, no I/O besides `find_roots`).

Layouts people download:
- Kaggle:      chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg, plus a nested
               chest_xray/chest_xray copy and __MACOSX/._* resource forks (both skipped).
- Mendeley v2: chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg (same names, no val).
- Mendeley v3: CellData/chest_xray/{train,test}/{NORMAL,PNEUMONIA}/ with files renamed
               NORMAL-<pid>-<n>.jpeg, BACTERIA-<pid>-<n>.jpeg, VIRUS-<pid>-<n>.jpeg.

Patient keys (what `wb split` groups on):
- `personN_bacteria_M` / `personN_virus_M` -> `personN`: N numbers the patient, M the image, and
  one patient can have both bacteria and virus files, so the subtype is not part of the key.
- `IM-XXXX-YYYY[-ZZZZ]` -> `IM-XXXX`; `NORMAL2-IM-XXXX-YYYY[-ZZZZ]` -> `NORMAL2-IM-XXXX`: XXXX
  numbers the patient within its series; NORMAL2 is a separate numbering series, so its prefix
  stays in the key.
- v3 `<KIND>-<pid>-<n>` -> `v3-<pid>`: pid is the patient id, shared across classes.
- anything else -> `file:<stem>`: no grouping is possible, so the image is its own group.
Keying this way errs towards over-grouping (never splitting one real patient across parts).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LABELS = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")

_PERSON = re.compile(r"^person(\d+)_(bacteria|virus)_(\d+)$", re.IGNORECASE)
_IM = re.compile(r"^(NORMAL2-)?IM-(\d+)-(\d+)(?:-(\d+))?$", re.IGNORECASE)
_V3 = re.compile(r"^(NORMAL|BACTERIA|VIRUS)-(\d+)-(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class NameInfo:
    patient_key: str
    subtype: str | None  # normal | bacteria | virus | None when the name does not say
    recognised: bool


def parse_file_name(name: str, label: str) -> NameInfo:
    """Patient key and subtype from a Kermany file name and its class folder.

    >>> parse_file_name("person1003_virus_1685.jpeg", "PNEUMONIA")
    NameInfo(patient_key='person1003', subtype='virus', recognised=True)
    """
    stem = Path(name).stem
    if m := _PERSON.match(stem):
        return NameInfo(f"person{int(m.group(1))}", m.group(2).lower(), True)
    if m := _IM.match(stem):
        prefix = "NORMAL2-" if m.group(1) else ""
        return NameInfo(f"{prefix}IM-{m.group(2)}", "normal" if label == "NORMAL" else None, True)
    if m := _V3.match(stem):
        kind = m.group(1).lower()
        return NameInfo(f"v3-{int(m.group(2))}", kind, True)
    return NameInfo(f"file:{stem}", "normal" if label == "NORMAL" else None, False)


@dataclass(frozen=True)
class Located:
    """Where a file sits in a layout, or why it does not fit."""

    source_split: str | None
    label: str | None
    problem: str | None = None


def locate(rel_path: str) -> Located:
    """Source split and label from a path relative to the dataset root.

    `rel_path` looks like `chest_xray/train/NORMAL/x.jpeg` (the root is the folder that holds
    `chest_xray`). Folder names are matched case-insensitively.
    """
    parts = rel_path.split("/")
    if len(parts) != 4 or parts[0].lower() != "chest_xray":
        return Located(None, None, f"unexpected place: {'/'.join(parts[:-1]) or '.'}")
    split, label = parts[1].lower(), parts[2].upper()
    if split not in SPLITS:
        return Located(None, None, f"unexpected folder name: {parts[1]}")
    if label not in LABELS:
        return Located(split, None, f"unexpected folder name: {parts[2]}")
    return Located(split, label)


def is_skipped_name(name: str) -> bool:
    """macOS resource forks and hidden files: never images, never imported."""
    return name.startswith(".") or name == "__MACOSX"


def detect_layout(root: Path, sample_names: list[str]) -> str:
    """kaggle | mendeley_v2 | mendeley_v3, from the root folder and some file names."""
    if root.name.lower() == "celldata" or any(_V3.match(Path(n).stem) for n in sample_names):
        return "mendeley_v3"
    splits = {p.name.lower() for p in (root / "chest_xray").iterdir() if p.is_dir()}
    return "kaggle" if "val" in splits else "mendeley_v2"


def find_roots(path: Path, onerror: Callable[[OSError], object] | None = None) -> list[Path]:
    """Folders that hold a `chest_xray` tree with split folders, at or below `path`.

    A `chest_xray` nested inside another one (the Kaggle archive's duplicate copy) and anything
    under `__MACOSX` are not roots. `path` may itself be a `chest_xray` folder. `onerror`
    (os.walk's) hears of each folder that cannot be listed.
    """
    path = path.resolve()
    if path.name.lower() == "chest_xray" and _has_split_dirs(path):
        return [path.parent]
    roots: list[Path] = []
    for dirpath, dirnames, _ in os.walk(path, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not is_skipped_name(d))
        here = Path(dirpath)
        found = [d for d in dirnames if d.lower() == "chest_xray" and _has_split_dirs(here / d)]
        if found:
            roots.append(here)
            # Do not descend into the chest_xray tree: a nested copy there is not a new root.
            dirnames[:] = [d for d in dirnames if d.lower() != "chest_xray"]
    return roots


def _has_split_dirs(folder: Path) -> bool:
    try:
        return any(p.is_dir() and p.name.lower() in SPLITS for p in folder.iterdir())
    except OSError:
        return False
