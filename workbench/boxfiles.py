"""Use cases `export_annotations` / `import_annotations`: chest boxes to and from files.

Formats: wb's own JSON box file (annotations/boxfile.py), COCO, Pascal VOC and YOLO for export,
and COCO and Label Studio's JSON export for import (annotations/exchange.py). No server is
involved. Images are matched by sha256 (then path); every box is stored, rejected ones with their
reason; importing the same file again changes nothing.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotations import boxfile
from annotations.convert import check_box, judge_annotation
from annotations.exchange import (
    CHANNELS,
    EXPORT_FORMATS,
    IMPORT_FORMATS,
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
from annotations.pull import annotator_name, raw_annotation, resolve_task
from annotations.review import current_policy
from db.models import Image, SplitMember
from db.models.labels import CHEST_CLASSES, Annotation, AnnotationStatus
from workbench.errors import InputError, NotFoundError
from workbench.splitting import resolve_split
from workbench.workspace import Workspace

ORIGINS = boxfile.ORIGINS


# ---- export ------------------------------------------------------------------------------------

def _chosen(s: Session) -> list[tuple[Annotation, Image]]:
    """The valid box of each image: human before machine, newest first (one per image)."""
    rows = s.execute(
        select(Annotation, Image).join(Image, Annotation.image_id == Image.id)
        .where(Annotation.status == AnnotationStatus.VALID, Annotation.x_min.is_not(None), Image.width.is_not(None))
        .order_by(Image.id, Annotation.updated_at.desc(), Annotation.id.desc())
    ).all()
    chosen: dict[int, tuple[Annotation, Image]] = {}
    for ann, im in rows:
        best = chosen.get(im.id)
        if best is None or (best[0].origin == "machine" and ann.origin == "human"):
            chosen[im.id] = (ann, im)
    return list(chosen.values())


def _record(ann: Annotation, im: Image) -> boxfile.BoxRecord:
    """A box as files carry it; a row without a box label (an early import) gets the image label's class."""
    label = ann.box_label or CHEST_CLASSES.get(im.label, "")
    assert None not in (im.width, im.height, ann.x_min, ann.y_min, ann.x_max, ann.y_max)  # _chosen's query
    return boxfile.BoxRecord(image=im.rel_path, sha256=im.sha256, width=cast(int, im.width), height=cast(int, im.height),
                             label=label, x_min=cast(float, ann.x_min), y_min=cast(float, ann.y_min),
                             x_max=cast(float, ann.x_max), y_max=cast(float, ann.y_max), origin=ann.origin,
                             annotator=ann.annotator)


def _parts(s: Session, split: str | None, image_ids: Sequence[int]) -> tuple[str | None, dict[int, str]]:
    """(split name, image id -> train/val/test) for YOLO/VOC; (None, {}) when there is no split yet."""
    try:
        sp = resolve_split(s, split)
    except NotFoundError:  # no split yet: one folder, 'all'; a split that was named must exist
        if split is not None:
            raise
        return None, {}
    parts = dict(s.execute(select(SplitMember.image_id, SplitMember.part).where(SplitMember.split_id == sp.id)).all())
    return sp.name, {i: parts[i] for i in image_ids if i in parts}


