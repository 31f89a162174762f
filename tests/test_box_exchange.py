"""Boxes travel between tools: wb -> COCO / VOC / YOLO -> wb, and imports of COCO and Label
Studio JSON exports, through the CLI on the repo sample (no server)."""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from annotations.boxformats import voc_to_box, yolo_to_box
from annotations.convert import PixelBox, rectangle_result
from db.models import Annotation, Image, SplitMember
from db.models.labels import CHEST_CLASSES
from tests.conftest import Cli, load_db


def _boxes(ws) -> dict[str, tuple[str, float, float, float, float, str]]:
    """rel path -> (label, x_min, y_min, x_max, y_max, origin) of the valid boxes."""
    with ws.db.session() as s:
        return {im.rel_path: (a.box_label, a.x_min, a.y_min, a.x_max, a.y_max, a.origin)
                for a, im in s.execute(select(Annotation, Image).join(Image).where(Annotation.status == "valid"))}


def _fresh(tmp_path, imported_sample_db, monkeypatch, name="other"):
    """A second workspace with the sample imported and no boxes (e.g. a colleague's)."""
    from workbench.workspace import Workspace

    root = tmp_path / name
    root.mkdir()
    shutil.copyfile(imported_sample_db, root / "wb.db")
    monkeypatch.setenv("WB_WORKSPACE", str(root))
    monkeypatch.delenv("WB_DB", raising=False)  # its own SQLite file, whatever the test's backend
    return Workspace.from_options()


def _same_boxes(a: dict, b: dict, tol: float = 1e-6) -> None:
    assert sorted(a) == sorted(b)
    for path in a:
        assert a[path][0] == b[path][0], path
        assert max(abs(x - y) for x, y in zip(a[path][1:5], b[path][1:5], strict=True)) <= tol, (path, a[path], b[path])


def _shift_boxes(ws) -> None:
    """Label the sample's boxes (the conftest helper leaves the class out) and make them fractional,
    so round trips are tested off the pixel grid."""
    with ws.db.session() as s:
        for a, im in s.execute(select(Annotation, Image).join(Image)):
            a.x_min, a.y_min, a.x_max, a.y_max = a.x_min + 0.37, a.y_min + 1 / 3, a.x_max - 0.125, a.y_max - 2 / 7
            a.box_label = CHEST_CLASSES[im.label]


@pytest.mark.backends
def test_wb_to_coco_to_wb_gives_the_same_boxes(cli, boxed_ws, imported_sample_db, tmp_path, monkeypatch):
    from pycocotools.coco import COCO

    _shift_boxes(boxed_ws)
    source = _boxes(boxed_ws)
    out = cli.json("annotations", "export", "--format", "coco", str(tmp_path / "boxes.json"))
    assert (out["format"], out["boxes"]) == ("coco", len(source)) and len(source) == 48

    coco = COCO(str(tmp_path / "boxes.json"))  # pycocotools' own loader
    assert len(coco.getImgIds()) == 48 and len(coco.getAnnIds()) == 48
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["normal chest", "pneumonia chest"]
    first = coco.loadAnns(coco.getAnnIds(imgIds=[coco.getImgIds()[0]]))[0]
    image = coco.loadImgs([first["image_id"]])[0]
    assert first["area"] == first["bbox"][2] * first["bbox"][3] and image["file_name"] in source

    other = _fresh(tmp_path, imported_sample_db, monkeypatch)
    into = Cli()
    got = into.json("annotations", "import", str(tmp_path / "boxes.json"))
    assert (got["format"], got["created"], got["rejected"], got["unmatched"]) == ("coco", 48, 0, 0)
    _same_boxes(source, _boxes(other))
    assert {v[5] for v in _boxes(other).values()} == {"machine"}  # origin travels as an extra key
    again = into.json("annotations", "import", str(tmp_path / "boxes.json"))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 48)
    # and back to wb's own format: still the same boxes
    into.json("annotations", "export", str(tmp_path / "again.json"))
    third = _fresh(tmp_path, imported_sample_db, monkeypatch, "third")
    Cli().json("annotations", "import", str(tmp_path / "again.json"))
    _same_boxes(source, _boxes(third))


