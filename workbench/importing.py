"""`wb import`: find Kermany trees under a folder, verify and hash every image, record it.

Work is committed in chunks, so an interrupted import keeps what it finished and a second run
picks up the rest (files already recorded under the same root are skipped). Files recorded as
unreadable are checked again and become readable when they have been fixed. Two imports of the
same or overlapping folders at once both finish, each file recorded once: each chunk's
transaction takes the database's write lock before it reads what is already recorded (and the
first copy of each content), so the other import's chunks wait for it; the lock is held for
the chunk's writes only, while hashing and decoding go on in parallel. Pool workers end when the
importing process dies (kill -9 included), so none is left behind.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from db import Database
from db.models import DatasetRoot, Image, ImageStatus
from pipelines.imagecheck import FileFacts, inspect_file
from pipelines.kermany import IMAGE_SUFFIXES, detect_layout, find_roots, is_skipped_name, locate, parse_file_name
from pipelines.progress import progress_bar
from workbench.errors import InputError
from workbench.workspace import Workspace

CHUNK = 256  # files per transaction: the most an interruption can make a rerun redo


@dataclass
class ImportSummary:
    path: str = ""
    new_database: str | None = None  # the database this import created, if it did
    roots: list[str] = field(default_factory=list)
    imported: Counter = field(default_factory=Counter)  # label -> readable images added
    unreadable: Counter = field(default_factory=Counter)  # label -> unreadable files recorded
    duplicates: Counter = field(default_factory=Counter)  # label -> added files equal to an earlier one
    already_present: int = 0
    rechecked: int = 0  # files recorded unreadable that were checked again
    now_readable: Counter = field(default_factory=Counter)  # label -> of those, readable now
    ignored: Counter = field(default_factory=Counter)  # reason -> files not imported
    unrecognised_names: int = 0
    unreadable_folders: list[str] = field(default_factory=list)  # "path: reason", never silently skipped

    @property
    def added(self) -> int:
        return sum(self.imported.values()) + sum(self.unreadable.values())

    def merge(self, other: ImportSummary) -> None:
        """Add a chunk's counts (kept apart until its transaction commits)."""
        for name in ("imported", "unreadable", "duplicates", "now_readable"):
            getattr(self, name).update(getattr(other, name))
        self.already_present += other.already_present
        self.rechecked += other.rechecked
        self.unrecognised_names += other.unrecognised_names

    def as_dict(self) -> dict:
        return {
            "new_database": self.new_database,
            "roots": self.roots,
            "added": self.added,
            "imported": dict(self.imported),
            "unreadable": dict(self.unreadable),
            "duplicates": dict(self.duplicates),
            "already_present": self.already_present,
            "rechecked": self.rechecked,
            "now_readable": dict(self.now_readable),
            "ignored": dict(self.ignored),
            "unrecognised_names": self.unrecognised_names,
            "unreadable_folders": self.unreadable_folders,
        }


@dataclass(frozen=True)
class _Candidate:
    rel_path: str
    source_split: str
    label: str
    recheck_id: int | None = None  # the row of a file recorded unreadable, checked again


def _walk(root: Path, summary: ImportSummary) -> Iterator[_Candidate]:
    """Image files under root/chest_xray, in sorted order; everything else is counted as ignored."""
    tree = next(p for p in root.iterdir() if p.name.lower() == "chest_xray")
    for dirpath, dirnames, filenames in os.walk(tree, onerror=_folder_error(summary)):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if is_skipped_name(d):
                summary.ignored["macOS metadata"] += _count_files(here / d)
            elif d.lower() == "chest_xray":
                summary.ignored["nested chest_xray copy"] += _count_files(here / d)
            elif (here / d).is_symlink():
                summary.ignored["symlinked folder (not followed)"] += 1
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
            if where.problem or where.source_split is None or where.label is None:
                summary.ignored[where.problem or "unexpected place"] += 1
                continue
            yield _Candidate(rel, where.source_split, where.label)


