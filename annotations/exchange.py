"""Box files other tools read and write: COCO, Pascal VOC, YOLO, and Label Studio's JSON export.

Pure builders and parsers (documents in, documents out; the use cases in workbench/boxfiles.py
read the DB and touch the disk). Coordinates go through annotations/boxformats.py.

- COCO (`wb annotations export --format coco FILE.json`): one JSON file; `images[].file_name`
  is the path under the dataset root, with the file's `sha256` beside it (extra keys, which COCO
  readers ignore); one annotation per image with `bbox` [x, y, w, h] in pixels, `area`,
  `iscrowd` 0, and wb's `origin`/`annotator`; categories 1 "normal chest", 2 "pneumonia chest".
- VOC (`--format voc DIR`): `DIR/Annotations/<name>.xml`, one per image, and `DIR/JPEGImages/`
  with a link to each image; <name> is the path under the dataset root with '/' -> '__'.
- YOLO (`--format yolo DIR`): `DIR/images/<part>/<name>` links, `DIR/labels/<part>/<stem>.txt`
  (`class cx cy w h`, fractions), `DIR/data.yaml` (Ultralytics: path, train/val/test, names) and
  `DIR/classes.txt`; <part> is the image's part in the split (train/val/test), else `all`.
- Label Studio JSON export (import only): the list of tasks that Label Studio's Export > JSON (or
  `GET /api/projects/ID/export?exportType=JSON`) writes; each task's `annotations[].result[]`
  holds rectangles in percent of the image (annotations/convert.py judges them as a pull does).
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from annotations.boxfile import FORMAT as WB_FORMAT
from annotations.boxfile import BoxRecord
from annotations.boxformats import box_to_coco, box_to_voc, box_to_yolo, coco_to_box, number_text
from annotations.convert import CHEST_LABEL, CHEST_LABELS, PixelBox
from db.models.labels import CHEST_CLASSES

EXPORT_FORMATS = ("wb", "coco", "voc", "yolo")
IMPORT_FORMATS = ("wb", "coco", "label-studio")
COCO_CATEGORIES = [{"id": i, "name": name, "supercategory": "chest"} for i, name in enumerate(CHEST_LABELS, start=1)]
YOLO_CLASSES = list(CHEST_LABELS)  # class index = position


@dataclass(frozen=True)
class ExportItem:
    """One image and its box, as the exporters need them."""

    record: BoxRecord  # rel path, sha256, size, label, box, origin, annotator
    image_id: int
    annotation_id: int
    abs_path: str
    part: str | None = None  # train | val | test in the split, None when not in it
    channels: int = 3  # colour channels of the file (VOC's <depth>): 1 for Pillow mode L


CHANNELS = {"1": 1, "L": 1, "P": 1, "I": 1, "F": 1, "I;16": 1, "LA": 2, "RGB": 3, "YCbCr": 3, "RGBA": 4, "CMYK": 4}


def flat_name(rel_path: str) -> str:
    """A file name unique within a dataset root: the path under it with '/' -> '__'."""
    return rel_path.replace("/", "__")


# ---- export ------------------------------------------------------------------------------------

def coco_document(items: Sequence[ExportItem], *, description: str = "wb chest boxes") -> dict[str, Any]:
    """A COCO detection document (pycocotools' `COCO` loads it) with one box per image."""
    category = {c["name"]: c["id"] for c in COCO_CATEGORIES}
    images, annotations = [], []
    for it in items:
        r = it.record
        images.append({"id": it.image_id, "file_name": r.image, "width": r.width, "height": r.height,
                       "sha256": r.sha256})
        bbox = box_to_coco(r.box)
        annotations.append({"id": it.annotation_id, "image_id": it.image_id, "category_id": category[r.label],
                            "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0, "segmentation": [],
                            "origin": r.origin, "annotator": r.annotator})
    return {"info": {"description": description, "version": "1.0"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": COCO_CATEGORIES}


def voc_xml(item: ExportItem) -> str:
    """One Pascal VOC annotation file for an image with its chest box."""
    r = item.record
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = flat_name(r.image)
    ET.SubElement(root, "path").text = item.abs_path
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "wb"
    size = ET.SubElement(root, "size")
    for tag, count in (("width", r.width), ("height", r.height), ("depth", item.channels)):
        ET.SubElement(size, tag).text = str(count)
    ET.SubElement(root, "segmented").text = "0"
    obj = ET.SubElement(root, "object")
    ET.SubElement(obj, "name").text = r.label
    ET.SubElement(obj, "pose").text = "Unspecified"
    ET.SubElement(obj, "truncated").text = "0"
    ET.SubElement(obj, "difficult").text = "0"
    bnd = ET.SubElement(obj, "bndbox")
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box_to_voc(r.box), strict=True):
        ET.SubElement(bnd, tag).text = number_text(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def yolo_line(record: BoxRecord) -> str:
    """`class cx cy w h` (fractions of the image) for one box."""
    numbers = box_to_yolo(record.box, record.width, record.height)
    return " ".join([str(YOLO_CLASSES.index(record.label)), *(repr(v) for v in numbers)]) + "\n"


def yolo_data_yaml(root: str, parts: Sequence[str]) -> str:
    """Ultralytics' dataset file: the folder, image folders per part, class names.

    Values are JSON strings, which YAML reads as they are. Without a val part, val is train's
    folder (Ultralytics needs one).
    """
    lines = [f"path: {json.dumps(root)}"]
    present = list(parts)
    for part in ("train", "val", "test"):
        if part in present:
            lines.append(f"{part}: {json.dumps('images/' + part)}")
    if "train" not in present and present:
        lines.append(f"train: {json.dumps('images/' + present[0])}")
    if "val" not in present and present:
        lines.append(f"val: {json.dumps('images/' + ('train' if 'train' in present else present[0]))}")
    lines.append("names:")
    lines.extend(f"  {i}: {json.dumps(name)}" for i, name in enumerate(YOLO_CLASSES))
    return "\n".join(lines) + "\n"


# ---- import ------------------------------------------------------------------------------------

def detect_format(doc: Any) -> str | None:
    """'wb', 'coco' or 'label-studio' for a parsed JSON document; None when it is none of them."""
    if isinstance(doc, dict) and doc.get("format") == WB_FORMAT:
        return "wb"
    if isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list):
        return "coco"
    if isinstance(doc, list) and all(isinstance(t, dict) and "data" in t for t in doc):
        return "label-studio"
    return None


@dataclass
class CocoImage:
    """One COCO image entry with the boxes the file gives it (pixels)."""

    file_name: str
    width: int | None
    height: int | None
    sha256: str | None
    boxes: list[tuple[PixelBox | None, str | None, dict[str, Any]]] = field(default_factory=list)  # (box, category, ann)


def read_coco(doc: dict[str, Any]) -> list[CocoImage]:
    """The images of a COCO document with their boxes. Raises ValueError (one line) when malformed.

    A box that is not four numbers is kept as (None, category, annotation) so the caller can
    store it as rejected; an annotation of an image the file does not list is an error.
    """
    try:
        names = {int(c["id"]): str(c["name"]) for c in doc.get("categories") or []}
        images: dict[int, CocoImage] = {}
        for im in doc["images"]:
            images[int(im["id"])] = CocoImage(
                str(im["file_name"]), int(im["width"]) if im.get("width") is not None else None,
                int(im["height"]) if im.get("height") is not None else None,
                str(im["sha256"]) if im.get("sha256") else None)
        for ann in doc["annotations"]:
            image = images.get(int(ann["image_id"]))
            if image is None:
                raise ValueError(f"annotation {ann.get('id')} names image {ann['image_id']}, which the file does not list")
            try:
                box: PixelBox | None = coco_to_box(ann["bbox"])
            except (KeyError, TypeError, ValueError):
                box = None
            image.boxes.append((box, names.get(int(ann.get("category_id", -1))), ann))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a COCO detection file: {exc}") from None
    return list(images.values())


def coco_label(category: str | None, image_label: str | None) -> tuple[str | None, str | None]:
    """(box class, problem) for a COCO category: a wb class, or 'chest' (class from the image label)."""
    if category in CHEST_LABELS:
        return category, None
    if category == CHEST_LABEL:
        label = CHEST_CLASSES.get(image_label or "")
        return (label, None) if label else (None, f"the image has no label ({image_label!r}) to give the box its class")
    return None, f"unknown category {category!r} (known: {', '.join((*CHEST_LABELS, CHEST_LABEL))})"


def ls_task_paths(data: dict[str, Any]) -> list[str]:
    """Paths a Label Studio task's image URL names, most specific first (for matching to images).

    `/data/local-files/?d=<path under the document root>` -> that path; an uploaded file
    (`/data/upload/<project>/<8 hex>-<name>`) -> its name without Label Studio's prefix; any other
    URL -> its last path part.
    """
    url = str(data.get("image") or "")
    if not url:
        return []
    parsed = urlparse(url)
    if parsed.path.rstrip("/").endswith("/data/local-files") and "d" in parse_qs(parsed.query):
        return [unquote(parse_qs(parsed.query)["d"][0])]
    name = PurePosixPath(unquote(parsed.path)).name
    if "/data/upload/" in parsed.path and "-" in name and len(name.split("-", 1)[0]) == 8:
        return [name.split("-", 1)[1], name]
    return [name] if name else []