def test_voc_export_is_one_xml_per_image(cli, boxed_ws, tmp_path):
    _shift_boxes(boxed_ws)
    source = _boxes(boxed_ws)
    out = cli.json("annotations", "export", "--format", "voc", str(tmp_path / "voc"))
    assert out["boxes"] == 48 and sum(out["by_part"].values()) == 48
    files = sorted((tmp_path / "voc" / "Annotations").glob("*.xml"))
    assert len(files) == 48
    read = {}
    for f in files:
        root = ET.parse(f).getroot()
        path = root.findtext("path")
        rel = next(p for p in source if path.endswith("/" + p))
        bnd = root.find("object/bndbox")
        box = voc_to_box(*(float(bnd.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")))
        read[rel] = (root.findtext("object/name"), box.x_min, box.y_min, box.x_max, box.y_max)
        link = tmp_path / "voc" / "JPEGImages" / root.findtext("filename")
        assert link.is_symlink() and os.path.samefile(link, path)
        assert root.findtext("size/depth") in ("1", "3")
    _same_boxes(source, read)
    res = cli.run("annotations", "export", "--format", "voc", str(tmp_path / "voc"), code=1)
    assert "is not empty" in res.output


def test_yolo_export_for_ultralytics(cli, boxed_ws, tmp_path):
    _shift_boxes(boxed_ws)
    source = _boxes(boxed_ws)
    out = cli.json("annotations", "export", "--format", "yolo", str(tmp_path / "yolo"))
    with boxed_ws.db.session() as s:
        part_of = {im.rel_path: m.part for m, im in s.execute(select(SplitMember, Image).join(Image))}
    assert out["split"] == "demo" and out["by_part"] == {p: sum(part_of[r] == p for r in source) for p in out["by_part"]}
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["names"] == {0: "normal chest", 1: "pneumonia chest"} and data["path"] == str((tmp_path / "yolo").resolve())
    assert (tmp_path / "yolo" / "classes.txt").read_text() == "normal chest\npneumonia chest\n"
    read = {}
    with boxed_ws.db.session() as s:
        size = {im.rel_path: (im.width, im.height) for im in s.scalars(select(Image))}
    for rel in source:
        part, name = part_of[rel], rel.replace("/", "__")
        assert (tmp_path / "yolo" / data[part] / name).is_symlink()
        (cls, *numbers), = [line.split() for line in (tmp_path / "yolo" / "labels" / part / f"{Path(name).stem}.txt")
                            .read_text().splitlines()]
        box = yolo_to_box(*map(float, numbers), *size[rel])
        read[rel] = (data["names"][int(cls)], box.x_min, box.y_min, box.x_max, box.y_max)
    _same_boxes(source, read)


@pytest.mark.backends
def test_coco_import_checks_each_box(cli, ws, imported_sample_db, tmp_path):
    load_db(ws, imported_sample_db)
    with ws.db.session() as s:
        ims = list(s.scalars(select(Image).where(Image.status == "ok", Image.duplicate_of_id.is_(None)).order_by(Image.id)))
    normal = [im for im in ims if im.label == "NORMAL"]
    sick = [im for im in ims if im.label == "PNEUMONIA"]
    n0, n1, n2, s0 = normal[0], normal[1], normal[2], sick[0]
    images = [{"id": i, "file_name": im.rel_path, "width": im.width, "height": im.height}
              for i, im in enumerate((n0, n1, n2, s0), start=1)]
    images[2]["width"] += 1  # a resized copy
    images.append({"id": 9, "file_name": "elsewhere/x.jpeg", "width": 5, "height": 5})
    doc = {"images": images, "categories": [{"id": 1, "name": "chest"}, {"id": 2, "name": "lung"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1.5, 2, 50, 60]},  # 'chest': class from the image
               {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 2, 50, 60]},  # unknown category
               {"id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 2, 50, 60]},  # size differs
               {"id": 4, "image_id": 4, "category_id": 1, "bbox": [1, 2, 50, 60]},
               {"id": 5, "image_id": 4, "category_id": 1, "bbox": [3, 2, 50, 60]},  # two boxes for one image
               {"id": 6, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2]},  # not in the workspace
           ]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    out = cli.json("annotations", "import", str(tmp_path / "c.json"))
    assert (out["created"], out["rejected"], out["unmatched"], out["unmatched_images"]) == (4, 3, 1, ["elsewhere/x.jpeg"])
    with ws.db.session() as s:
        rows = {a.image_id: a for a in s.scalars(select(Annotation))}
    assert (rows[n0.id].status, rows[n0.id].box_label, rows[n0.id].x_min, rows[n0.id].x_max) == (
        "valid", "normal chest", 1.5, 51.5)
    assert "unknown category 'lung'" in rows[n1.id].reason
    assert f"file says {n2.width + 1}x{n2.height} px" in rows[n2.id].reason
    assert "holds 2 boxes" in rows[s0.id].reason and rows[s0.id].raw["annotations"] == [4, 5]
    assert "not in the workspace: elsewhere/x.jpeg" in cli.run("annotations", "import", str(tmp_path / "c.json")).stdout
    res = cli.run("annotations", "import", "--format", "label-studio", str(tmp_path / "c.json"), code=1)
    assert "is not a label-studio file" in res.output


@pytest.mark.backends
def test_label_studio_export_import(cli, ws, imported_sample_db, tmp_path):
    """A Label Studio JSON export (the shape `GET /api/projects/ID/export?exportType=JSON` gives):
    judged like a pull, two annotators on one task resolved by the policy, conflicts listed."""
    load_db(ws, imported_sample_db)
    with ws.db.session() as s:
        ims = list(s.scalars(select(Image).where(Image.status == "ok", Image.duplicate_of_id.is_(None)).order_by(Image.id)))
    a, b, c = ims[:3]

    def ann(i, im, box, user, updated, size=None):
        w, h = size or (im.width, im.height)
        return {"id": i, "completed_by": user, "result": [rectangle_result(box, "chest", w, h)], "was_cancelled": False,
                "created_at": updated, "updated_at": updated, "task": 0}

    def url(im):
        return f"/data/local-files/?d=sample/kermany/{im.rel_path}"

    wide, narrow = PixelBox(10, 10, a.width - 10, a.height - 10), PixelBox(10, 10, a.width / 2, a.height - 10)
    tasks = [
        {"id": 11, "data": {"image": url(a), "wb_image_id": 999, "wb_path": "x/y.jpeg"},  # another workspace's id
         "annotations": [ann(101, a, wide, 2, "2026-01-01T10:00:00.000000Z"),
                         ann(102, a, narrow, 3, "2026-01-01T11:00:00.000000Z")]},
        {"id": 12, "data": {"image": "/data/upload/1/0a1b2c3d-" + b.rel_path.rsplit("/", 1)[1]},
         "annotations": [ann(103, b, PixelBox(5, 5, 50, 50), {"id": 2, "email": "ann@lab.org"}, "2026-01-01T10:00:00Z")]},
        {"id": 13, "data": {"image": url(c)}, "annotations": [ann(104, c, PixelBox(1, 1, 9, 9), 2, "t", size=(10, 10))]},
        {"id": 14, "data": {"image": "/data/local-files/?d=nowhere/z.jpeg"},
         "annotations": [ann(105, c, PixelBox(1, 1, 9, 9), 2, "t")]},
        {"id": 15, "data": {"image": url(c)}, "annotations": []},
    ]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    out = cli.json("annotations", "import", str(tmp_path / "ls.json"))
    assert (out["format"], out["boxes"], out["created"], out["rejected"], out["unmatched"]) == ("label-studio", 4, 4, 1, 1)
    with ws.db.session() as s:
        rows = {r.ls_annotation_id: r for r in s.scalars(select(Annotation))}
    assert (rows[101].image_id, rows[102].image_id, rows[103].image_id) == (a.id, a.id, b.id)
    assert (rows[102].status, rows[101].status) == ("valid", "superseded")  # newest by default
    assert rows[101].reason == "policy 'newest' kept annotation 102 by user 3"
    assert (rows[103].annotator, rows[101].annotator) == ("ann@lab.org", "user 2")
    assert rows[104].status == "rejected" and "Label Studio saw 10x10 px" in rows[104].reason
    conflicts = cli.json("annotations", "conflicts")
    assert (conflicts["tasks"], conflicts["pairs"]) == (1, 1)
    (pair,) = conflicts["conflicts"]
    assert (pair["ls_task_id"], pair["kept"], pair["link"], pair["source"]) == (11, 102, None, "file")
    assert pair["reason"].startswith("IoU 0.") and (pair["a"]["annotator"], pair["b"]["annotator"]) == ("user 2", "user 3")
    status = cli.json("status")["annotations"]
    assert (status["superseded"], status["conflicts"]["tasks"], status["conflicts"]["policy"]) == (1, 1, "newest")
    assert "annotators disagree on 1 task(s)" in cli.run("status").stdout

    first = cli.json("annotations", "policy", "first")
    assert (first["policy"], first["tasks"], first["annotations_changed"]) == ("first", 1, 2)
    with ws.db.session() as s:
        assert {r.ls_annotation_id: r.status for r in s.scalars(select(Annotation).where(Annotation.image_id == a.id))} == {
            101: "valid", 102: "superseded"}
    again = cli.json("annotations", "import", str(tmp_path / "ls.json"))  # the stored policy applies to imports too
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)
    cli.json("annotations", "policy", "consensus")
    with ws.db.session() as s:
        assert {r.status for r in s.scalars(select(Annotation).where(Annotation.image_id == a.id))} == {"disputed"}
    assert cli.json("status")["annotations"]["disputed"] == 2
    iou = (a.width / 2 - 10) / (a.width - 20)  # same height: the narrow box's width over the wide one's
    text = cli.run("annotations", "conflicts").stdout
    assert f"annotation 101 by user 2 vs 102 by user 3: IoU {iou:.2f} < 0.70; no box kept" in text
    loose = cli.json("annotations", "policy", "--iou", "0.3")  # half the width: IoU ~0.5 counts as agreement now
    assert loose["policy"] == "consensus" and loose["iou"] == 0.3
    assert cli.json("annotations", "conflicts")["pairs"] == 0
    with ws.db.session() as s:
        assert sorted(r.status for r in s.scalars(select(Annotation).where(Annotation.image_id == a.id))) == [
            "superseded", "valid"]
    assert "the IoU threshold" in cli.run("annotations", "policy", "--iou", "0", code=1).output