def export_annotations(ws: Workspace, path: Path, *, format: str = "wb", split: str | None = None) -> dict:
    """Write the valid chest boxes (one per image: human before machine, newest first).

    format: wb | coco (one JSON file) or voc | yolo (a folder; images are linked, not copied).
    split: for yolo/voc, which split's parts name the folders (default: the newest split).
    """
    if format not in EXPORT_FORMATS:
        raise InputError(f"Unknown export format {format!r}", f"one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    with ws.db.session() as s:
        chosen = _chosen(s)
        split_name, parts = _parts(s, split, [im.id for _, im in chosen]) if format in ("voc", "yolo") else (None, {})
        items = [ExportItem(_record(ann, im), im.id, ann.id, im.abs_path, parts.get(im.id), CHANNELS.get(im.mode or "", 3))
                 for ann, im in chosen]
    if format == "wb":
        boxfile.write_box_file(path, [it.record for it in items])
    elif format == "coco":
        path.write_text(json.dumps(coco_document(items), indent=1) + "\n")
    else:
        _check_folder(path)
        (_write_voc if format == "voc" else _write_yolo)(path, items)
    out: dict[str, Any] = {"file": str(path), "format": format, "boxes": len(items),
                           "by_origin": {o: sum(it.record.origin == o for it in items) for o in ORIGINS}}
    if format in ("voc", "yolo"):
        out["split"] = split_name
        out["by_part"] = {p: sum((it.part or "all") == p for it in items) for p in sorted({it.part or "all" for it in items})}
    return out


def _check_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file; VOC and YOLO exports write a folder", "give a folder path")
    if path.is_dir() and any(path.iterdir()):
        raise InputError(f"{path} is not empty", "give a new or empty folder (an export never overwrites one)")
    path.mkdir(parents=True, exist_ok=True)


def _link(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def _write_voc(folder: Path, items: Sequence[ExportItem]) -> None:
    (folder / "Annotations").mkdir()
    for it in items:
        name = flat_name(it.record.image)
        _link(it.abs_path, folder / "JPEGImages" / name)
        (folder / "Annotations" / f"{Path(name).stem}.xml").write_text(voc_xml(it))


def _write_yolo(folder: Path, items: Sequence[ExportItem]) -> None:
    for it in items:
        part, name = it.part or "all", flat_name(it.record.image)
        _link(it.abs_path, folder / "images" / part / name)
        label = folder / "labels" / part / f"{Path(name).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(yolo_line(it.record))
    parts = sorted({it.part or "all" for it in items})
    (folder / "data.yaml").write_text(yolo_data_yaml(str(folder.resolve()), parts))
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in CHEST_CLASSES.values()))


# ---- import ------------------------------------------------------------------------------------

def import_annotations(ws: Workspace, path: Path, *, format: str | None = None, origin: str | None = None) -> dict:
    """Read a box file (wb, COCO or a Label Studio JSON export; format detected unless given) and
    store every box, rejected ones with a reason. Idempotent: importing again updates in place.

    origin: human | machine for COCO / Label Studio boxes (default: what the file says, else human).
    """
    if format is not None and format not in IMPORT_FORMATS:
        raise InputError(f"Unknown import format {format!r}", f"one of {', '.join(IMPORT_FORMATS)}")
    if origin is not None and origin not in ORIGINS:
        raise InputError(f"Unknown origin {origin!r}", "human or machine")
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"No such file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not JSON: {exc}", "give a wb box file, a COCO file or a Label Studio JSON export") from None
    found = detect_format(doc)
    if found is None or (format is not None and format != found):
        what = f"not a {format} file" if format else f"not a {boxfile.FORMAT} file, a COCO file or a Label Studio JSON export"
        raise InputError(f"{path} is {what}", "export one with `wb annotations export FILE` (or Label Studio's Export > JSON)")
    summary: dict[str, Any] = {"file": str(path), "format": found, "boxes": 0, "created": 0, "updated": 0,
                               "unchanged": 0, "rejected": 0, "unmatched": 0, "unmatched_images": []}
    with ws.db.session() as s:
        if found == "wb":
            try:
                records = boxfile.read_box_file(path)
            except ValueError as exc:
                raise InputError(str(exc), "export one with `wb annotations export FILE`") from None
            _import_wb(s, records, path, summary)
        elif found == "coco":
            try:
                images = read_coco(doc)
            except ValueError as exc:
                raise InputError(f"{path}: {exc}", "see README: Moving boxes between tools") from None
            _import_coco(s, images, path, origin, summary)
        else:
            _import_label_studio(s, doc, path, origin, summary)
    summary["unmatched_images"] = summary["unmatched_images"][:20]
    return summary