def _folder_error(summary: ImportSummary):
    """os.walk's onerror: a folder that cannot be listed is recorded, not skipped in silence."""

    def record(exc: OSError) -> None:
        summary.unreadable_folders.append(f"{exc.filename}: {exc.strerror or exc}")

    return record


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def import_dataset(db: Database, path: Path, *, workers: int | None = None, progress: bool = True) -> ImportSummary:
    """Import every Kermany tree found at or below `path` into `db`. Idempotent.

    Raises InputError after importing what it could when a folder could not be read.
    """
    roots, summary = _find_roots(path)
    return _import_roots(db, roots, summary, workers=workers, progress=progress)


def import_into(ws: Workspace, path: Path, *, workers: int | None = None, progress: bool = True) -> ImportSummary:
    """`wb import`: check the folder first, then open the workspace's database (created if
    `ws.create_db` and missing, or its schema made in an empty server database: reported in
    `summary.new_database`) and import into it."""
    roots, summary = _find_roots(path)
    db = ws.db
    summary.new_database = db.shown if db.new else None
    return _import_roots(db, roots, summary, workers=workers, progress=progress)


def _find_roots(path: Path) -> tuple[list[Path], ImportSummary]:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"No such folder: {path}", "give the folder you unpacked the dataset into")
    if not path.is_dir():
        raise InputError(f"Not a folder: {path}", "give the folder that holds chest_xray/")
    summary = ImportSummary(path=str(path))
    roots = find_roots(path, onerror=_folder_error(summary))
    if not roots and not summary.unreadable_folders:
        raise InputError(
            f"No chest_xray folder with train/val/test inside was found under {path}",
            "expected chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (Kaggle or Mendeley layout)",
        )
    summary.roots = [str(r) for r in roots]
    return roots, summary


def _import_roots(db: Database, roots: list[Path], summary: ImportSummary, *, workers: int | None,
                  progress: bool) -> ImportSummary:
    workers = workers or min(os.cpu_count() or 1, 4)
    for root in roots:
        _import_root(db, root, summary, workers=workers, progress=progress)
    if summary.unreadable_folders:
        first = summary.unreadable_folders[0]
        more = len(summary.unreadable_folders) - 1
        raise InputError(
            f"{len(summary.unreadable_folders)} folder(s) could not be read, e.g. {first}"
            f"{f' (and {more} more)' if more else ''}; imported {summary.added} file(s) from the rest",
            "make them readable and run `wb import` again: what was imported is kept",
        )
    if summary.added == 0 and summary.already_present == 0:
        raise InputError(f"No images found under {summary.path}", "image files must end in .jpeg, .jpg or .png")
    return summary


