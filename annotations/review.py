"""Several annotations of one task in the DB: the stored policy, applying it to rows, and conflicts.

The pure rules are in annotations/consensus.py. Here: the policy and IoU threshold stored in the
workspace (`setting` table; defaults consensus.DEFAULT_POLICY / DEFAULT_IOU), the Opinion a row
or a fresh verdict stands for, re-resolving every stored task when the policy changes, and the
disagreeing pairs that `wb annotations conflicts` and `wb status` list.

A group is the annotations of one task: rows with the same (ls_project_id, ls_task_id, image_id)
(Label Studio pulls, and tasks imported from a Label Studio JSON export, whose project is NULL).
Box files (wb JSON, COCO) hold one box per image and origin and are not grouped.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotations.consensus import DEFAULT_IOU, DEFAULT_POLICY, POLICIES, Opinion, disagreeing_pairs, resolve
from annotations.convert import FLAG_NO_CHEST, PixelBox
from db.models.labels import Annotation, AnnotationStatus
from db.models.settings import get_setting, put_setting

POLICY_KEY = "annotations.policy"
# A box that passed validation; the policy picks among these.
BOX_STATES = (AnnotationStatus.VALID, AnnotationStatus.SUPERSEDED, AnnotationStatus.DISPUTED)
GroupKey = tuple[int | None, int, int | None]  # (ls_project_id, ls_task_id, image_id)


@dataclass(frozen=True)
class Policy:
    name: str = DEFAULT_POLICY
    iou: float = DEFAULT_IOU

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.name, "iou": self.iou}


def current_policy(session: Session) -> Policy:
    stored = get_setting(session, POLICY_KEY) or {}
    return Policy(stored.get("policy", DEFAULT_POLICY), float(stored.get("iou", DEFAULT_IOU)))


def store_policy(session: Session, policy: Policy) -> None:
    """Raises ValueError for an unknown policy or a threshold outside (0, 1]."""
    if policy.name not in POLICIES:
        raise ValueError(f"unknown policy {policy.name!r} (known: {', '.join(POLICIES)})")
    if not 0.0 < policy.iou <= 1.0:
        raise ValueError(f"the IoU threshold must lie in (0, 1], not {policy.iou}")
    put_setting(session, POLICY_KEY, policy.as_dict())


def opinion(key: int | None, status: str, box: PixelBox | None, label: str | None, flags: Iterable[str],
            annotator: str | None, updated: str | None) -> Opinion | None:
    """The Opinion an annotation stands for: a box that passed validation, or a "no usable chest"
    skip; None for anything else (rejected, plain skips, deleted)."""
    if key is None:
        return None
    if status in BOX_STATES and box is not None:
        return Opinion(key, box, label, tuple(sorted(flags)), annotator, updated)
    if status == AnnotationStatus.SKIPPED and FLAG_NO_CHEST in flags:
        return Opinion(key, None, None, tuple(sorted(flags)), annotator, updated)
    return None


def row_opinion(row: Annotation) -> Opinion | None:
    box = None
    if row.x_min is not None and row.y_min is not None and row.x_max is not None and row.y_max is not None:
        box = PixelBox(row.x_min, row.y_min, row.x_max, row.y_max)
    updated = (row.raw or {}).get("updated_at") or (row.updated_at.isoformat() if row.updated_at else None)
    return opinion(row.ls_annotation_id, row.status, box, row.box_label, row.flags or [], row.annotator, updated)


def _group_key(row: Annotation) -> GroupKey | None:
    return None if row.ls_task_id is None else (row.ls_project_id, row.ls_task_id, row.image_id)


def _multi_groups(session: Session) -> dict[GroupKey, list[Annotation]]:
    """The rows of every task that has two or more annotations with an opinion (see `opinion`)."""
    with_opinion = (Annotation.status.in_(BOX_STATES)) | (Annotation.status == AnnotationStatus.SKIPPED)
    keys = (Annotation.ls_project_id, Annotation.ls_task_id, Annotation.image_id)
    crowded = select(*keys).where(Annotation.ls_task_id.is_not(None), with_opinion).group_by(*keys).having(
        func.count(Annotation.id) > 1).subquery()
    rows = session.scalars(select(Annotation).join(crowded, (Annotation.ls_task_id == crowded.c.ls_task_id) & (
        Annotation.ls_project_id.is_not_distinct_from(crowded.c.ls_project_id)) & (
        Annotation.image_id.is_not_distinct_from(crowded.c.image_id))).where(with_opinion).order_by(Annotation.id))
    groups: dict[GroupKey, list[Annotation]] = {}
    for row in rows:
        key = _group_key(row)
        if key is not None:
            groups.setdefault(key, []).append(row)
    return groups


def apply_resolution(rows: Sequence[Annotation], policy: Policy) -> int:
    """Set status/reason of one task's rows by the policy; returns how many rows changed."""
    opinions = {o.key: (o, r) for r in rows if (o := row_opinion(r)) is not None}
    result = resolve([o for o, _ in opinions.values()], policy.name, policy.iou)
    changed = 0
    for key, (o, row) in opinions.items():
        if o.box is None:
            continue
        status, reason = (AnnotationStatus.VALID, None) if key == result.chosen else result.others[key]
        if (row.status, row.reason) != (status, reason):
            row.status, row.reason = status, reason
            changed += 1
    return changed


def reresolve_all(session: Session, policy: Policy) -> dict[str, int]:
    """Apply `policy` to every stored task with several annotations (after the policy changed)."""
    groups = _multi_groups(session)
    changed = sum(apply_resolution(rows, policy) for rows in groups.values())
    session.flush()
    return {"tasks": len(groups), "changed": changed}


@dataclass(frozen=True)
class Conflict:
    """A pair of annotations of one task that disagree."""

    group: GroupKey
    a: Opinion
    b: Opinion
    reason: str
    chosen: int | None  # the annotation id the policy keeps for the task (None: none)


def conflicts(session: Session, policy: Policy | None = None) -> list[Conflict]:
    """Every disagreeing pair among the stored tasks with several annotations, by task."""
    policy = policy or current_policy(session)
    out: list[Conflict] = []
    for key, rows in sorted(_multi_groups(session).items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        opinions = [o for r in rows if (o := row_opinion(r)) is not None]
        chosen = next((r.ls_annotation_id for r in rows if r.status == AnnotationStatus.VALID), None)
        out.extend(Conflict(key, a, b, why, chosen) for a, b, why in disagreeing_pairs(opinions, policy.iou))
    return out


def conflict_counts(session: Session) -> dict[str, int]:
    """{'tasks': tasks with a disagreeing pair, 'pairs': such pairs} (for `wb status`)."""
    found = conflicts(session)
    return {"tasks": len({c.group for c in found}), "pairs": len(found)}
