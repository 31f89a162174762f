"""`wb import`: find Kermany trees under a folder, verify and hash every image, record it.

Work is committed in chunks, so an interrupted import keeps what it finished and a second run
picks up the rest (files already recorded under the same root are skipped).
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select
from tqdm import tqdm

from db import Database
from db.models import DatasetRoot, Image
from pipelines.imagecheck import FileFacts, inspect_file
from pipelines.kermany import IMAGE_SUFFIXES, detect_layout, find_roots, is_skipped_name, locate, parse_file_name
from workbench.errors import InputError

CHUNK = 256  # files per transaction: the most an interruption can make a rerun redo


@dataclass
class ImportSummary:
    roots: list[str] = field(default_factory=list)
    imported: Counter = field(default_factory=Counter)  # label -> readable images added
    unreadable: Counter = field(default_factory=Counter)  # label -> unreadable files recorded
    duplicates: Counter = field(default_factory=Counter)  # label -> added files equal to an earlier one
    already_present: int = 0
    ignored: Counter = field(default_factory=Counter)  # reason -> files not imported
    unrecognised_names: int = 0

    @property
    def added(self) -> int:
        return sum(self.imported.values()) + sum(self.unreadable.values())

    def as_dict(self) -> dict:
        return {
            "roots": self.roots,
            "added": self.added,
            "imported": dict(self.imported),
            "unreadable": dict(self.unreadable),
            "duplicates": dict(self.duplicates),
            "already_present": self.already_present,
            "ignored": dict(self.ignored),
            "unrecognised_names": self.unrecognised_names,
        }


@dataclass(frozen=True)
class _Candidate:
    rel_path: str
    source_split: str
    label: str


def _walk(root: Path, summary: ImportSummary) -> Iterator[_Candidate]:
    """Image files under root/chest_xray, in sorted order; everything else is counted as ignored."""
    tree = next(p for p in root.iterdir() if p.name.lower() == "chest_xray")
    for dirpath, dirnames, filenames in os.walk(tree):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if is_skipped_name(d):
                summary.ignored["macOS metadata"] += _count_files(here / d)
            elif d.lower() == "chest_xray":
                summary.ignored["nested chest_xray copy"] += _count_files(here / d)
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.startswith("."):
                summary.ignored["hidden or macOS metadata"] += 1
                continue
            rel = (here / name).relative_to(root).as_posix()
            if not name.lower().endswith(IMAGE_SUFFIXES):
                summary.ignored["not an image file name"] += 1
                continue
            where = locate(rel)
            if where.problem:
                summary.ignored[where.problem] += 1
                continue
            yield _Candidate(rel, where.source_split, where.label)


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def import_dataset(db: Database, path: Path, *, workers: int | None = None, progress: bool = True) -> ImportSummary:
    """Import every Kermany tree found at or below `path` into `db`. Idempotent."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"No such folder: {path}", "give the folder you unpacked the dataset into")
    if not path.is_dir():
        raise InputError(f"Not a folder: {path}", "give the folder that holds chest_xray/")
    roots = find_roots(path)
    if not roots:
        raise InputError(
            f"No chest_xray folder with train/val/test inside was found under {path}",
            "expected chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (Kaggle or Mendeley layout)",
        )
    summary = ImportSummary(roots=[str(r) for r in roots])
    workers = workers or min(os.cpu_count() or 1, 4)
    for root in roots:
        _import_root(db, root, summary, workers=workers, progress=progress)
    if summary.added == 0 and summary.already_present == 0:
        raise InputError(f"No images found under {path}", "image files must end in .jpeg, .jpg or .png")
    return summary


def _import_root(db: Database, root: Path, summary: ImportSummary, *, workers: int, progress: bool) -> None:
    candidates = list(_walk(root, summary))
    with db.session() as s:
        row = s.scalar(select(DatasetRoot).where(DatasetRoot.path == str(root)))
        if row is None:
            row = DatasetRoot(path=str(root), layout=detect_layout(root, [c.rel_path for c in candidates[:50]]))
            s.add(row)
            s.flush()
        root_id = row.id
        known = set(s.scalars(select(Image.rel_path).where(Image.root_id == root_id)))
        first_copy = dict(
            s.execute(
                select(Image.sha256, Image.id)
                .where(Image.status == "ok", Image.duplicate_of_id.is_(None))
                .order_by(Image.id.desc())
            ).all()
        )
    todo = [c for c in candidates if c.rel_path not in known]
    summary.already_present += len(candidates) - len(todo)
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"import {root.name}", unit="img", disable=None if progress else True)
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(todo) > 64 else None
    paths = [str(root / c.rel_path) for c in todo]
    # All files are queued at once so workers keep decoding while this process writes a chunk.
    results = pool.map(inspect_file, paths, chunksize=8) if pool else map(inspect_file, paths)
    try:
        for chunk in _chunks(todo, CHUNK):
            facts = [next(results) for _ in chunk]
            _record(db, root_id, chunk, facts, first_copy, summary)
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def _record(db, root_id, chunk: list[_Candidate], facts: list[FileFacts], first_copy: dict, summary) -> None:
    """Insert one chunk in one transaction; link exact duplicates to their first readable copy.

    Rows go in with executemany (the ORM's per-row path costs more than hashing and decoding).
    A duplicate whose first copy is in this same chunk waits for a second insert, once that
    first copy has its id.
    """
    now, later, firsts = [], [], {}
    for cand, fact in zip(chunk, facts, strict=True):
        info = parse_file_name(cand.rel_path.rsplit("/", 1)[-1], cand.label)
        summary.unrecognised_names += not info.recognised
        row = dict(
            root_id=root_id, rel_path=cand.rel_path, sha256=fact.sha256, size_bytes=fact.size_bytes,
            width=fact.width, height=fact.height, mode=fact.mode, label=cand.label,
            subtype=info.subtype, patient_key=info.patient_key, source_split=cand.source_split,
            status="ok", reason=None, duplicate_of_id=None,
        )
        if fact.error:
            row.update(status="unreadable", reason=fact.error)
            summary.unreadable[cand.label] += 1
            now.append(row)
            continue
        summary.imported[cand.label] += 1
        if fact.sha256 in first_copy or fact.sha256 in firsts:
            summary.duplicates[cand.label] += 1
            (now if fact.sha256 in first_copy else later).append(row)
            row["duplicate_of_id"] = first_copy.get(fact.sha256)
        else:
            firsts[fact.sha256] = row
            now.append(row)
    with db.session() as s:
        ids = s.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True), now).all()
        for row, new_id in zip(now, ids, strict=True):
            if firsts.get(row["sha256"]) is row:
                first_copy[row["sha256"]] = new_id
        for row in later:
            row["duplicate_of_id"] = first_copy[row["sha256"]]
        if later:
            s.execute(insert(Image), later)
