"""Use case `plant_shortcut` (`wb stress plant DEST`): a copy of the workspace's dataset with a planted shortcut.

A synthetic marker (pipelines.stress) goes outside the chest box of a share of the images, so that
it correlates with the label in the split's train and val parts and the other way round in its
test part. A pipeline that reads the label off the marker does well on val and badly on test; one
that looks at the chest does not care. The copy is laid out as Kaggle's `chest_xray/<part>/<LABEL>/`
by the split's parts (import it and make a `--strategy source` split to keep the test part), every
image re-encoded the same way (marked or not, so JPEG artefacts carry no label), with:

- `stress_manifest.csv`: one row per image: path, part, label, marked, marker shape and box, the
  chest box it avoided and where that box came from;
- `chest_boxes.json`: the chest boxes as a wb box file (`wb annotations import` on the copy).
"""
from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from annotations import boxfile
from db.models import Image, ImageStatus, SplitMember
from db.models.labels import CHEST_CLASSES
from pipelines import stress
from workbench.configs import PlantConfig, validate_plant_config
from workbench.errors import InputError
from workbench.splitting import resolve_split
from workbench.workspace import Workspace

MANIFEST = "stress_manifest.csv"
BOX_FILE = "chest_boxes.json"
JPEG_QUALITY = 95


def plant_shortcut(ws: Workspace, dest: Path, config: PlantConfig, *, progress: bool = True) -> dict[str, Any]:
    """Write the planted copy of the split's readable images to `dest` (which must not exist or be empty)."""
    from PIL import Image as PILImage

    from pipelines.progress import progress_bar
    from workbench.predicting import chest_boxes

    validate_plant_config(config)
    spec = stress.MarkerSpec(shape=config.shape, size=config.size, place=config.place, intensity=config.intensity)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise InputError(f"{dest} is not empty", "give a new folder: the copy is written from scratch")
    with ws.db.session() as s:
        split = resolve_split(s, config.split)
        rows = s.execute(select(Image, SplitMember.part).join(SplitMember, SplitMember.image_id == Image.id)
                         .where(SplitMember.split_id == split.id, Image.status == ImageStatus.OK).order_by(Image.id)).all()
        images = [(im.id, im.abs_path, im.rel_path, im.sha256, im.label, part) for im, part in rows]
        split_name = split.name
    if not images:
        raise InputError(f"Split {split_name!r} has no readable images")
    targets: dict[str, int] = {}
    for image_id, _, rel, _, label, part in images:
        target = f"chest_xray/{part}/{label}/{Path(rel).name}"
        if target in targets:
            raise InputError(f"Two images would both become {target}", "the copy keeps file names (patient keys)")
        targets[target] = image_id
    boxes = chest_boxes(ws, [i[0] for i in images], config.boxes_from, progress=progress)
    rng = np.random.default_rng(config.seed)
    dest.mkdir(parents=True, exist_ok=True)
    manifest, records = [], []
    counts: Counter[str] = Counter()
    bar = progress_bar(images, desc="plant", unit="img", disable=not progress)
    for image_id, path, rel, _, label, part in bar:
        target = f"chest_xray/{part}/{label}/{Path(rel).name}"
        box, source = boxes.get(image_id, (None, "none"))
        want = rng.random() < stress.marked_share(label, part, config.rate_positive, config.rate_negative)
        with PILImage.open(path) as im:
            mode = im.mode if im.mode in ("L", "RGB") else "L"
            pixels = np.asarray(im.convert(mode))
        where = None
        if want and box is not None:
            pixels, where = stress.plant_marker(pixels, box, spec, rng)
        out = dest / target
        out.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(pixels, mode=mode).save(out, format="JPEG", quality=JPEG_QUALITY)
        height, width = pixels.shape[:2]
        counts[f"{part}/{label}/{'marked' if where else 'unmarked'}"] += 1
        if want and where is None:
            counts["wanted but no room or no box"] += 1
        manifest.append({"path": target, "part": part, "label": label, "marked": int(where is not None),
                         "shape": where.shape if where else "", **_marker_columns(where),
                         **_box_columns(box), "box_source": source})
        if box is not None:
            records.append(boxfile.BoxRecord(image=target, sha256=_sha256(out), width=width, height=height,
                                             label=CHEST_CLASSES[label], x_min=box[0], y_min=box[1], x_max=box[2],
                                             y_max=box[3], origin="human" if source == "annotated" else "machine"))
    with open(dest / MANIFEST, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(manifest[0]))
        writer.writeheader()
        writer.writerows(manifest)
    boxfile.write_box_file(dest / BOX_FILE, records)
    (dest / "stress_config.json").write_text(_config_json(config, split_name))
    return {"dest": str(dest), "images": len(images), "marked": sum(r["marked"] for r in manifest),
            "counts": dict(sorted(counts.items())), "manifest": str(dest / MANIFEST), "boxes": str(dest / BOX_FILE),
            "boxes_written": len(records)}


def _marker_columns(where: stress.Planted | None) -> dict[str, Any]:
    keys = ("marker_x_min", "marker_y_min", "marker_x_max", "marker_y_max")
    return dict(zip(keys, where.box if where else ("",) * 4, strict=True))


def _box_columns(box: Any) -> dict[str, Any]:
    keys = ("box_x_min", "box_y_min", "box_x_max", "box_y_max")
    return dict(zip(keys, [round(float(v), 3) for v in box] if box is not None else ("",) * 4, strict=True))


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config_json(config: PlantConfig, split_name: str) -> str:
    import json

    return json.dumps({**dataclasses.asdict(config), "split": split_name}, indent=1) + "\n"
