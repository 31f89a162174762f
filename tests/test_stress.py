"""`wb stress plant`: a planted copy whose manifest matches its files, markers outside the chest box
only, correlated with the label in train/val and reversed in test; the copy imports with its boxes."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from pipelines.chest import box_on_array


@pytest.fixture
def planted(cli, boxed_ws, tmp_path):
    dest = tmp_path / "planted"
    out = cli.json("stress", "plant", dest, "--rate-positive", 1, "--rate-negative", 0, "--size", 0.08, "--seed", 3)
    return dest, out


def test_manifest_matches_the_files_and_markers_miss_the_box(planted, boxed_ws):
    from sqlalchemy import select

    from db.models import Image

    dest, out = planted
    with open(dest / "stress_manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    files = sorted(p.relative_to(dest).as_posix() for p in (dest / "chest_xray").rglob("*.jpeg"))
    assert sorted(r["path"] for r in rows) == files and len(files) == out["images"] == 48
    assert sum(int(r["marked"]) for r in rows) == out["marked"] > 0
    with boxed_ws.db.session() as s:
        originals = {im.rel_path.split("/")[-1]: im.abs_path for im in s.scalars(select(Image))}
    for r in rows:
        # rate 1 / 0: every PNEUMONIA image of train/val is marked, every NORMAL one of test (room permitting)
        wanted = (r["label"] == "PNEUMONIA") != (r["part"] == "test")
        assert int(r["marked"]) <= wanted
        new = np.asarray(PILImage.open(dest / r["path"]).convert("L"), dtype=np.int16)
        old = np.asarray(PILImage.open(originals[r["path"].split("/")[-1]]).convert("L"), dtype=np.int16)
        changed = np.abs(new - old) > 60  # a marker is 255 on an X-ray; JPEG re-encoding moves a few levels
        box = tuple(float(r[f"box_{k}"]) for k in ("x_min", "y_min", "x_max", "y_max"))
        x0, y0, x1, y1 = box_on_array(box, old.shape[::-1], old.shape)
        if not int(r["marked"]):
            assert changed.mean() < 0.002, r["path"]
            continue
        mx0, my0, mx1, my1 = (int(r[f"marker_{k}"]) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert mx1 <= x0 or mx0 >= x1 or my1 <= y0 or my0 >= y1, f"marker inside the chest box: {r['path']}"
        inside = np.zeros_like(changed)
        inside[my0:my1, mx0:mx1] = True
        assert changed[inside].mean() > 0.1 and changed[~inside].mean() < 0.002, r["path"]  # a ring covers ~0.3


def test_the_copy_imports_with_its_boxes(cli, planted, tmp_path, monkeypatch):
    dest, _ = planted
    monkeypatch.setenv("WB_WORKSPACE", str(tmp_path / "copy-ws"))
    cli.run("import", dest)
    cli.run("split", "--strategy", "source", "--batch-per-class", 0)
    imported = cli.json("annotations", "import", dest / "chest_boxes.json")
    assert imported["boxes"] == 48 and imported["created"] == 48 and imported["rejected"] == 0
    config = json.loads((dest / "stress_config.json").read_text())
    assert config["rate_positive"] == 1 and config["shape"] == "mixed"


def test_bad_options_are_one_line(cli, boxed_ws, tmp_path):
    out = cli.run("stress", "plant", tmp_path / "x", "--shape", "star", code=1).output
    assert "Unknown --shape 'star'" in out
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert "is not empty" in cli.run("stress", "plant", tmp_path / "full", code=1).output
