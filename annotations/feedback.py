"""Tell the annotator, inside Label Studio, what wb did with their annotation.

The label config forbids what it can (one `chest` box: `maxUsages`), but Label Studio still
accepts what wb then rejects: two boxes that arrived through the API or an older config, a class
that disagrees with the image label in a legacy project, a box outside the image, a rotated one.
After each pull wb writes the reasons into the task's `wb_feedback` data field, which the
labelling view shows beside the image (annotations/label_config.xml) and the data manager shows
as a column. When a rejected annotation is fixed, the field says so.

`LsTask.feedback` remembers the text last written, so a pull writes only the tasks whose text
changes: one Label Studio call pair per new rejection or fix, none for the valid majority.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from annotations.client import LabelStudioClient
from db.models.labels import Annotation, AnnotationStatus, LsProject, LsTask

FEEDBACK_FIELD = "wb_feedback"
ACCEPTED = "wb accepted the corrected annotation."
DISPUTED = ("Annotators disagree on this task and the policy 'consensus' keeps no box until most of them agree: "
            "compare the annotations and adjust yours, then press Update.")


@dataclass(frozen=True)
class AnnotationState:
    """What feedback needs of one annotation of a task."""

    ls_annotation_id: int | None
    annotator: str | None
    status: str  # valid | rejected | skipped | deleted | superseded | disputed
    reason: str | None


def feedback_text(annotations: Sequence[AnnotationState], previous: str | None) -> str:
    """The `wb_feedback` text for a task, from its annotations' states and the text written before.

    Rejected annotations: one sentence each with the reason and what to do. Disputed ones (no box
    a majority agrees on): DISPUTED. Neither: empty, unless an earlier text reported a problem,
    which becomes ACCEPTED when a valid one exists.
    """
    rejected = [a for a in annotations if a.status == AnnotationStatus.REJECTED]
    if rejected:
        many = len([a for a in annotations if a.status != AnnotationStatus.DELETED]) > 1
        parts = []
        for a in rejected:
            whose = f" (annotation {a.ls_annotation_id} by {a.annotator or 'unknown'})" if many else ""
            parts.append(f"wb rejected this annotation{whose}: {a.reason}.")
        return " ".join(parts) + " Fix the box, then press Update."
    if any(a.status == AnnotationStatus.DISPUTED for a in annotations):
        return DISPUTED
    if previous and previous != ACCEPTED and any(a.status == AnnotationStatus.VALID for a in annotations):
        return ACCEPTED
    if previous == ACCEPTED:
        return ACCEPTED
    return ""


def pending_feedback(session: Session, row: LsProject) -> list[tuple[LsTask, str]]:
    """(task link, new text) for the project's tasks whose `wb_feedback` must change."""
    rejected_tasks = select(Annotation.ls_task_id).where(
        Annotation.ls_project_id == row.id, Annotation.status.in_((AnnotationStatus.REJECTED, AnnotationStatus.DISPUTED)))
    links = list(session.scalars(select(LsTask).where(
        LsTask.ls_project_id == row.id,
        or_(LsTask.ls_task_id.in_(rejected_tasks), LsTask.feedback.is_not(None) & (LsTask.feedback != "")),
    ).order_by(LsTask.ls_task_id)))
    by_task: dict[int, list[AnnotationState]] = {}
    ids = [link.ls_task_id for link in links]
    for i in range(0, len(ids), 500):
        for a in session.scalars(select(Annotation).where(
                Annotation.ls_project_id == row.id, Annotation.ls_task_id.in_(ids[i : i + 500]))
                .order_by(Annotation.ls_annotation_id)):
            if a.ls_task_id is not None:  # always, by the query; tells the type checker
                by_task.setdefault(a.ls_task_id, []).append(
                    AnnotationState(a.ls_annotation_id, a.annotator, a.status, a.reason))
    out = []
    for link in links:
        text = feedback_text(by_task.get(link.ls_task_id, []), link.feedback)
        if text != (link.feedback or ""):
            out.append((link, text))
    return out


def write_feedback(client: LabelStudioClient, changes: Iterable[tuple[LsTask, str]],
                   known_data: dict[int, dict[str, Any]] | None = None) -> int:
    """Write each text into its task's `wb_feedback` field and remember it on the link; returns
    how many tasks were written. `known_data`: task id -> data already fetched (saves a read).
    A task deleted on the server is skipped."""
    written = 0
    for link, text in changes:
        data = dict((known_data or {}).get(link.ls_task_id) or {}) or client.get_task_data(link.ls_task_id)
        if data is None:
            continue
        data[FEEDBACK_FIELD] = text
        client.update_task_data(link.ls_task_id, data)
        link.feedback = text
        written += 1
    return written
