"""Pure converters between wb's pixel boxes and the box conventions other tools use.

wb (annotations/convert.py): pixels of the image file, float edges, (x_min, y_min, x_max, y_max);
the whole W x H image is (0, 0, W, H).

| format | numbers | the whole W x H image | used by |
|---|---|---|---|
| COCO | [x, y, width, height]: pixels, top-left corner + size | [0, 0, W, H] | pycocotools, Detectron2, FiftyOne |
| Pascal VOC | xmin, ymin, xmax, ymax: 1-based pixels, both ends included | 1, 1, W, H | VOC devkit, Detectron2, FiftyOne |
| YOLO | class cx cy w h, each divided by the image width or height | 0.5 0.5 1 1 | Ultralytics |

COCO's corner-plus-size is wb's box with the size instead of the far corner, so nothing is
shifted. VOC numbers pixels from 1 and includes the last one: the pixel columns 0..W-1 that an
edge box (0, W) covers are xmin=1..xmax=W, so xmin = x_min + 1 and xmax = x_max (Detectron2
reads VOC the same way: it subtracts 1 from xmin/ymin only). A fractional box stays fractional
in every format (VOC files usually hold integers; readers that parse floats read both).
"""
from __future__ import annotations

from collections.abc import Sequence

from annotations.convert import PixelBox


def box_to_coco(box: PixelBox) -> list[float]:
    """wb box -> COCO bbox [x, y, width, height] (pixels)."""
    return [box.x_min, box.y_min, box.width, box.height]


def coco_to_box(bbox: Sequence[float]) -> PixelBox:
    """COCO bbox [x, y, width, height] -> wb box. Raises ValueError unless it has four numbers."""
    if len(bbox) != 4:
        raise ValueError(f"a COCO bbox has 4 numbers, this one {len(bbox)}")
    x, y, w, h = (float(v) for v in bbox)
    return PixelBox(x, y, x + w, y + h)


def box_to_voc(box: PixelBox) -> tuple[float, float, float, float]:
    """wb box -> VOC (xmin, ymin, xmax, ymax): 1-based, both ends included."""
    return box.x_min + 1.0, box.y_min + 1.0, box.x_max, box.y_max


def voc_to_box(xmin: float, ymin: float, xmax: float, ymax: float) -> PixelBox:
    """VOC (xmin, ymin, xmax, ymax), 1-based and inclusive -> wb box."""
    return PixelBox(float(xmin) - 1.0, float(ymin) - 1.0, float(xmax), float(ymax))


def box_to_yolo(box: PixelBox, width: int, height: int) -> tuple[float, float, float, float]:
    """wb box on a width x height image -> YOLO (cx, cy, w, h), each a fraction of the image side."""
    return ((box.x_min + box.x_max) / 2.0 / width, (box.y_min + box.y_max) / 2.0 / height,
            box.width / width, box.height / height)


def yolo_to_box(cx: float, cy: float, w: float, h: float, width: int, height: int) -> PixelBox:
    """YOLO (cx, cy, w, h) as fractions -> wb box on a width x height image."""
    return PixelBox((cx - w / 2.0) * width, (cy - h / 2.0) * height, (cx + w / 2.0) * width, (cy + h / 2.0) * height)


def number_text(value: float) -> str:
    """A coordinate as text that reads back exactly: '12' for a whole number, else repr ('12.25')."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
