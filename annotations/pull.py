"""Pull annotations back into the DB: incremental, validated, one transaction (the caller's).

Tasks changed since the last pull (server `updated_at`, minus an overlap) are read first;
only then are rows written, so a server failure midway changes nothing. Each LS annotation is
upserted by its id; one missing from its task is marked deleted; pulling twice changes nothing.
Each annotation names its annotator (the e-mail of Label Studio's `completed_by` user). When a
task holds several valid boxes, the workspace's policy (annotations/review.py) keeps one valid
and marks the others superseded or disputed, with the reason.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotations.client import LabelStudioClient, annotated_query, parse_ls_time, updated_after_query
from annotations.consensus import resolve
from annotations.convert import Verdict, judge_annotation
from annotations.review import Policy, current_policy, opinion
from db.models import Image, utcnow
from db.models.labels import CHEST_CLASSES, Annotation, AnnotationStatus, LsProject, LsTask

OVERLAP_S = 10.0  # re-read tasks changed this long before the last pull's newest change
_CHUNK = 500


@dataclass
class PullSummary:
    project_id: int
    tasks_seen: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    by_status: dict[str, Any] = field(default_factory=dict)  # of the created/updated rows

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()



def fetch_changed_tasks(client: LabelStudioClient, row: LsProject, *,
                        progress: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    """Every task changed since the last pull (all annotated tasks on the first pull)."""
    query = updated_after_query(row.last_updated_at, OVERLAP_S) if row.last_updated_at else annotated_query()
    tasks: list[dict[str, Any]] = []
    for page in client.iter_tasks(row.project_id, query=query):
        tasks.extend(page)
        if progress:
            progress(len(page))
    return tasks


def annotator_name(ann: dict[str, Any], users: dict[int, str] | None = None) -> str | None:
    """Who made a LS annotation: the e-mail of its `completed_by` user.

    `completed_by` is a user id (tasks API, JSON export) or a dict with `email` (an export that
    expands it). The e-mail comes from `users` (id -> e-mail, the server's user list), else from
    `created_username` ("First Last email, id"); else "user <id>".
    """
    who = ann.get("completed_by")
    if isinstance(who, dict):
        if who.get("email"):
            return str(who["email"])
        who = who.get("id")
    if isinstance(who, int) and users and who in users:
        return users[who]
    shown = str(ann.get("created_username") or "").strip()
    if "," in shown:
        shown = shown.rsplit(",", 1)[0].strip()
    if shown:
        return shown.split()[-1]
    return f"user {who}" if who is not None else None


def raw_annotation(ann: dict[str, Any]) -> dict[str, Any]:
    """What wb keeps of a LS annotation: enough to audit it and to notice any change."""
    return {k: ann.get(k) for k in ("id", "result", "was_cancelled", "updated_at", "completed_by")}


def apply_tasks(session: Session, row: LsProject, tasks: Sequence[dict[str, Any]], *,
                users: dict[int, str] | None = None, policy: Policy | None = None) -> PullSummary:
    """Upsert the annotations of these tasks (full task dicts) into the DB; see module docstring.

    users: LS user id -> e-mail (for the annotator); policy: default the workspace's.
    """
    policy = policy or current_policy(session)
    summary = PullSummary(project_id=row.project_id, tasks_seen=len(tasks))
    task_ids = [t["id"] for t in tasks]
    links: dict[int, LsTask] = {}
    existing: dict[int, list[Annotation]] = {}
    for i in range(0, len(task_ids), _CHUNK):
        part = task_ids[i : i + _CHUNK]
        links.update((lt.ls_task_id, lt) for lt in session.scalars(
            select(LsTask).where(LsTask.ls_project_id == row.id, LsTask.ls_task_id.in_(part))))
        for ann in session.scalars(
            select(Annotation).where(Annotation.ls_project_id == row.id, Annotation.ls_task_id.in_(part))
        ):
            if ann.ls_task_id is not None:  # always, by the query; tells the type checker
                existing.setdefault(ann.ls_task_id, []).append(ann)
    image_ids = {lt.image_id for lt in links.values()}
    image_ids |= {t["data"].get("wb_image_id") for t in tasks if isinstance((t.get("data") or {}).get("wb_image_id"), int)}
    images: dict[int, Image] = {}
    ids = sorted(image_ids)
    for i in range(0, len(ids), _CHUNK):
        images.update((im.id, im) for im in session.scalars(select(Image).where(Image.id.in_(ids[i : i + _CHUNK]))))
    now = utcnow()
    newest = row.last_updated_at
    for task in tasks:
        if task.get("updated_at") and (newest is None or parse_ls_time(task["updated_at"]) > parse_ls_time(newest)):
            newest = task["updated_at"]
        image, mismatch = _task_image(task, links.get(task["id"]), images)
        by_id = {a.ls_annotation_id: a for a in existing.get(task["id"], [])}
        seen = set()
        anns = task.get("annotations") or []
        verdicts = []
        for ann in anns:
            verdict = judge_annotation(
                ann, width=image.width if image else None, height=image.height if image else None,
                image_label=image.label if image else None,
            )
            if mismatch and verdict.status == AnnotationStatus.VALID:
                verdict.status, verdict.reason = AnnotationStatus.REJECTED, mismatch
            verdicts.append(verdict)
        resolve_task(anns, verdicts, policy, users)
        for ann, verdict in zip(anns, verdicts, strict=True):
            seen.add(ann["id"])
            values = {
                "image_id": image.id if image else None,
                "annotator": annotator_name(ann, users),
                "x_min": verdict.box.x_min if verdict.box else None,
                "y_min": verdict.box.y_min if verdict.box else None,
                "x_max": verdict.box.x_max if verdict.box else None,
                "y_max": verdict.box.y_max if verdict.box else None,
                "box_label": verdict.label,
                "diagnosis": next((k for k, v in CHEST_CLASSES.items() if v == verdict.label), None),
                "flags": verdict.flags,
                "status": verdict.status,
                "reason": verdict.reason,
                "raw": raw_annotation(ann),
            }
            row_ = by_id.get(ann["id"])
            if row_ is None:
                session.add(Annotation(source="label_studio", origin="human", ls_project_id=row.id,
                                       ls_task_id=task["id"], ls_annotation_id=ann["id"], **values))
                summary.created += 1
            elif any(getattr(row_, k) != v for k, v in values.items()):
                for k, v in values.items():
                    if getattr(row_, k) != v:
                        setattr(row_, k, v)
                summary.updated += 1
            else:
                summary.unchanged += 1
                continue
            summary.by_status[verdict.status] = summary.by_status.get(verdict.status, 0) + 1
        for ann_id, row_ in by_id.items():
            if ann_id not in seen and row_.status != AnnotationStatus.DELETED:
                row_.status, row_.reason = AnnotationStatus.DELETED, "deleted in Label Studio"
                summary.deleted += 1
    if newest != row.last_updated_at:
        row.last_updated_at = newest
    row.last_pull_at = now
    session.flush()
    return summary


def resolve_task(anns: Sequence[dict[str, Any]], verdicts: Sequence[Verdict], policy: Policy,
                 users: dict[int, str] | None = None) -> None:
    """Apply the policy to one task's verdicts in place: one valid box, the others superseded or
    disputed with the reason (annotations/consensus.py)."""
    opinions = {}
    for ann, v in zip(anns, verdicts, strict=True):
        o = opinion(ann.get("id"), v.status, v.box, v.label, v.flags, annotator_name(ann, users), ann.get("updated_at"))
        if o is not None:
            opinions[o.key] = (o, v)
    if len(opinions) < 2:  # one opinion: it stands, whatever the policy
        return
    result = resolve([o for o, _ in opinions.values()], policy.name, policy.iou)
    for key, (o, v) in opinions.items():
        if o.box is not None and key != result.chosen:
            v.status, v.reason = result.others[key]


def _task_image(task: dict[str, Any], link: LsTask | None, images: dict[int, Image]) -> tuple[Image | None, str | None]:
    """The image a task stands for, and a reason when the task and wb's record disagree."""
    named = (task.get("data") or {}).get("wb_image_id")
    if link is not None:
        image = images.get(link.image_id)
        if isinstance(named, int) and named != link.image_id:
            return image, f"task data names image {named}, wb pushed image {link.image_id} as this task"
        return image, None
    if isinstance(named, int) and named in images:
        return images[named], None
    return None, None