class _Matcher:
    """Finds the workspace image a file names: by sha256, else by path under a root, else by a
    unique file name (a path given with more folders above it also matches by its tail)."""

    def __init__(self, s: Session):
        self.s = s
        self.by_path: dict[str, int] = {}
        self.by_name: dict[str, list[tuple[str, int]]] = {}
        for image_id, rel in s.execute(select(Image.id, Image.rel_path).order_by(Image.id)):
            self.by_path.setdefault(rel, image_id)
            self.by_name.setdefault(rel.rsplit("/", 1)[-1], []).append((rel, image_id))

    def find(self, *, sha256: str | None = None, paths: Sequence[str] = ()) -> Image | None:
        if sha256:
            hits = list(self.s.scalars(select(Image).where(Image.sha256 == sha256).order_by(Image.id)))
            if hits:
                return next((im for im in hits if im.rel_path in paths), hits[0])
        for p in paths:
            p = p.removeprefix("./")
            if p in self.by_path:
                return self.s.get(Image, self.by_path[p])
            named = self.by_name.get(p.rsplit("/", 1)[-1], [])
            tail = [i for rel, i in named if p.endswith("/" + rel) or rel.endswith("/" + p)]
            if len(tail) == 1:
                return self.s.get(Image, tail[0])
            if len(named) == 1 and "/" not in p:
                return self.s.get(Image, named[0][1])
        return None


