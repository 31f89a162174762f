"""Percent <-> pixel conversion, LS result parsing and validation, against hand-computed values."""
from __future__ import annotations

import pytest

from annotations import LABEL_CONFIG
from annotations.client import annotated_query, format_ls_time, parse_ls_time, updated_after_query
from annotations.convert import (
    PixelBox,
    box_label_style,
    check_config_labels,
    config_labels,
    inclusive_to_box,
    judge_annotation,
    percent_to_pixels,
    pixels_to_percent,
    rectangle_result,
)
from db.models.labels import CHEST_CLASSES, DETECTOR_CLASSES


def rect(x, y, w, h, label="normal chest", ow=200, oh=100, **extra):
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label], **extra}
    return {"from_name": "bbox", "to_name": "image", "type": "rectanglelabels",
            "original_width": ow, "original_height": oh, "value": value}


def judge(results, *, width=200, height=100, image_label="NORMAL", cancelled=False):
    return judge_annotation({"result": results, "was_cancelled": cancelled}, width=width, height=height,
                            image_label=image_label)


def test_percent_to_pixels_non_square_hand_computed():
    # 200 x 100 image: x 10 % -> 20 px, width 50 % -> 100 px; y 20 % -> 20 px, height 25 % -> 25 px
    assert percent_to_pixels({"x": 10, "y": 20, "width": 50, "height": 25}, 200, 100) == PixelBox(20, 20, 120, 45)


def test_pixels_to_percent_hand_computed_and_full_image_is_100_percent():
    assert pixels_to_percent(PixelBox(20, 20, 120, 45), 200, 100) == {
        "x": 10.0, "y": 20.0, "width": 50.0, "height": 25.0, "rotation": 0}
    full = pixels_to_percent(PixelBox(0, 0, 833, 686), 833, 686)
    assert (full["x"], full["y"], full["width"], full["height"]) == (0, 0, 100, 100)


@pytest.mark.parametrize("box,size", [
    (PixelBox(144, 54, 696, 617), (833, 686)),  # a real sample box, non-square image
    (PixelBox(0, 0, 387, 256), (387, 256)),  # touches all four borders
    (PixelBox(0.5, 3.25, 1.5, 197), (336, 197)),  # sub-pixel, touching the bottom border
])
def test_round_trip_pixels_percent_pixels(box, size):
    back = percent_to_pixels(pixels_to_percent(box, *size), *size)
    for a, b in zip((back.x_min, back.y_min, back.x_max, back.y_max), (box.x_min, box.y_min, box.x_max, box.y_max), strict=True):
        assert a == pytest.approx(b, abs=1e-9)


def test_inclusive_csv_box_becomes_edges():
    # inclusive columns 0..W-1 cover the whole width W
    assert inclusive_to_box(0, 0, 386, 255) == PixelBox(0, 0, 387, 256)
    assert inclusive_to_box(144, 54, 695, 616) == PixelBox(144, 54, 696, 617)


def test_rectangle_result_shape():
    r = rectangle_result(PixelBox(20, 20, 120, 45), "pneumonia chest", 200, 100)
    assert r["type"] == "rectanglelabels" and r["from_name"] == "bbox" and r["to_name"] == "image"
    assert (r["original_width"], r["original_height"]) == (200, 100)
    assert r["value"]["rectanglelabels"] == ["pneumonia chest"] and r["value"]["x"] == 10.0


def test_valid_box_in_pixels():
    v = judge([rect(10, 20, 50, 25)])
    assert (v.status, v.reason, v.label) == ("valid", None, "normal chest")
    assert v.box == PixelBox(20, 20, 120, 45)


def test_box_touching_border_within_tolerance_is_clipped():
    # 100.3 % of 200 px = 200.6 px: inside the 1 px tolerance, clipped to the edge
    v = judge([rect(0, 0, 100.3, 100)])
    assert v.status == "valid" and v.box == PixelBox(0, 0, 200, 100)


def test_box_outside_the_image_is_rejected():
    v = judge([rect(90, 10, 30, 20)])  # right edge at 120 % = 240 px of 200
    assert v.status == "rejected" and "outside" in v.reason


@pytest.mark.parametrize("results,why", [
    ([], "exactly one chest box, found 0"),
    ([rect(10, 10, 20, 20), rect(50, 10, 20, 20)], "exactly one chest box, found 2"),
    ([rect(10, 10, 20, 20, label="lung")], "unknown label 'lung'"),
    ([rect(10, 10, 0, 20)], "no area"),
    ([rect(10, 10, 20, 20, ow=400, oh=200)], "Label Studio saw 400x200 px, wb imported 200x100 px"),
    ([rect(10, 10, 20, 20, label="pneumonia chest")], "disagrees with the image label NORMAL"),
])
def test_rejections_carry_reasons(results, why):
    v = judge(results)
    assert v.status == "rejected"
    assert why in v.reason


def test_rotated_box_is_rejected():
    r = rect(10, 10, 20, 20)
    r["value"]["rotation"] = 15
    assert judge([r]).status == "rejected"


