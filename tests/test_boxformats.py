"""Pure box converters and file builders/parsers (COCO, VOC, YOLO, Label Studio export), hand-computed."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import yaml

from annotations.boxfile import BoxRecord
from annotations.boxformats import (
    box_to_coco,
    box_to_voc,
    box_to_yolo,
    coco_to_box,
    number_text,
    voc_to_box,
    yolo_to_box,
)
from annotations.convert import PixelBox, inclusive_to_box
from annotations.exchange import (
    ExportItem,
    coco_document,
    coco_label,
    detect_format,
    flat_name,
    ls_task_paths,
    read_coco,
    voc_xml,
    yolo_data_yaml,
    yolo_line,
)


def test_coco_is_the_corner_and_the_size():
    assert box_to_coco(PixelBox(10, 20, 110, 70)) == [10, 20, 100, 50]
    assert coco_to_box([10, 20, 100, 50]) == PixelBox(10, 20, 110, 70)
    assert box_to_coco(PixelBox(0, 0, 640, 480)) == [0, 0, 640, 480]  # the whole image
    assert coco_to_box([0.5, 1.25, 2.0, 3.5]) == PixelBox(0.5, 1.25, 2.5, 4.75)
    with pytest.raises(ValueError, match="4 numbers"):
        coco_to_box([1, 2, 3])


def test_voc_counts_pixels_from_one_and_includes_the_last():
    assert box_to_voc(PixelBox(0, 0, 640, 480)) == (1, 1, 640, 480)  # the whole image
    # columns 5..14 and rows 7..9 (inclusive, 0-based) are VOC's 6..15 and 8..10
    assert box_to_voc(inclusive_to_box(5, 7, 14, 9)) == (6, 8, 15, 10)
    assert voc_to_box(6, 8, 15, 10) == PixelBox(5, 7, 15, 10)
    assert voc_to_box(*box_to_voc(PixelBox(3.25, 4.5, 9.75, 12.0))) == PixelBox(3.25, 4.5, 9.75, 12.0)


def test_yolo_is_the_centre_and_size_as_fractions():
    assert box_to_yolo(PixelBox(0, 0, 640, 480), 640, 480) == (0.5, 0.5, 1.0, 1.0)
    assert box_to_yolo(PixelBox(64, 48, 192, 144), 640, 480) == (0.2, 0.2, 0.2, 0.2)
    got = yolo_to_box(0.2, 0.2, 0.2, 0.2, 640, 480)
    assert (got.x_min, got.y_min, got.x_max, got.y_max) == pytest.approx((64, 48, 192, 144))
    back = yolo_to_box(*box_to_yolo(PixelBox(33.3, 12.7, 500.1, 401.9), 833, 686), 833, 686)
    for a, b in zip((back.x_min, back.y_min, back.x_max, back.y_max), (33.3, 12.7, 500.1, 401.9), strict=True):
        assert abs(a - b) < 1e-9


def test_number_text_reads_back_exactly():
    assert (number_text(12.0), number_text(12.25), number_text(0.1)) == ("12", "12.25", "0.1")
    assert float(number_text(1 / 3)) == 1 / 3


BOX = PixelBox(10, 20, 110, 70)


def _item(box=BOX, label="normal chest", rel="chest_xray/train/NORMAL/a.jpeg", part="train"):
    record = BoxRecord(image=rel, sha256="ab" * 32, width=200, height=100, label=label, x_min=box.x_min,
                       y_min=box.y_min, x_max=box.x_max, y_max=box.y_max, origin="human", annotator="ann@lab.org")
    return ExportItem(record, image_id=7, annotation_id=3, abs_path="/data/" + rel, part=part, channels=1)


def test_coco_document_shape():
    doc = coco_document([_item(), _item(PixelBox(0, 0, 200, 100), "pneumonia chest")])
    assert [c["name"] for c in doc["categories"]] == ["normal chest", "pneumonia chest"]
    ann = doc["annotations"][0]
    assert (ann["bbox"], ann["area"], ann["category_id"], ann["iscrowd"]) == ([10, 20, 100, 50], 5000, 1, 0)
    assert doc["annotations"][1]["category_id"] == 2 and doc["images"][0]["sha256"] == "ab" * 32
    assert detect_format(doc) == "coco"
    (image, *_rest) = read_coco({**doc, "annotations": doc["annotations"][:1], "images": doc["images"][:1]})
    assert image.file_name == "chest_xray/train/NORMAL/a.jpeg" and image.boxes[0][:2] == (PixelBox(10, 20, 110, 70),
                                                                                         "normal chest")


def test_read_coco_refuses_an_annotation_of_an_unlisted_image_and_keeps_a_bad_bbox():
    doc = {"images": [{"id": 1, "file_name": "a.jpeg", "width": 4, "height": 4}], "categories": [{"id": 1, "name": "chest"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2]}]}
    (image,) = read_coco(doc)
    assert image.boxes[0][0] is None and image.boxes[0][1] == "chest"
    with pytest.raises(ValueError, match="names image 9"):
        read_coco({**doc, "annotations": [{"id": 2, "image_id": 9, "bbox": [0, 0, 1, 1]}]})
    with pytest.raises(ValueError, match="not a COCO detection file"):
        read_coco({"images": [{"file_name": "x"}], "annotations": []})


def test_coco_label_takes_wb_classes_or_chest():
    assert coco_label("pneumonia chest", "NORMAL") == ("pneumonia chest", None)  # the caller compares with the image
    assert coco_label("chest", "PNEUMONIA") == ("pneumonia chest", None)
    assert coco_label("lung", "NORMAL")[1].startswith("unknown category 'lung'")


def test_voc_xml_reads_back():
    root = ET.fromstring(voc_xml(_item(PixelBox(10.5, 20, 110, 70))))
    assert root.findtext("filename") == "chest_xray__train__NORMAL__a.jpeg" == flat_name("chest_xray/train/NORMAL/a.jpeg")
    assert (root.findtext("size/width"), root.findtext("size/height"), root.findtext("size/depth")) == ("200", "100", "1")
    bnd = root.find("object/bndbox")
    assert [bnd.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")] == ["11.5", "21", "110", "70"]
    assert root.findtext("object/name") == "normal chest"


def test_yolo_line_and_data_yaml():
    assert yolo_line(_item(PixelBox(20, 10, 100, 60), "pneumonia chest").record) == "1 0.3 0.35 0.4 0.5\n"
    data = yaml.safe_load(yolo_data_yaml("/out/y", ["test", "train", "val"]))
    assert data == {"path": "/out/y", "train": "images/train", "val": "images/val", "test": "images/test",
                    "names": {0: "normal chest", 1: "pneumonia chest"}}
    only = yaml.safe_load(yolo_data_yaml("/o", ["all"]))
    assert (only["train"], only["val"]) == ("images/all", "images/all")


def test_detect_format_and_label_studio_task_paths():
    assert detect_format({"format": "wb-chest-boxes", "boxes": []}) == "wb"
    assert detect_format([{"id": 1, "data": {}, "annotations": []}]) == "label-studio"
    assert detect_format({"boxes": []}) is None and detect_format([1, 2]) is None
    assert ls_task_paths({"image": "/data/local-files/?d=kermany/chest_xray/test/NORMAL/IM%201.jpeg"}) == [
        "kermany/chest_xray/test/NORMAL/IM 1.jpeg"]
    assert ls_task_paths({"image": "/data/upload/3/1a2b3c4d-IM-0001-0001.jpeg"}) == [
        "IM-0001-0001.jpeg", "1a2b3c4d-IM-0001-0001.jpeg"]
    assert ls_task_paths({"image": "https://x.org/img/IM-5.jpeg?sig=1"}) == ["IM-5.jpeg"]
    assert ls_task_paths({}) == []
