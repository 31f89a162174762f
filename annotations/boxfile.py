"""The plain JSON file of chest boxes (`wb annotations export/import`): pure read/write/check.

Format (version 1):

    {"format": "wb-chest-boxes", "version": 1,
     "box_convention": "...", "classes": ["normal chest", "pneumonia chest"],
     "boxes": [{"image": "chest_xray/train/NORMAL/x.jpeg", "sha256": "...", "width": 640, "height": 480,
                "label": "normal chest", "x_min": 10.0, "y_min": 5.0, "x_max": 600.0, "y_max": 470.0,
                "origin": "human" | "machine", "annotator": "..." | null}]}

Boxes are pixels of the image file wb imported, float edges (see annotations/convert.py): a box
over the whole image is (0, 0, width, height). Images are matched by sha256, then rel path.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from annotations.convert import CHEST_LABELS, PixelBox, check_box, inclusive_to_box
from db.models.labels import CHEST_CLASSES

FORMAT = "wb-chest-boxes"
VERSION = 1
BOX_CONVENTION = (
    "pixels of the image file as imported; x right, y down; (x_min, y_min) top-left corner, "
    "(x_max, y_max) bottom-right corner as float edges, so the whole image is (0, 0, width, height); "
    "an inclusive integer box x0..x1 becomes x_min=x0, x_max=x1+1"
)
ORIGINS = ("human", "machine")


@dataclass(frozen=True)
class BoxRecord:
    image: str  # rel path under the dataset root, '/'-separated
    sha256: str
    width: int
    height: int
    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    origin: str = "human"
    annotator: str | None = None

    @property
    def box(self) -> PixelBox:
        return PixelBox(self.x_min, self.y_min, self.x_max, self.y_max)


def problem_with(record: BoxRecord) -> str | None:
    """None when the record is usable, else why not (label, origin, box inside the image)."""
    if record.label not in CHEST_LABELS:
        return f"unknown label {record.label!r} (known: {', '.join(CHEST_LABELS)})"
    if record.origin not in ORIGINS:
        return f"unknown origin {record.origin!r} (human or machine)"
    return check_box(record.box, record.width, record.height)


def write_box_file(path: Path, records: list[BoxRecord]) -> None:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "box_convention": BOX_CONVENTION,
        "classes": list(CHEST_LABELS),
        "boxes": [asdict(r) for r in records],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def read_box_file(path: Path) -> list[BoxRecord]:
    """Raises ValueError (one line) for anything that is not a version-1 box file."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (no \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path} has version {doc.get('version')!r}; this wb reads version {VERSION}")
    records = []
    for i, box in enumerate(doc.get("boxes") or []):
        try:
            records.append(BoxRecord(
                image=str(box["image"]), sha256=str(box["sha256"]), width=int(box["width"]),
                height=int(box["height"]), label=str(box["label"]), x_min=float(box["x_min"]),
                y_min=float(box["y_min"]), x_max=float(box["x_max"]), y_max=float(box["y_max"]),
                origin=str(box.get("origin", "human")), annotator=box.get("annotator"),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: box #{i} is incomplete or malformed ({exc})") from None
    return records


def records_from_chest_csv(csv_path: Path, dataset_root: Path, manifest: Path | None = None) -> list[BoxRecord]:
    """Machine-made boxes from a kermany-subset `chest_boxes.csv` (INCLUSIVE integer pixels).

    Label from the folder name (NORMAL/PNEUMONIA), size from `manifest.csv` (width, height)
    or the file itself, sha256 of the file under dataset_root.
    """
    sizes: dict[str, tuple[int, int]] = {}
    if manifest is not None and manifest.is_file():
        with manifest.open(newline="") as fh:
            sizes = {r["path"]: (int(r["width"]), int(r["height"])) for r in csv.DictReader(fh)}
    records = []
    with csv_path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            rel = r["path"]
            file = dataset_root / rel
            if rel in sizes:
                width, height = sizes[rel]
            else:
                from PIL import Image as PILImage

                with PILImage.open(file) as im:
                    width, height = im.size
            label_dir = Path(rel).parent.name.upper()
            box = inclusive_to_box(int(r["x_min"]), int(r["y_min"]), int(r["x_max"]), int(r["y_max"]))
            records.append(BoxRecord(
                image=rel, sha256=hashlib.sha256(file.read_bytes()).hexdigest(), width=width, height=height,
                label=CHEST_CLASSES[label_dir], x_min=box.x_min, y_min=box.y_min, x_max=box.x_max, y_max=box.y_max,
                origin="machine", annotator=r.get("method") or None,
            ))
    return records