def test_skip_and_no_usable_chest_flag_are_skipped():
    assert judge([], cancelled=True).status == "skipped"
    flag = {"from_name": "flags", "to_name": "image", "type": "choices", "value": {"choices": ["no usable chest"]}}
    v = judge([flag])
    assert v.status == "skipped" and "no usable chest" in v.reason and v.flags == ["no usable chest"]


def test_label_wrong_flag_is_kept_with_the_valid_box():
    flag = {"type": "choices", "from_name": "flags", "value": {"choices": ["label looks wrong"]}}
    v = judge([rect(10, 20, 50, 25), flag])
    assert v.status == "valid" and v.flags == ["label looks wrong"]


def test_task_without_known_image_is_rejected():
    v = judge_annotation({"result": [rect(10, 10, 20, 20)]}, width=None, height=None, image_label=None)
    assert v.status == "rejected" and "no image wb knows" in v.reason


def test_chest_box_gets_its_class_from_the_image_label():
    # the annotator draws `chest`; the DB gets the detector's class for the image label
    normal = judge([rect(10, 20, 50, 25, label="chest")], image_label="NORMAL")
    sick = judge([rect(10, 20, 50, 25, label="chest")], image_label="PNEUMONIA")
    assert (normal.status, normal.label, normal.box) == ("valid", "normal chest", PixelBox(20, 20, 120, 45))
    assert (sick.status, sick.label) == ("valid", "pneumonia chest")
    # legacy projects: the class label still counts when it matches, and is rejected when it does not
    assert judge([rect(10, 20, 50, 25, label="pneumonia chest")], image_label="PNEUMONIA").status == "valid"
    wrong = judge([rect(10, 20, 50, 25, label="pneumonia chest")], image_label="NORMAL")
    assert wrong.status == "rejected" and "'pneumonia chest' disagrees with the image label NORMAL" in wrong.reason
    two = judge([rect(10, 20, 50, 25, label="chest"), rect(5, 5, 10, 10, label="chest")])
    assert two.status == "rejected" and "found 2" in two.reason


def test_shipped_label_config_has_one_chest_label_capped_at_one_box():
    import xml.etree.ElementTree as ET

    text = LABEL_CONFIG.read_text()
    assert check_config_labels(text) is None
    assert config_labels(text)["bbox"] == ["chest"] and box_label_style(["chest"]) == "chest"
    (label,) = ET.fromstring(text).iter("Label")
    assert (label.get("maxUsages"), label.get("hotkey")) == ("1", "1")
    assert "$wb_feedback" in text and "$wb_label" in text  # what wb tells the annotator, beside the image
    assert DETECTOR_CLASSES == ("background", "normal chest", "pneumonia chest")
    assert box_label_style(list(CHEST_CLASSES.values())) == "legacy"


def test_label_config_problems_are_named():
    text = LABEL_CONFIG.read_text().replace('value="chest"', 'value="sick chest"')
    assert "wb expects ['chest']" in check_config_labels(text)
    assert "not well-formed" in check_config_labels("<View><Image")
    assert "no RectangleLabels" in check_config_labels("<View/>")


def test_ls_time_filter_format():
    moment = parse_ls_time("2026-11-26T01:33:36.668123Z")
    assert format_ls_time(moment) == "2026-11-26T01:33:36.668123Z"
    assert '"value": "2026-11-26T01:33:26.668123Z"' in updated_after_query("2026-11-26T01:33:36.668123Z", 10)
    assert "filter:tasks:total_annotations" in annotated_query()


@pytest.mark.parametrize("rel_path,source_split,shown", [
    ("chest_xray/test/NORMAL/IM-0001-0001.jpeg", "test", "NORMAL/IM-0001-0001.jpeg"),
    ("CellData/chest_xray/train/PNEUMONIA/BACTERIA-1-2.jpeg", "train", "PNEUMONIA/BACTERIA-1-2.jpeg"),
    ("chest_xray/train/train/NORMAL/x.jpeg", "train", "NORMAL/x.jpeg"),  # the innermost split folder
    ("odd/NORMAL/x.jpeg", "val", "NORMAL/x.jpeg"),
])
def test_shown_path_leaves_out_the_datasets_split_folder(rel_path, source_split, shown):
    from annotations.sync import shown_path

    assert shown_path(rel_path, source_split) == shown


def test_feedback_text_says_why_and_clears_when_fixed():
    from annotations.feedback import ACCEPTED, AnnotationState, feedback_text

    bad = AnnotationState(7, "ann@lab.org", "rejected", "expected exactly one chest box, found 2")
    good = AnnotationState(7, "ann@lab.org", "valid", None)
    text = feedback_text([bad], None)
    assert text == "wb rejected this annotation: expected exactly one chest box, found 2. Fix the box, then press Update."
    assert feedback_text([good], text) == ACCEPTED  # fixed: the annotator sees it was taken
    assert feedback_text([good], ACCEPTED) == ACCEPTED
    assert feedback_text([good], None) == ""  # never rejected: nothing to say
    assert feedback_text([AnnotationState(7, "a", "deleted", "deleted in Label Studio")], text) == ""
    two = feedback_text([bad, AnnotationState(8, "b@lab.org", "valid", None)], None)
    assert "annotation 7 by ann@lab.org" in two and "found 2" in two
