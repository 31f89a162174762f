"""Pure converters between Label Studio results (percent) and wb's pixel boxes, and validation.

Box convention (pixels of the image file wb imported): x to the right, y down, origin at the
top-left corner of the top-left pixel; `x_min, y_min` is the box's top-left corner and
`x_max, y_max` its bottom-right corner as float edges, so a box over the whole W x H image is
(0, 0, W, H). An *inclusive* integer box (columns x0..x1, rows y0..y1, as in chest_boxes.csv)
is (x0, y0, x1 + 1, y1 + 1) here.

Label Studio rectangles are percentages of the image: x, y (top-left) and width, height in
0..100, with the size it saw as `original_width` / `original_height`.

The annotator draws one box labelled `chest` (CHEST_LABEL); its class (`normal chest` /
`pneumonia chest`, db.models.labels.CHEST_CLASSES, the detector's classes) comes from the image
label when wb judges it. Projects made before that carry the classes themselves as labels
(LEGACY_LABELS): their boxes still count when the class matches the image label.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from db.models.labels import CHEST_CLASSES, AnnotationStatus

BOX_FROM_NAME = "bbox"
IMAGE_TO_NAME = "image"
FLAG_LABEL_WRONG = "label looks wrong"
FLAG_NO_CHEST = "no usable chest"
KNOWN_FLAGS = (FLAG_LABEL_WRONG, FLAG_NO_CHEST)
CHEST_LABELS = tuple(CHEST_CLASSES.values())  # the box classes in the DB and the detector
CHEST_LABEL = "chest"  # the one label an annotator gives a box in Label Studio
LEGACY_LABELS = CHEST_LABELS  # what projects made before CHEST_LABEL asked the annotator to pick


@dataclass(frozen=True)
class PixelBox:
    """A box in pixels (float edges; see the module docstring)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min


def inclusive_to_box(x0: int, y0: int, x1: int, y1: int) -> PixelBox:
    """An inclusive integer box (covers columns x0..x1, rows y0..y1) -> edge box."""
    return PixelBox(float(x0), float(y0), float(x1) + 1.0, float(y1) + 1.0)


def percent_to_pixels(value: dict[str, Any], width: int, height: int) -> PixelBox:
    """LS rectangle value {x, y, width, height} in percent -> pixel box for a width x height image."""
    x, y = float(value["x"]), float(value["y"])
    w, h = float(value["width"]), float(value["height"])
    return PixelBox(x * width / 100.0, y * height / 100.0, (x + w) * width / 100.0, (y + h) * height / 100.0)


def pixels_to_percent(box: PixelBox, width: int, height: int) -> dict[str, Any]:
    """Pixel box -> LS rectangle value {x, y, width, height, rotation} in percent."""
    return {
        "x": box.x_min * 100.0 / width,
        "y": box.y_min * 100.0 / height,
        "width": box.width * 100.0 / width,
        "height": box.height * 100.0 / height,
        "rotation": 0,
    }


def rectangle_result(box: PixelBox, label: str, width: int, height: int, *, result_id: str = "wb-box") -> dict[str, Any]:
    """One LS `rectanglelabels` result (for predictions and tests)."""
    return {
        "id": result_id,
        "from_name": BOX_FROM_NAME,
        "to_name": IMAGE_TO_NAME,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {**pixels_to_percent(box, width, height), "rectanglelabels": [label]},
    }


def tolerance_px(size: int) -> float:
    """How far a box may stick out of the image and still count as inside (then clipped): 1 px or 0.5 %."""
    return max(1.0, 0.005 * size)


@dataclass
class Verdict:
    """What one LS annotation means for wb: status valid | rejected | skipped, box in pixels."""

    status: str
    reason: str | None = None
    box: PixelBox | None = None
    label: str | None = None
    flags: list[str] = field(default_factory=list)


