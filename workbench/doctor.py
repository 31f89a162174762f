"""`wb doctor`: compare every imported file with what the database recorded at import
(presence, size, sha256) and mark the images whose file changed.

A check is a run (kind "doctor"). Each image's `checked_at` is set as it is verified, in chunks
of CHUNK per transaction, so a check that was interrupted (Ctrl-C, kill -9) continues where it
stopped when run again. Files are hashed in threads: file reads and hashlib release the GIL.

An image whose file is gone or unreadable becomes `missing`, one whose size or content differs
`changed` (with the reason); both leave train/eval/suggest/push, which read `ok` images, until a
later check finds the file as imported again (`restored`). Files recorded `unreadable` are left
to `wb import`, which checks them again.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from tqdm import tqdm

from db.models import DatasetRoot, Image, ImageStatus, Run, RunKind, RunStatus, utcnow
from workbench.errors import ConflictError, InputError
from workbench.runs import create_run, owner_gone, running, update_run
from workbench.workspace import Workspace

CHUNK = 256  # images per transaction: the most an interruption makes a rerun verify again
CHECKED = (ImageStatus.OK, ImageStatus.CHANGED, ImageStatus.MISSING)  # the states a check decides between
READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class Verdict:
    """What one file is now, compared with its row: state ok | changed | missing, and why."""

    state: str
    reason: str | None = None


@dataclass
class DoctorSummary:
    run_id: int
    resumed: int = 0  # images this pass had already checked before it was interrupted
    checked: int = 0  # images checked by this call
    ok: int = 0
    changed: list[dict] = field(default_factory=list)  # {"path", "reason"}, found changed in this call
    missing: list[dict] = field(default_factory=list)
    restored: list[dict] = field(default_factory=list)  # marked changed/missing before, as imported again now
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def verify_file(path: str, size_bytes: int, sha256: str) -> Verdict:
    """Compare the file at `path` with the size (bytes) and sha256 recorded at import."""
    try:
        size = os.stat(path).st_size
        if size != size_bytes:
            return Verdict(ImageStatus.CHANGED, f"size {size_bytes} -> {size} bytes")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(READ_BLOCK):
                digest.update(block)
    except OSError as exc:
        return Verdict(ImageStatus.MISSING, f"cannot read the file: {exc.strerror or exc}")
    if digest.hexdigest() != sha256:
        return Verdict(ImageStatus.CHANGED, "content changed (sha256 differs, same size)")
    return Verdict(ImageStatus.OK)


def check_files(ws: Workspace, *, workers: int | None = None, restart: bool = False,
                progress: bool = True) -> DoctorSummary:
    """Verify every imported image's file against its row; resume an unfinished check unless `restart`."""
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1")
    t0 = time.perf_counter()
    run_id, since = _pass(ws, restart)
    summary = DoctorSummary(run_id=run_id)
    with ws.db.session() as s:
        base = select(Image.id).where(Image.status.in_(CHECKED))
        summary.resumed = s.scalar(select(func.count()).select_from(base.where(Image.checked_at >= since).subquery())) or 0
        rows = list(s.execute(
            select(Image.id, Image.rel_path, Image.size_bytes, Image.sha256, Image.status, DatasetRoot.path)
            .join(DatasetRoot, DatasetRoot.id == Image.root_id)
            .where(Image.status.in_(CHECKED), (Image.checked_at.is_(None)) | (Image.checked_at < since))
            .order_by(Image.id)
        ))
    bar = tqdm(total=len(rows), desc="doctor", unit="file", disable=None if progress else True)
    with running(ws, run_id), ThreadPoolExecutor(workers or min(os.cpu_count() or 1, 8)) as pool:
        verdicts = pool.map(lambda r: verify_file(f"{r.path}/{r.rel_path}", r.size_bytes, r.sha256), rows)
        try:
            for chunk in _chunks(rows, CHUNK):
                found = [next(verdicts) for _ in chunk]
                _record(ws, chunk, found, summary)
                bar.update(len(chunk))
        finally:
            bar.close()
    summary.seconds = round(time.perf_counter() - t0, 2)
    update_run(ws, run_id, status=RunStatus.DONE, metrics={
        "checked": summary.checked + summary.resumed, "changed": len(summary.changed), "missing": len(summary.missing),
        "restored": len(summary.restored), "seconds": summary.seconds})
    return summary


def _pass(ws: Workspace, restart: bool) -> tuple[int, datetime]:
    """(run id, the time this pass started): the newest unfinished check, or a new one."""
    with ws.db.session() as s:
        if not s.scalar(select(func.count(Image.id))):
            raise InputError("No images imported yet", "run `wb import PATH` first")
        last = s.scalars(select(Run).where(Run.kind == RunKind.DOCTOR).order_by(Run.id.desc())).first()
        if last is not None and last.status == RunStatus.RUNNING and not owner_gone(last):
            raise ConflictError(f"wb doctor is already running (run {last.id}, process {last.owner_pid} on {last.owner_host})",
                                "let it finish, or stop it and run `wb doctor` again to continue its pass")
        if last is not None and last.status != RunStatus.DONE and not restart:
            return last.id, last.created_at
    run_id, _ = create_run(ws, RunKind.DOCTOR, {"restart": restart}, split_id=None)
    with ws.db.session() as s:
        return run_id, s.get_one(Run, run_id).created_at


def _record(ws: Workspace, chunk: list, found: list[Verdict], summary: DoctorSummary) -> None:
    """Write one chunk's verdicts (and checked_at) in one transaction, then count them."""
    now = utcnow()
    values = [{"id": r.id, "status": v.state, "reason": v.reason, "checked_at": now} for r, v in zip(chunk, found, strict=True)]
    with ws.db.session() as s:
        s.execute(update(Image), values)  # executemany by primary key
    for r, v in zip(chunk, found, strict=True):
        summary.checked += 1
        entry = {"path": r.rel_path, "reason": v.reason}
        if v.state == ImageStatus.OK:
            summary.ok += 1
            if r.status != ImageStatus.OK:
                summary.restored.append({"path": r.rel_path, "reason": f"matches its import again (was {r.status})"})
        else:
            (summary.changed if v.state == ImageStatus.CHANGED else summary.missing).append(entry)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
