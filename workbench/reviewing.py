"""Use cases for several annotators on one task: the policy that picks the box, and the conflicts.

No server is involved: everything comes from the annotations already pulled or imported (the
rules: annotations/consensus.py; the rows: annotations/review.py).
"""
from __future__ import annotations

from sqlalchemy import select

from annotations.links import server_url, task_url
from annotations.review import Policy, conflicts, current_policy, reresolve_all, store_policy
from annotations.sync import shown_path
from db.models import Image
from db.models.labels import LsProject
from workbench.errors import InputError
from workbench.workspace import Workspace


def policy(ws: Workspace, *, name: str | None = None, iou: float | None = None) -> dict:
    """The stored policy; with `name` and/or `iou`, store the new one and apply it to every task
    that has several annotations (a box may change from superseded to valid and back)."""
    with ws.db.session(exclusive=name is not None or iou is not None) as s:
        old = current_policy(s)
        if name is None and iou is None:
            return {**old.as_dict(), "changed": False}
        new = Policy(name or old.name, old.iou if iou is None else iou)
        try:
            store_policy(s, new)
        except ValueError as exc:
            raise InputError(str(exc), "e.g. `wb annotations policy consensus --iou 0.7`") from None
        applied = reresolve_all(s, new)
    return {**new.as_dict(), "changed": new != old, "tasks": applied["tasks"], "annotations_changed": applied["changed"]}


def list_conflicts(ws: Workspace, *, limit: int | None = None) -> dict:
    """Pairs of annotations of one task that disagree, with the task's link and the box kept."""
    with ws.db.session() as s:
        pol = current_policy(s)
        found = conflicts(s, pol)
        projects = {p.id: p for p in s.scalars(select(LsProject))}
        image_ids = {c.group[2] for c in found if c.group[2] is not None}
        images = {im.id: im for im in s.scalars(select(Image).where(Image.id.in_(image_ids)))} if image_ids else {}
        rows = []
        for c in found[:limit] if limit is not None else found:
            project_row, task_id, image_id = c.group
            project = projects.get(project_row) if project_row is not None else None
            base = server_url(project.server_url) if project is not None and not project.gone else None
            image = images.get(image_id) if image_id is not None else None
            rows.append({
                "ls_task_id": task_id,
                "project_id": project.project_id if project else None,
                "image_id": image_id,
                "image": shown_path(image.rel_path, image.source_split) if image else None,
                "a": {"ls_annotation_id": c.a.key, "annotator": c.a.annotator},
                "b": {"ls_annotation_id": c.b.key, "annotator": c.b.annotator},
                "reason": c.reason,
                "kept": c.chosen,
                "link": task_url(base, project.project_id, task_id) if base and project else None,
                "source": "label_studio" if project is not None else "file",
            })
    return {**pol.as_dict(), "tasks": len({c.group for c in found}), "pairs": len(found), "conflicts": rows}
