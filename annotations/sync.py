"""The project, and pushing images as tasks with pre-annotations (pulling: annotations/pull.py).

Push works inside the caller's session (one transaction): a failure raises before commit, so
the DB is left as it was and the next run completes the work. Server-side state that cannot
be rolled back (tasks already created) is recovered by `adopt_tasks` on the next push,
which matches tasks to images through the `wb_image_id` every task carries.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast
from urllib.parse import quote

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from annotations.client import LabelStudioClient
from annotations.convert import (
    BOX_FROM_NAME,
    CHEST_LABEL,
    PixelBox,
    box_label_style,
    check_config_labels,
    config_labels,
    rectangle_result,
)
from annotations.errors import LabelConfigError, LabelStudioError
from db.models import DatasetRoot, Image, Prediction, utcnow
from db.models.labels import CHEST_CLASSES, LsProject, LsTask

PROJECT_TITLE = "wb chest boxes"
_CHUNK = 500


@dataclass
class PushSummary:
    project_id: int
    created: int = 0
    already: int = 0
    adopted: int = 0
    skipped_annotated: int = 0  # not pushed yet and already with a valid box: left out
    predictions: int = 0
    model_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class ImageRef:
    """What push needs of an image (a light row, not an ORM object: pushes can be thousands)."""

    id: int
    root: str
    rel_path: str
    label: str
    width: int | None
    height: int | None
    status: str
    source_split: str = ""

    @property
    def abs_path(self) -> str:
        return f"{self.root}/{self.rel_path}"


def shown_path(rel_path: str, source_split: str) -> str:
    """The path an annotator sees (task field `wb_path`): the dataset's own train/val/test folder left out.

    `chest_xray/test/NORMAL/IM-0001-0001.jpeg` -> `NORMAL/IM-0001-0001.jpeg`. The dataset's folder
    is not wb's split (a `test` file may sit in the split's train batch), so showing it misleads;
    the class folder and file name still find the file.
    """
    parts = rel_path.split("/")
    folders = parts[:-1]
    if source_split in folders:
        cut = len(folders) - folders[::-1].index(source_split)
        return "/".join(parts[cut:])
    return "/".join(parts[-2:])


def image_refs(session: Session, ids: Sequence[int]) -> list[ImageRef]:
    """ImageRefs for these image ids, in the order given (unknown ids are left out)."""
    found: dict[int, ImageRef] = {}
    cols = (Image.id, DatasetRoot.path, Image.rel_path, Image.label, Image.width, Image.height, Image.status,
            Image.source_split)
    step = 5000  # bound parameters per query (SQLite allows 32766)
    for i in range(0, len(ids), step):
        rows = session.execute(select(*cols).join(DatasetRoot, Image.root_id == DatasetRoot.id)
                               .where(Image.id.in_(ids[i : i + step]))).all()
        found.update((r[0], ImageRef(*r)) for r in rows)
    return [found[i] for i in ids if i in found]


def current_project(session: Session, server_key: str) -> LsProject | None:
    """The live project for a server key (its URL, or `managed:<data dir>` for the server wb runs,
    whose port may change between starts)."""
    return session.scalars(
        select(LsProject).where(LsProject.server_url == server_key, LsProject.gone.is_(False)).order_by(LsProject.id.desc())
    ).first()


class ProjectState(NamedTuple):
    row: LsProject
    task_count: int  # as the server reports it
    box_labels: str  # 'chest' (one label, wb gives the class) or 'legacy' (the annotator picks the class)


def ensure_project(
    session: Session, client: LabelStudioClient, label_config: str, *, document_root: str | None, new: bool = False,
    roots: Sequence[str] = (),
    server_key: str | None = None,
) -> ProjectState:
    """The workspace's project on this server (created once from label_config, then reused), how
    many tasks the server says it has, and which box labels it uses.

    The server's chest-box labels must be ['chest'] or, in a project made before that, wb's
    classes (CHEST_CLASSES); `new` marks the stored project gone (e.g. deleted on the server) and
    creates a fresh one.
    """
    problem = check_config_labels(label_config)
    if problem:
        raise LabelConfigError(f"The label config does not fit wb: {problem}", "fix annotations/label_config.xml")
    key = server_key or client.url
    row = current_project(session, key)
    if row is not None and new:
        row.gone = True
        row = None
    if row is not None:
        project = client.get_project(row.project_id)
        have = sorted(project["labels"].get(BOX_FROM_NAME, []))
        style = box_label_style(have)
        if style is None:
            raise LabelConfigError(
                f"Label Studio project {row.project_id} has chest box labels {have}, wb expects [{CHEST_LABEL!r}]",
                "paste annotations/label_config.xml into the project's Settings > Labeling Interface, "
                "or run `wb ls push --new-project`",
            )
        return ProjectState(row, project["task_number"], style)
    project_id = client.create_project(PROJECT_TITLE, label_config)
    row = LsProject(server_url=key, project_id=project_id, title=PROJECT_TITLE, document_root=document_root,
                    storages={})
    session.add(row)
    session.flush()
    if document_root:
        ensure_storages(client, row, [r for r in roots if _below(r, document_root)])
    return ProjectState(row, 0, box_label_style(config_labels(label_config)[BOX_FROM_NAME]) or "chest")


def _below(path: str, root: str) -> bool:
    folder, root = os.path.abspath(path), os.path.abspath(root)
    return folder != root and os.path.commonpath([folder, root]) == root


def ensure_storages(client: LabelStudioClient, row: LsProject, roots: Iterable[str]) -> None:
    """One local-files storage per dataset root: LS serves a file only below a storage path.

    Made once per (project, root) and remembered in the DB; a storage deleted by hand on the
    server is not re-checked here (`wb ls push --new-project` starts afresh).
    """
    storages = dict(row.storages or {})
    for root in sorted(set(roots)):
        if root not in storages:
            storages[root] = client.create_local_storage(row.project_id, root, f"wb {Path(root).name}")
    if storages != (row.storages or {}):
        row.storages = storages


def local_files_url(abs_path: str, document_root: str) -> str:
    rel = os.path.relpath(abs_path, document_root)
    return "/data/local-files/?d=" + quote(Path(rel).as_posix(), safe="/")


def _url_maker(document_root: str) -> Callable[[ImageRef], str]:
    """local_files_url for many images: one relpath per dataset root (relpath is slow)."""
    prefixes: dict[str, str] = {}

    def url(im: ImageRef) -> str:
        root = im.root
        if root not in prefixes:
            prefixes[root] = Path(os.path.relpath(root, document_root)).as_posix()
        return "/data/local-files/?d=" + quote(f"{prefixes[root]}/{im.rel_path}", safe="/")

    return url


def _check_under_root(images: Sequence[ImageRef], document_root: str) -> None:
    root = os.path.abspath(document_root)
    for path in {im.root for im in images}:
        if not _below(path, root):
            raise LabelStudioError(
                f"{path} is not inside the server's local-files root {root}",
                "restart the server so it serves all dataset folders: `wb ls stop && wb ls serve --detach`",
            )


def adopt_tasks(session: Session, client: LabelStudioClient, row: LsProject, *, server_count: int) -> int:
    """Record tasks that exist on the server but not in the DB (a push whose commit failed)."""
    known = set(session.scalars(select(LsTask.ls_task_id).where(LsTask.ls_project_id == row.id)))
    if server_count <= len(known):
        return 0
    have_image = set(session.scalars(select(LsTask.image_id).where(LsTask.ls_project_id == row.id)))
    adopted = 0
    for page in client.iter_tasks(row.project_id, full=False):
        for task in page:
            image_id = (task.get("data") or {}).get("wb_image_id")
            if task["id"] in known or not isinstance(image_id, int) or image_id in have_image:
                continue
            if session.get(Image, image_id) is None:
                continue
            session.add(LsTask(ls_project_id=row.id, image_id=image_id, ls_task_id=task["id"]))
            have_image.add(image_id)
            adopted += 1
    session.flush()
    return adopted


def task_data(image: ImageRef | Image, url: str) -> dict[str, Any]:
    """A task's data: the image URL, wb's id for it, and what the labelling view shows beside it.

    `wb_feedback` starts empty; a pull that rejects the task's annotation writes the reason there
    (annotations/feedback.py), where the annotator sees it.
    """
    return {"image": url, "wb_image_id": image.id, "wb_label": image.label,
            "wb_path": shown_path(image.rel_path, image.source_split), "wb_feedback": ""}


def prediction_payload(pred: Prediction, image: ImageRef | Image, model_version: str, *,
                       box_labels: str = "chest") -> dict[str, Any] | None:
    """A LS prediction from a detector's box (pixels -> percent); None when it has no box.

    The box is labelled `chest` (or, in a legacy project, with the image label's class): never
    with the class the detector guessed, which the annotator would submit unseen.
    """
    if pred.x_min is None or pred.y_min is None or pred.x_max is None or pred.y_max is None:
        return None
    if not image.width or not image.height:
        return None
    label = CHEST_LABEL if box_labels == "chest" else CHEST_CLASSES[image.label]
    box = PixelBox(pred.x_min, pred.y_min, pred.x_max, pred.y_max)
    out: dict[str, Any] = {"model_version": model_version, "result": [rectangle_result(box, label, image.width, image.height)]}
    if pred.score is not None:
        out["score"] = float(pred.score)
    return out


def push_tasks(
    session: Session,
    client: LabelStudioClient,
    row: LsProject,
    images: Sequence[ImageRef],
    *,
    predictions: dict[int, Prediction] | None = None,
    model_version: str | None = None,
    server_task_count: int = 0,
    box_labels: str = "chest",
    skip: Iterable[int] = (),
) -> PushSummary:
    """Create one task per image not pushed yet; attach predictions once per (task, run).

    The caller checks first that the image files exist (Label Studio would show broken tasks).
    box_labels: the project's ProjectState.box_labels (how pre-annotations are labelled).
    skip: image ids to leave out unless already pushed to this project (e.g. those with a valid box).
    """
    summary = PushSummary(project_id=row.project_id, model_version=model_version)
    if not row.document_root:
        raise LabelStudioError("The project has no local-files root", "set WB_LS_DOCUMENT_ROOT")
    _check_under_root(images, row.document_root)
    summary.adopted = adopt_tasks(session, client, row, server_count=server_task_count)
    ensure_storages(client, row, {im.root for im in images})
    pushed = {t.image_id: t for t in session.scalars(select(LsTask).where(LsTask.ls_project_id == row.id))}
    skip = set(skip)
    new_images = [im for im in images if im.id not in pushed and im.id not in skip]
    summary.already = sum(im.id in pushed for im in images)
    summary.skipped_annotated = len(images) - len(new_images) - summary.already
    predictions = predictions or {}
    tasks = []
    url = _url_maker(row.document_root)
    for im in new_images:
        task: dict[str, Any] = {"data": task_data(im, url(im))}
        pred = predictions.get(im.id)
        payload = (prediction_payload(pred, im, model_version, box_labels=box_labels)
                   if pred is not None and model_version else None)
        if payload:
            task["predictions"] = [payload]
            summary.predictions += 1
        tasks.append(task)
    task_ids = client.import_tasks(row.project_id, tasks)
    if task_ids:
        now = utcnow()
        session.execute(insert(cast(Table, LsTask.__table__)), [  # Core executemany: the ORM bulk path costs ~0.1 ms a row
            {"ls_project_id": row.id, "image_id": im.id, "ls_task_id": tid, "pushed_at": now,
             "prediction_runs": [model_version] if "predictions" in t else []}
            for im, t, tid in zip(new_images, tasks, task_ids, strict=True)
        ])
    if model_version and predictions:
        late = []
        for im in images:
            link = pushed.get(im.id)
            if link is None or model_version in (link.prediction_runs or []) or im.id not in predictions:
                continue
            payload = prediction_payload(predictions[im.id], im, model_version, box_labels=box_labels)
            if payload:
                late.append((link, {**payload, "task": link.ls_task_id}))
        if late:
            client.import_predictions(row.project_id, [p for _, p in late])
            for link, _ in late:
                link.prediction_runs = [*(link.prediction_runs or []), model_version]
            summary.predictions += len(late)
        if row.model_version != model_version:
            client.set_model_version(row.project_id, model_version)
            row.model_version = model_version
    summary.created = len(task_ids)
    session.flush()
    return summary