def _import_root(db: Database, root: Path, summary: ImportSummary, *, workers: int, progress: bool) -> None:
    candidates = list(_walk(root, summary))

    def root_row(s) -> tuple[int, dict[str, tuple[int, str]]]:
        row = s.scalar(select(DatasetRoot).where(DatasetRoot.path == str(root)))
        if row is None:
            row = DatasetRoot(path=str(root), layout=detect_layout(root, [c.rel_path for c in candidates[:50]]))
            s.add(row)
            s.flush()
        known = {p: (i, st) for p, i, st in s.execute(
            select(Image.rel_path, Image.id, Image.status).where(Image.root_id == row.id))}
        return row.id, known

    root_id, known = db.transact(root_row, exclusive=True)
    todo = []
    for c in candidates:
        if c.rel_path not in known:
            todo.append(c)
        elif known[c.rel_path][1] == ImageStatus.UNREADABLE:  # fixed since? check again
            todo.append(_Candidate(c.rel_path, c.source_split, c.label, recheck_id=known[c.rel_path][0]))
    summary.already_present += len(candidates) - len(todo)
    if not todo:
        return
    bar = progress_bar(total=len(todo), desc=f"import {root.name}", unit="img", disable=None if progress else True)
    pool = ProcessPoolExecutor(workers, initializer=end_with_parent) if workers > 1 and len(todo) > 64 else None
    paths = [str(root / c.rel_path) for c in todo]
    # All files are queued at once so workers keep decoding while this process writes a chunk.
    results = pool.map(inspect_file, paths, chunksize=8) if pool else map(inspect_file, paths)
    try:
        for chunk in _chunks(todo, CHUNK):
            facts = [next(results) for _ in chunk]
            summary.merge(db.transact(partial(_record, root_id=root_id, chunk=chunk, facts=facts), exclusive=True))
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def _record(s: Session, *, root_id: int, chunk: list[_Candidate], facts: list[FileFacts]) -> ImportSummary:
    """Record one chunk in the session's transaction; return its counts.

    Reads, inside the transaction, which of the chunk's files are already recorded (another
    import may have added them since the walk) and the first readable copy of each hash, so a
    retry after a lost race sees the other writer's rows. New rows go in with executemany (the
    ORM's per-row path costs more than hashing and decoding); a duplicate whose first copy is in
    this same chunk waits for a second insert, once that first copy has its id.
    """
    out = ImportSummary()
    paths = [c.rel_path for c in chunk if c.recheck_id is None]
    present = set(s.scalars(select(Image.rel_path).where(Image.root_id == root_id, Image.rel_path.in_(paths))))
    # Only the sha256 test goes to the database, so its index is the one used: with the status test
    # there too, SQLite (no statistics) picked the status index and scanned every readable image
    # per chunk, which made a 100k import quadratic.
    first_copy: dict[str, int] = {}
    for sha, image_id, status, copy_of in s.execute(
        select(Image.sha256, Image.id, Image.status, Image.duplicate_of_id)
        .where(Image.sha256.in_({f.sha256 for f in facts if not f.error}))
    ):
        if status == ImageStatus.OK and copy_of is None and (sha not in first_copy or image_id < first_copy[sha]):
            first_copy[sha] = image_id
    now: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []
    firsts: dict[str, dict[str, Any]] = {}
    fixes: list[tuple[_Candidate, FileFacts]] = []
    for cand, fact in zip(chunk, facts, strict=True):
        if cand.recheck_id is None and cand.rel_path in present:
            out.already_present += 1
            continue
        if cand.recheck_id is not None:
            out.rechecked += 1
            fixes.append((cand, fact))
            continue
        info = parse_file_name(cand.rel_path.rsplit("/", 1)[-1], cand.label)
        out.unrecognised_names += not info.recognised
        row: dict[str, Any] = dict(
            root_id=root_id, rel_path=cand.rel_path, sha256=fact.sha256, size_bytes=fact.size_bytes,
            width=fact.width, height=fact.height, mode=fact.mode, label=cand.label,
            subtype=info.subtype, patient_key=info.patient_key, source_split=cand.source_split,
            status=ImageStatus.OK, reason=None, duplicate_of_id=None,
        )
        if fact.error:
            row.update(status=ImageStatus.UNREADABLE, reason=fact.error)
            out.unreadable[cand.label] += 1
            now.append(row)
            continue
        out.imported[cand.label] += 1
        if fact.sha256 in first_copy or fact.sha256 in firsts:
            out.duplicates[cand.label] += 1
            (now if fact.sha256 in first_copy else later).append(row)
            row["duplicate_of_id"] = first_copy.get(fact.sha256)
        else:
            firsts[fact.sha256] = row
            now.append(row)
    if now:
        ids = s.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True), now).all()
        for row, new_id in zip(now, ids, strict=True):
            if firsts.get(row["sha256"]) is row:
                first_copy[row["sha256"]] = new_id
    for row in later:
        row["duplicate_of_id"] = first_copy[row["sha256"]]
    if later:
        s.execute(insert(Image), later)
    for cand, fact in fixes:
        assert cand.recheck_id is not None
        values: dict[str, Any] = dict(sha256=fact.sha256, size_bytes=fact.size_bytes, width=fact.width, height=fact.height,
                      mode=fact.mode, status=ImageStatus.UNREADABLE if fact.error else ImageStatus.OK, reason=fact.error,
                      duplicate_of_id=None)
        if not fact.error:
            out.now_readable[cand.label] += 1
            if fact.sha256 in first_copy:
                values["duplicate_of_id"] = first_copy[fact.sha256]
            else:
                first_copy[fact.sha256] = cand.recheck_id
        s.execute(update(Image).where(Image.id == cand.recheck_id).values(**values))
    return out


def end_with_parent() -> None:
    """Pool-worker initializer: the worker exits when the process that started it dies.

    A kill -9 of `wb import` gives the pool no chance to stop its workers; without this they
    live on with parent PID 1. Linux: the kernel sends SIGKILL on the parent's death
    (PR_SET_PDEATHSIG); everywhere: a thread polls the parent PID once a second.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
