"""`wb status`: one summary of the workspace, as a dict (the CLI prints it as text or JSON)."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from annotations.links import server_url, task_url
from annotations.review import conflict_counts, current_policy
from db import Database
from db.models import Annotation, AnnotationBatch, AnnotationBatchItem, Image, Run, Split, SplitMember
from db.models.core import ImageStatus
from db.models.labels import ANNOTATION_STATUSES, AnnotationStatus, LsProject
from workbench.runs import shown_status


def collect_status(db: Database, *, list_limit: int = 50) -> dict:
    with db.session() as s:
        # Counts come from indexes (label; status, mode; duplicate_of_id), not from scans of every
        # image row: at 100k images each scan costs ~30-60 ms, each index lookup a few.
        by_label = Counter(dict(s.execute(select(Image.label, func.count()).group_by(Image.label)).all()))
        total = sum(by_label.values())
        by_status = Counter(dict(s.execute(select(Image.status, func.count()).group_by(Image.status)).all()))
        modes = dict(s.execute(select(Image.mode, func.count()).where(Image.status == ImageStatus.OK).group_by(Image.mode)).all())
        duplicates = s.scalar(select(func.count()).select_from(Image).where(Image.duplicate_of_id.is_not(None))) or 0
        unreadable_rows = s.execute(
            select(Image.rel_path, Image.reason).where(Image.status == ImageStatus.UNREADABLE).order_by(Image.rel_path)
            .limit(list_limit)
        ).all()
        changed_rows = s.execute(  # marked by `wb doctor`: the file is not what was imported
            select(Image.rel_path, Image.status, Image.reason).where(Image.status.in_((ImageStatus.CHANGED, ImageStatus.MISSING)))
            .order_by(Image.rel_path).limit(list_limit)
        ).all()
        splits = {}
        for split in s.scalars(select(Split).order_by(Split.id)):
            rows = s.execute(
                select(SplitMember.part, func.count()).where(SplitMember.split_id == split.id).group_by(SplitMember.part)
            ).all()
            splits[split.name] = {"strategy": split.strategy, "seed": split.seed,
                                  **{p: 0 for p in ("train", "val", "test")}, **dict(rows)}
        batches = {
            name: n
            for name, n in s.execute(
                select(AnnotationBatch.name, func.count(AnnotationBatchItem.image_id))
                .join(AnnotationBatchItem, isouter=True)
                .group_by(AnnotationBatch.id)
            ).all()
        }
        ann_counts = dict(s.execute(select(Annotation.status, func.count()).group_by(Annotation.status)).all())
        rejected = s.execute(
            select(Annotation.id, Annotation.image_id, Annotation.ls_task_id, Annotation.reason,
                   LsProject.server_url, LsProject.project_id, LsProject.gone)
            .join(LsProject, Annotation.ls_project_id == LsProject.id, isouter=True)
            .where(Annotation.status == AnnotationStatus.REJECTED)
            .order_by(Annotation.id)
            .limit(list_limit)
        ).all()
        conflicts = {**conflict_counts(s), **current_policy(s).as_dict()}
        runs = [
            {"id": r.id, "kind": r.kind, "name": r.name, "status": shown_status(r), "metrics": r.metrics}
            for r in s.scalars(select(Run).order_by(Run.id))
        ]
    return {
        "database": db.shown,
        "images": {
            "total": total,
            "by_label": {"NORMAL": by_label.get("NORMAL", 0), "PNEUMONIA": by_label.get("PNEUMONIA", 0)},
            "by_mode": modes,
            "unreadable": by_status[ImageStatus.UNREADABLE],
            "unreadable_files": [{"path": p, "reason": r} for p, r in unreadable_rows],
            "changed": by_status[ImageStatus.CHANGED] + by_status[ImageStatus.MISSING],
            "changed_files": [{"path": p, "status": st, "reason": r} for p, st, r in changed_rows],
            "duplicates": duplicates,
        },
        "splits": splits,
        "annotation_batches": batches,
        "annotations": {
            "total": sum(ann_counts.values()),
            **{state: ann_counts.get(state, 0) for state in ANNOTATION_STATUSES},
            "rejected_list": [
                {"id": i, "image_id": im, "ls_task_id": t, "reason": why, "link": _task_link(key, project, t, gone)}
                for i, im, t, why, key, project, gone in rejected
            ],
            "conflicts": conflicts,  # tasks / pairs where annotators disagree, and the policy in force
        },
        "runs": runs,
    }


def _task_link(server_key: str | None, project_id: int | None, task_id: int | None, gone: bool | None) -> str | None:
    """The Label Studio URL of a rejected annotation's task (None for box files and gone projects)."""
    if server_key is None or project_id is None or task_id is None or gone:
        return None
    base = server_url(server_key)
    return task_url(base, project_id, task_id) if base else None
