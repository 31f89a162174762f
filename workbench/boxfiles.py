"""Use cases `export_annotations` / `import_annotations`: chest boxes to and from a JSON box file.

No server is involved: the file format and its checks live in `annotations.boxfile`; images are
matched by sha256 (then path), and every box is stored, rejected ones with their reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from annotations import boxfile
from db.models import Image
from db.models.labels import CHEST_CLASSES, Annotation
from workbench.errors import InputError
from workbench.workspace import Workspace


def export_annotations(ws: Workspace, path: Path) -> dict:
    """Write the valid chest boxes (one per image: human before machine, newest first) to a file."""
    with ws.db.session() as s:
        rows = s.execute(
            select(Annotation, Image).join(Image, Annotation.image_id == Image.id)
            .where(Annotation.status == "valid").order_by(Image.id, Annotation.updated_at.desc(), Annotation.id.desc())
        ).all()
    chosen: dict[int, tuple] = {}
    for ann, im in rows:
        best = chosen.get(im.id)
        if best is None or (best[0].origin == "machine" and ann.origin == "human"):
            chosen[im.id] = (ann, im)
    records = [
        boxfile.BoxRecord(image=im.rel_path, sha256=im.sha256, width=im.width, height=im.height, label=ann.box_label,
                          x_min=ann.x_min, y_min=ann.y_min, x_max=ann.x_max, y_max=ann.y_max, origin=ann.origin,
                          annotator=ann.annotator)
        for ann, im in chosen.values()
    ]
    boxfile.write_box_file(path, records)
    return {"file": str(path), "boxes": len(records), "by_origin": {
        o: sum(r.origin == o for r in records) for o in boxfile.ORIGINS}}


def import_annotations(ws: Workspace, path: Path) -> dict:
    """Read a box file; match images by sha256 (then path); store each box, rejected ones with a reason.

    Idempotent: one file-sourced row per (image, origin); importing again updates it in place.
    """
    try:
        records = boxfile.read_box_file(Path(path))
    except FileNotFoundError:
        raise InputError(f"No such file: {path}") from None
    except ValueError as exc:
        raise InputError(str(exc), "export one with `wb annotations export FILE`") from None
    summary: dict[str, Any] = {"file": str(path), "boxes": len(records), "created": 0, "updated": 0, "unchanged": 0,
               "rejected": 0, "unmatched": 0, "unmatched_images": []}
    with ws.db.session() as s:
        by_sha: dict[str, list[Image]] = {}
        for im in s.scalars(select(Image).where(Image.sha256.in_({r.sha256 for r in records}))):
            by_sha.setdefault(im.sha256, []).append(im)
        existing = {(a.image_id, a.origin): a for a in s.scalars(select(Annotation).where(Annotation.source == "file"))}
        for rec in records:
            candidates = by_sha.get(rec.sha256, [])
            image = next((im for im in candidates if im.rel_path == rec.image), candidates[0] if candidates else None)
            if image is None:
                summary["unmatched"] += 1
                summary["unmatched_images"].append(rec.image)
                continue
            problem = boxfile.problem_with(rec)
            if problem is None and (image.width, image.height) != (rec.width, rec.height):
                problem = f"file says {rec.width}x{rec.height} px, wb imported {image.width}x{image.height} px"
            values = {"x_min": rec.x_min, "y_min": rec.y_min, "x_max": rec.x_max, "y_max": rec.y_max,
                      "box_label": rec.label, "annotator": rec.annotator,
                      "diagnosis": next((k for k, v in CHEST_CLASSES.items() if v == rec.label), None),
                      "status": "rejected" if problem else "valid", "reason": problem,
                      "raw": {"file": Path(path).name, "image": rec.image}}
            row = existing.get((image.id, rec.origin))
            if row is None:
                row = Annotation(image_id=image.id, source="file", origin=rec.origin, flags=[], **values)
                s.add(row)
                existing[(image.id, rec.origin)] = row
                summary["created"] += 1
            elif any(getattr(row, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(row, k, v)
                summary["updated"] += 1
            else:
                summary["unchanged"] += 1
            summary["rejected"] += bool(problem)
    summary["unmatched_images"] = summary["unmatched_images"][:20]
    return summary