def _store(s: Session, existing: dict[tuple, Annotation], key: tuple, new: dict[str, Any], values: dict[str, Any],
           summary: dict[str, Any]) -> None:
    """Create or update one file-sourced row; `key` identifies it across imports."""
    summary["boxes"] += 1
    summary["rejected"] += values["status"] == AnnotationStatus.REJECTED
    row = existing.get(key)
    if row is None:
        row = Annotation(source="file", **new, **values)
        s.add(row)
        existing[key] = row
        summary["created"] += 1
    elif any(getattr(row, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(row, k, v)
        summary["updated"] += 1
    else:
        summary["unchanged"] += 1


def _file_rows(s: Session) -> dict[tuple, Annotation]:
    """File-sourced rows by their key: (image, origin) for box files, (image, task, annotation) for
    annotations imported from a Label Studio export."""
    out: dict[tuple, Annotation] = {}
    for a in s.scalars(select(Annotation).where(Annotation.source == "file")):
        out[(a.image_id, a.origin) if a.ls_annotation_id is None else (a.image_id, a.ls_task_id, a.ls_annotation_id)] = a
    return out


def _box_values(label: str | None, box: Any, problem: str | None, annotator: str | None, raw: dict) -> dict[str, Any]:
    return {"x_min": box.x_min if box else None, "y_min": box.y_min if box else None,
            "x_max": box.x_max if box else None, "y_max": box.y_max if box else None,
            "box_label": label, "annotator": annotator,
            "diagnosis": next((k for k, v in CHEST_CLASSES.items() if v == label), None),
            "status": AnnotationStatus.REJECTED if problem else AnnotationStatus.VALID, "reason": problem, "raw": raw}


def _unmatched(summary: dict[str, Any], name: str) -> None:
    summary["unmatched"] += 1
    summary["unmatched_images"].append(name)


def _import_wb(s: Session, records: Sequence[boxfile.BoxRecord], path: Path, summary: dict[str, Any]) -> None:
    match, existing = _Matcher(s), _file_rows(s)
    for rec in records:
        image = match.find(sha256=rec.sha256, paths=[rec.image])
        if image is None or image.sha256 != rec.sha256:
            _unmatched(summary, rec.image)
            continue
        problem = boxfile.problem_with(rec)
        if problem is None and (image.width, image.height) != (rec.width, rec.height):
            problem = f"file says {rec.width}x{rec.height} px, wb imported {image.width}x{image.height} px"
        values = _box_values(rec.label, rec.box, problem, rec.annotator, {"file": path.name, "image": rec.image})
        _store(s, existing, (image.id, rec.origin), {"image_id": image.id, "origin": rec.origin, "flags": []}, values,
               summary)


def _import_coco(s: Session, images: Sequence[Any], path: Path, origin: str | None, summary: dict[str, Any]) -> None:
    match, existing = _Matcher(s), _file_rows(s)
    for coco in images:
        if not coco.boxes:
            continue  # an image listed without a box: nothing to store
        image = match.find(sha256=coco.sha256, paths=[coco.file_name])
        if image is None:
            _unmatched(summary, coco.file_name)
            continue
        by_origin: dict[str, list] = {}
        for box, category, ann in coco.boxes:
            by_origin.setdefault(origin or (ann.get("origin") if ann.get("origin") in ORIGINS else "human"), []).append(
                (box, category, ann))
        for who, boxes in by_origin.items():
            box, category, ann = boxes[0]
            label, problem = coco_label(category, image.label)
            if len(boxes) > 1:
                problem = f"the file holds {len(boxes)} boxes for this image; wb keeps one chest box per image"
            elif box is None:
                problem = "bbox is not four numbers"
            elif problem is None:
                problem = check_box(box, image.width or 0, image.height or 0)
            if problem is None and (coco.width, coco.height) != (image.width, image.height):
                problem = f"file says {coco.width}x{coco.height} px, wb imported {image.width}x{image.height} px"
            if problem is None and label != CHEST_CLASSES.get(image.label):
                problem = f"box label {label!r} disagrees with the image label {image.label}"
            raw = {"file": path.name, "format": "coco", "image": coco.file_name,
                   "annotations": [a.get("id") for _, _, a in boxes]}
            annotator = ann.get("annotator") if isinstance(ann.get("annotator"), str) else None
            _store(s, existing, (image.id, who), {"image_id": image.id, "origin": who, "flags": []},
                   _box_values(label, box if len(boxes) == 1 else None, problem, annotator, raw), summary)


def _import_label_studio(s: Session, tasks: Sequence[dict[str, Any]], path: Path, origin: str | None,
                         summary: dict[str, Any]) -> None:
    """Each task's annotations judged as `wb ls pull` judges them, several per task resolved by the
    workspace's policy; a task is matched to an image by `wb_image_id` (when its `wb_path` fits),
    else by its image URL."""
    match, existing, policy = _Matcher(s), _file_rows(s), current_policy(s)
    who = origin or "human"
    for task in tasks:
        data = task.get("data") or {}
        image = _ls_task_image(s, match, data)
        anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and "id" in a]
        if not anns:
            continue
        if image is None:
            _unmatched(summary, str(data.get("wb_path") or data.get("image") or f"task {task.get('id')}"))
            continue
        verdicts = [judge_annotation(a, width=image.width, height=image.height, image_label=image.label) for a in anns]
        resolve_task(anns, verdicts, policy)
        for ann, v in zip(anns, verdicts, strict=True):
            values = _box_values(v.label, v.box, v.reason, annotator_name(ann),
                                 {"file": path.name, "format": "label-studio", **raw_annotation(ann)})
            values.update(status=v.status, reason=v.reason, flags=v.flags)
            key = (image.id, task.get("id"), ann["id"])
            _store(s, existing, key, {"image_id": image.id, "origin": who, "ls_task_id": task.get("id"),
                                      "ls_annotation_id": ann["id"]}, values, summary)


def _ls_task_image(s: Session, match: _Matcher, data: dict[str, Any]) -> Image | None:
    named, shown = data.get("wb_image_id"), data.get("wb_path")
    if isinstance(named, int) and isinstance(shown, str):
        image = s.get(Image, named)
        if image is not None and (image.rel_path == shown or image.rel_path.endswith("/" + shown)):
            return image
    paths = ls_task_paths(data)
    if isinstance(shown, str):
        paths.append(shown)
    return match.find(paths=paths)
