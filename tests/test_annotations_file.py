"""`wb annotations export/import` and the shipped annotations/sample_boxes.json."""
from __future__ import annotations

import csv
import json
import shutil

from sqlalchemy import select

from annotations import SAMPLE_BOXES
from annotations.boxfile import read_box_file, records_from_chest_csv
from db.models.labels import Annotation
from tests.conftest import SAMPLE


def _use_sample_db(ws, imported_sample_db):
    ws.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(imported_sample_db, ws.root / "wb.db")


def test_sample_boxes_are_the_csv_boxes_as_edges():
    records = {r.image: r for r in read_box_file(SAMPLE_BOXES)}
    with open(SAMPLE / "chest_boxes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(records) == len(rows) == 48
    for row in rows:
        r = records[row["path"]]
        # inclusive integer pixels -> float edges: x_max + 1, y_max + 1
        assert (r.x_min, r.y_min, r.x_max, r.y_max) == (
            int(row["x_min"]), int(row["y_min"]), int(row["x_max"]) + 1, int(row["y_max"]) + 1)
        assert r.origin == "machine"
        assert r.label == ("normal chest" if "/NORMAL/" in row["path"] else "pneumonia chest")
    first = records["chest_xray/test/NORMAL/IM-0016-0001.jpeg"]
    assert (first.width, first.height, first.x_max, first.y_max) == (833, 686, 696, 617)
    # the shipped file is exactly what the converter makes from the sample
    made = records_from_chest_csv(SAMPLE / "chest_boxes.csv", SAMPLE, SAMPLE / "manifest.csv")
    assert {r.image: r for r in made} == records


def test_import_export_round_trip_and_idempotent(cli, ws, imported_sample_db, tmp_path):
    _use_sample_db(ws, imported_sample_db)
    out = cli.json("annotations", "import", str(SAMPLE_BOXES))
    assert (out["created"], out["rejected"], out["unmatched"]) == (48, 0, 0)
    again = cli.json("annotations", "import", str(SAMPLE_BOXES))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 48)
    status = cli.json("status")["annotations"]
    assert (status["total"], status["valid"], status["rejected"]) == (48, 48, 0)
    exported = tmp_path / "round.json"
    res = cli.json("annotations", "export", str(exported))
    assert res["boxes"] == 48 and res["by_origin"] == {"human": 0, "machine": 48}
    key = lambda r: r.image  # noqa: E731
    assert sorted(read_box_file(exported), key=key) == sorted(read_box_file(SAMPLE_BOXES), key=key)
    # the exact-duplicate pair (same sha256) keeps each box on its own path
    with ws.db.session() as s:
        paths = {a.image.rel_path for a in s.scalars(select(Annotation))}
    assert "chest_xray/train/PNEUMONIA/person1430_bacteria_3696.jpeg" in paths
    assert "chest_xray/train/PNEUMONIA/person1430_bacteria_3695.jpeg" in paths


def test_bad_boxes_are_stored_rejected_and_unknown_images_reported(cli, ws, imported_sample_db, tmp_path):
    _use_sample_db(ws, imported_sample_db)
    doc = json.loads(SAMPLE_BOXES.read_text())
    doc["boxes"] = doc["boxes"][:3]
    doc["boxes"][0]["x_max"] = doc["boxes"][0]["width"] + 50  # outside the image
    doc["boxes"][1]["label"] = "lung"
    doc["boxes"][2]["sha256"] = "0" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = cli.json("annotations", "import", str(bad))
    assert (out["created"], out["rejected"], out["unmatched"]) == (2, 2, 1)
    with ws.db.session() as s:
        reasons = sorted(a.reason for a in s.scalars(select(Annotation)))
    assert "outside" in reasons[0] and "unknown label 'lung'" in reasons[1]
    text = cli.run("status").stdout
    assert "Annotations: 2 (valid 0, rejected 2" in text and "unknown label 'lung'" in text


def test_not_a_box_file_is_a_clear_error(cli, ws, tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text('{"boxes": []}')
    res = cli.run("annotations", "import", str(junk), code=1)
    assert "not a wb-chest-boxes file" in res.output
    res = cli.run("annotations", "import", str(tmp_path / "nope.json"), code=1)
    assert "No such file" in res.output