def judge_annotation(annotation: dict[str, Any], *, width: int | None, height: int | None, image_label: str | None) -> Verdict:
    """Parse and validate one LS annotation dict (`result`, `was_cancelled`) against its image.

    width/height: the image as wb imported it (None = the task names no image wb knows).
    image_label: NORMAL | PNEUMONIA; a `chest` box gets the class CHEST_CLASSES[image_label] (the
    verdict's `label`); a legacy class label must equal it.
    Rules: exactly one chest box, a known label, not rotated, positive area, inside the image
    (within `tolerance_px`, then clipped), and the size LS saw equals the imported size.
    """
    results = annotation.get("result") or []
    flags = sorted(
        {c for r in results if r.get("type") == "choices" for c in (r.get("value") or {}).get("choices", [])}
    )
    if annotation.get("was_cancelled"):
        return Verdict(AnnotationStatus.SKIPPED, "skipped in Label Studio", flags=flags)
    if width is None or height is None:
        return Verdict(AnnotationStatus.REJECTED, "the task names no image wb knows", flags=flags)
    unknown_flags = [f for f in flags if f not in KNOWN_FLAGS]
    if unknown_flags:
        return Verdict(AnnotationStatus.REJECTED, f"unknown choice {unknown_flags[0]!r}", flags=flags)
    boxes = [r for r in results if r.get("type") == "rectanglelabels"]
    if not boxes and FLAG_NO_CHEST in flags:
        return Verdict(AnnotationStatus.SKIPPED, f"flagged {FLAG_NO_CHEST!r}", flags=flags)
    if len(boxes) != 1:
        return Verdict(AnnotationStatus.REJECTED, f"expected exactly one chest box, found {len(boxes)}", flags=flags)
    result = boxes[0]
    value = result.get("value") or {}
    labels = value.get("rectanglelabels") or []
    if len(labels) != 1:
        return Verdict(AnnotationStatus.REJECTED, f"the box needs exactly one label, has {len(labels)}", flags=flags)
    given = labels[0]
    if given not in (CHEST_LABEL, *LEGACY_LABELS):
        return Verdict(AnnotationStatus.REJECTED, f"unknown label {given!r} (expected {CHEST_LABEL!r})", label=given, flags=flags)
    label = CHEST_CLASSES.get(image_label or "") if given == CHEST_LABEL else given
    if label is None:
        return Verdict(AnnotationStatus.REJECTED, f"the image has no label ({image_label!r}) to give the box its class",
                       flags=flags)
    if result.get("from_name", BOX_FROM_NAME) != BOX_FROM_NAME:
        return Verdict(AnnotationStatus.REJECTED, f"box from unknown control {result.get('from_name')!r}", label=label,
                       flags=flags)
    if abs(float(value.get("rotation") or 0)) > 1e-6:
        return Verdict(AnnotationStatus.REJECTED, f"rotated box ({value['rotation']} degrees)", label=label, flags=flags)
    seen = (result.get("original_width"), result.get("original_height"))
    if seen[0] is not None and seen[1] is not None and (int(seen[0]), int(seen[1])) != (width, height):
        return Verdict(AnnotationStatus.REJECTED, f"Label Studio saw {seen[0]}x{seen[1]} px, wb imported {width}x{height} px",
                       label=label, flags=flags)
    try:
        raw = percent_to_pixels(value, width, height)
    except (KeyError, TypeError, ValueError):
        return Verdict(AnnotationStatus.REJECTED, "box without x/y/width/height", label=label, flags=flags)
    verdict = check_box(raw, width, height)
    if verdict is not None:
        return Verdict(AnnotationStatus.REJECTED, verdict, box=raw, label=label, flags=flags)
    box = clip_box(raw, width, height)
    if image_label is not None and CHEST_CLASSES.get(image_label) != label:
        why = f"box label {given!r} disagrees with the image label {image_label} (expected {CHEST_CLASSES.get(image_label)!r})"
        if FLAG_LABEL_WRONG in flags:
            why += f"; flagged {FLAG_LABEL_WRONG!r}: review the image label"
        return Verdict(AnnotationStatus.REJECTED, why, box=box, label=label, flags=flags)
    return Verdict(AnnotationStatus.VALID, None, box=box, label=label, flags=flags)


def check_box(box: PixelBox, width: int, height: int) -> str | None:
    """None when the box has positive area and lies inside the image (within tolerance), else why not."""
    if not box.width > 0 or not box.height > 0:
        return f"box has no area ({box.width:.1f} x {box.height:.1f} px)"
    tx, ty = tolerance_px(width), tolerance_px(height)
    if box.x_min < -tx or box.y_min < -ty or box.x_max > width + tx or box.y_max > height + ty:
        return (
            f"box ({box.x_min:.1f}, {box.y_min:.1f}, {box.x_max:.1f}, {box.y_max:.1f}) lies outside "
            f"the {width}x{height} px image"
        )
    return None


def clip_box(box: PixelBox, width: int, height: int) -> PixelBox:
    return PixelBox(max(0.0, box.x_min), max(0.0, box.y_min), min(float(width), box.x_max), min(float(height), box.y_max))


def config_labels(label_config: str) -> dict[str, list[str]]:
    """Labels per control in a LS label config: {"bbox": [...], "flags": [...]}. Raises ValueError."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    out: dict[str, list[str]] = {}
    for el in root.iter():
        name = el.get("name")
        if el.tag in ("RectangleLabels", "Choices") and name:
            out[name] = [value for c in el if c.tag in ("Label", "Choice") and (value := c.get("value")) is not None]
    return out


def box_label_style(box_labels: list[str]) -> str | None:
    """'chest' for the one-label config, 'legacy' for a per-class config, None for anything else."""
    if sorted(box_labels) == [CHEST_LABEL]:
        return "chest"
    if sorted(box_labels) == sorted(LEGACY_LABELS):
        return "legacy"
    return None


def check_config_labels(label_config: str) -> str | None:
    """None when the config's chest-box labels fit wb (['chest'], or the legacy classes), else what is wrong."""
    try:
        labels = config_labels(label_config)
    except ValueError as exc:
        return str(exc)
    if BOX_FROM_NAME not in labels:
        return f"no RectangleLabels named {BOX_FROM_NAME!r}"
    if box_label_style(labels[BOX_FROM_NAME]) is None:
        return f"chest box labels are {sorted(labels[BOX_FROM_NAME])}, wb expects [{CHEST_LABEL!r}]"
    return None
