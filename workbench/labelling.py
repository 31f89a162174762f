"""Labelling use cases: serve Label Studio, push tasks, pull annotations (box files: workbench.boxfiles).

Where the server is: `WB_LS_URL` (+ `WB_LS_TOKEN`) for a server of your own, else the one
`wb ls serve` started (`<workspace>/ls/server.json`, token in the 0600 `credentials.json`).
The token is read from there each time and never stored in the DB, logs, configs or reports.
Each push/pull runs in one DB transaction: a failure leaves the DB as it was.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from annotations import LABEL_CONFIG
from annotations.client import LabelStudioClient
from annotations.errors import AlreadyExists, AuthRejected, LabelConfigError, LabelStudioError
from annotations.feedback import pending_feedback, write_feedback
from annotations.links import MANAGED_PREFIX, server_url, task_url
from annotations.pull import PullSummary, apply_tasks, fetch_changed_tasks
from annotations.review import conflict_counts
from annotations.server import (
    CREDENTIALS_FILE,
    is_answering,
    known_url,
    load_credentials,
    load_state,
    pid_alive,
    remembered_database,
    shown_database,
    start_server,
    stop_server,
)
from annotations.sync import (
    ImageRef,
    PushSummary,
    current_project,
    ensure_project,
    image_refs,
    push_tasks,
    shown_path,
)
from db.models import AnnotationBatch, AnnotationBatchItem, DatasetRoot, Image, Prediction, Run, RunKind
from db.models.core import ImageStatus
from db.models.labels import ANNOTATION_STATUSES, Annotation, AnnotationStatus, LsProject, LsTask
from pipelines.imagecheck import missing_files
from pipelines.progress import progress_bar
from workbench.errors import ConflictError, ExternalServiceError, InputError, NotFoundError
from workbench.splitting import resolve_split
from workbench.workspace import Workspace


@contextmanager
def _service_errors() -> Iterator[None]:
    """annotations.errors -> the WorkbenchError family (one line + hint, exit 1)."""
    try:
        yield
    except LabelConfigError as exc:
        raise InputError(exc.message, exc.hint) from None
    except AlreadyExists as exc:
        raise ConflictError(exc.message, exc.hint) from None
    except LabelStudioError as exc:
        raise ExternalServiceError(exc.message, exc.hint) from None


def ls_folder(ws: Workspace) -> Path:
    return ws.folder("ls")


# ---- the server ---------------------------------------------------------------------------

def document_root_for(roots: Sequence[str]) -> Path:
    """A folder strictly above every dataset root (LS wants each storage path below its root)."""
    if not roots:
        raise InputError("No images imported yet", "run `wb import PATH` first: the server serves the imported folders")
    return Path(os.path.commonpath([str(Path(r).parent) for r in roots]))


@dataclass
class ServeResult:
    url: str
    email: str
    password: str = field(repr=False)
    pid: int = 0
    document_root: str = ""
    credentials: str = ""
    database: str = "sqlite"  # Label Studio's own database: 'sqlite', or the PostgreSQL URL without its password
    already_running: bool = False
    process: subprocess.Popen | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "process"}


def serve(ws: Workspace, *, port: int | None = None, ls_db: str | None = None) -> ServeResult:
    """Start (or find) the workspace's Label Studio on 127.0.0.1; returns once it answers.

    ls_db: a PostgreSQL URL for Label Studio's own data (a team's server); remembered, so later
    starts need not repeat it (annotations.server.choose_database). None: as before, else SQLite.
    """
    with ws.db.session() as s:
        roots = list(s.scalars(select(DatasetRoot.path)))
    root = document_root_for(roots)
    folder = ls_folder(ws)
    with _service_errors():
        state, proc = start_server(folder, root, port=port, database=ls_db)
    creds = load_credentials(folder)
    return ServeResult(state.url, creds.email if creds else "?", creds.password if creds else "?", state.pid,
                       state.document_root, str(folder / CREDENTIALS_FILE), state.database,
                       already_running=proc is None, process=proc)


def wait_until_stopped(ws: Workspace, result: ServeResult) -> None:
    """Block while the server runs (foreground `wb ls serve`); Ctrl-C or SIGTERM stops it."""
    import signal

    def _interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if result.process is not None:
            result.process.wait()
        else:
            import time

            while pid_alive(result.pid):
                time.sleep(1)
    except KeyboardInterrupt:
        stop_server(ls_folder(ws))


def stop(ws: Workspace) -> bool:
    return stop_server(ls_folder(ws))


def _connection(ws: Workspace) -> tuple[str, str | None, str, str]:
    """(url, token, where the token came from, server key); url from WB_LS_URL or the server wb started.

    The key names the server in the DB: the URL, or `managed:<data dir>` for wb's own server,
    whose port may change from one start to the next.
    """
    folder = ls_folder(ws)
    url = os.environ.get("WB_LS_URL")
    state = load_state(folder)
    key = url
    if not url and state is not None:
        url, key = state.url, MANAGED_PREFIX + state.data_dir
    if not url:
        raise ExternalServiceError(
            "No Label Studio server is known to this workspace",
            "start one with `wb ls serve --detach`, or set WB_LS_URL and WB_LS_TOKEN",
        )
    token, source = os.environ.get("WB_LS_TOKEN"), "WB_LS_TOKEN"
    if not token:
        creds = load_credentials(folder)
        token, source = (creds.token, str(folder / CREDENTIALS_FILE)) if creds else (None, "none")
    return url.rstrip("/"), token, source, (key or url).rstrip("/")


def client_for(ws: Workspace) -> LabelStudioClient:
    return _client_and_key(ws)[0]


def _client_and_key(ws: Workspace) -> tuple[LabelStudioClient, str]:
    url, token, _, key = _connection(ws)
    if not token:
        raise ExternalServiceError(f"No API token for {url}", "set WB_LS_TOKEN (Label Studio: Account & Settings)")
    return LabelStudioClient(url, token), key  # a wrong token or a dead server shows on the first call


def _document_root(ws: Workspace, roots: Sequence[str]) -> str:
    if os.environ.get("WB_LS_DOCUMENT_ROOT"):
        return os.environ["WB_LS_DOCUMENT_ROOT"]
    state = load_state(ls_folder(ws))
    if state is not None and not os.environ.get("WB_LS_URL"):
        return state.document_root
    return str(document_root_for(roots))


def token(ws: Workspace) -> str:
    _, tok, _, _ = _connection(ws)
    if not tok:
        raise NotFoundError("No Label Studio token", "run `wb ls serve --detach` or set WB_LS_TOKEN")
    return tok


def ls_status(ws: Workspace) -> dict:
    """Where the server is, whether it answers, and the DB's project with its counts.

    Everything but `running` comes from the DB and the workspace, so a stopped server still
    shows its project, tasks, annotations and last pull.
    """
    folder = ls_folder(ws)
    external = os.environ.get("WB_LS_URL")
    state = load_state(folder)
    url: str | None
    if external or state is not None:
        url, tok, source, key = _connection(ws)
    else:  # wb's own server, stopped (or never started): its project is keyed by its data dir
        url, key = known_url(folder), MANAGED_PREFIX + str(folder / "data")
        creds = load_credentials(folder)
        tok, source = (creds.token, str(folder / CREDENTIALS_FILE)) if creds else (None, "none")
    project, tasks, counts = None, 0, {}
    with ws.db.session() as s:
        project = current_project(s, key) if key else None
        if project is not None:
            tasks = s.scalar(select(func.count(LsTask.id)).where(LsTask.ls_project_id == project.id)) or 0
            counts = dict(s.execute(select(Annotation.status, func.count()).where(
                Annotation.ls_project_id == project.id).group_by(Annotation.status)).all())
    return {
        "url": url,
        "running": url is not None and is_answering(url),
        "project_id": project.project_id if project else None,
        "tasks_pushed": tasks,
        "annotations": {k: counts.get(k, 0) for k in ANNOTATION_STATUSES},
        "managed": not external and url is not None,
        "pid": state.pid if state and not external else None,
        "token_source": source if tok else None,
        "document_root": state.document_root if state else os.environ.get("WB_LS_DOCUMENT_ROOT"),
        "ls_database": (state.database if state else shown_database(remembered_database(folder))) if not external else None,
        "last_pull_at": project.last_pull_at.isoformat() if project and project.last_pull_at else None,
    }


def rejected(ws: Workspace, *, limit: int | None = None) -> list[dict]:
    """Rejected Label Studio annotations, newest project first, with the reason and a link to the task."""
    with ws.db.session() as s:
        rows = s.execute(
            select(Annotation, LsProject, Image).join(LsProject, Annotation.ls_project_id == LsProject.id)
            .join(Image, Annotation.image_id == Image.id, isouter=True)
            .where(Annotation.status == AnnotationStatus.REJECTED)
            .order_by(LsProject.id.desc(), Annotation.ls_task_id, Annotation.id)
            .limit(limit)
        ).all()
        out = []
        for ann, project, image in rows:
            base = server_url(project.server_url)
            out.append({
                "annotation_id": ann.id, "ls_annotation_id": ann.ls_annotation_id, "ls_task_id": ann.ls_task_id,
                "project_id": project.project_id, "project_gone": project.gone,
                "image_id": ann.image_id, "image": shown_path(image.rel_path, image.source_split) if image else None,
                "annotator": ann.annotator, "reason": ann.reason,
                "link": (task_url(base, project.project_id, ann.ls_task_id)
                         if base and not project.gone and ann.ls_task_id is not None else None),
            })
    return out


# ---- accounts -------------------------------------------------------------------------------

def add_user(ws: Workspace, email: str) -> dict:
    """An annotator account on the workspace's server: {'url', 'id', 'email', 'password'} (shown once)."""
    from annotations.users import add_user as make_user

    client = client_for(ws)
    with _service_errors():
        made = make_user(client, email)
    return {"url": client.url, "id": made.id, "email": made.email, "password": made.password}


def list_users(ws: Workspace) -> list[dict]:
    from annotations.users import list_users as users_on

    with _service_errors():
        return [{"id": u.id, "email": u.email} for u in users_on(client_for(ws))]


# ---- push / pull ----------------------------------------------------------------------------

def _select_images(s, image_refs: Sequence[str] | None, batch: str | None, split: str | None) -> tuple[str, list[int]]:
    """(what was chosen, image ids in push order): --images ids/paths, --batch, or the split's initial batch."""
    if image_refs:
        ids = [int(r) for r in image_refs if r.isdigit()]  # checked when loaded (push: image_refs)
        missing: list[str] = []
        for p in (r for r in image_refs if not r.isdigit()):
            hit = s.scalars(select(Image.id).where(Image.rel_path == Path(p).as_posix())).first()
            if hit is None:
                absolute = Path(p).expanduser().resolve()
                for root in s.scalars(select(DatasetRoot)):
                    if absolute.is_relative_to(root.path):
                        hit = s.scalars(select(Image.id).where(
                            Image.root_id == root.id, Image.rel_path == absolute.relative_to(root.path).as_posix())).first()
            if hit is None:
                missing.append(p)
            else:
                ids.append(hit)
        if missing:
            raise NotFoundError(f"{len(missing)} image(s) not in the workspace, e.g. {missing[0]}", "see `wb status`")
        return "images given", list(dict.fromkeys(ids))
    if batch is None:
        sp = resolve_split(s, split)
        row = s.scalars(select(AnnotationBatch).where(
            AnnotationBatch.split_id == sp.id, AnnotationBatch.kind == "initial").order_by(AnnotationBatch.id.desc())).first()
        if row is None:
            raise NotFoundError(f"Split {sp.name!r} has no initial annotation batch", "pass --batch NAME or --images")
    else:
        row = s.scalars(select(AnnotationBatch).where(AnnotationBatch.name == batch)).first()
        if row is None:
            names = ", ".join(s.scalars(select(AnnotationBatch.name))) or "none"
            raise NotFoundError(f"No annotation batch named {batch!r}", f"existing batches: {names}")
    ids = list(s.scalars(select(AnnotationBatchItem.image_id).where(AnnotationBatchItem.batch_id == row.id)
                         .order_by(AnnotationBatchItem.rank)))
    return f"batch {row.name}", ids


def _run_predictions(s, run_id: int, images: Sequence[ImageRef]) -> dict[int, Prediction]:
    """The run's best-scoring box per image; one line when the run has none for images it never saw."""
    run = s.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"No run {run_id}", "see `wb status` for runs")
    wanted = {im.id for im in images}
    best: dict[int, Prediction] = {}
    seen: set[int] = set()
    for p in s.scalars(select(Prediction).where(Prediction.run_id == run_id, Prediction.image_id.in_(wanted))):
        seen.add(p.image_id)
        if p.x_min is not None and (p.image_id not in best or (p.score or 0) > (best[p.image_id].score or 0)):
            best[p.image_id] = p
    unseen = len(wanted - seen)
    if unseen and run.kind != RunKind.DETECTOR:
        detector = (run.config or {}).get("detector_run")
        raise InputError(f"Run {run_id} ({run.kind}) has no predictions for {unseen} of these {len(wanted)} images",
                         f"pass a detector run, e.g. `--predictions {detector or 'DETECTOR_RUN'}`: wb runs it on the "
                         "images it has not seen")
    if wanted and not best:
        raise InputError(f"Run {run_id} found no chest box in any of these {len(wanted)} images",
                         "push without --predictions, or train the detector longer")
    return best


def _valid_box_images(s, image_ids: Sequence[int]) -> set[int]:
    """The images among these that already have a valid chest box (from Label Studio or a file)."""
    found: set[int] = set()
    ids = list(image_ids)
    for i in range(0, len(ids), 5000):
        found.update(s.scalars(select(Annotation.image_id).where(
            Annotation.status == AnnotationStatus.VALID, Annotation.image_id.in_(ids[i : i + 5000]))))
    return found


def _read_config(label_config: Path | None) -> str:
    path = label_config or LABEL_CONFIG
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InputError(f"Cannot read the label config {path}: {exc.strerror}") from None


def prepare_project(ws: Workspace, *, label_config: Path | None = None, new_project: bool = False) -> int:
    """Create (or check) the workspace's project and its local-files storages; its id on the server."""
    config_text = _read_config(label_config)
    client, key = _client_and_key(ws)
    with ws.db.session() as s, _service_errors():
        roots = list(s.scalars(select(DatasetRoot.path)))
        project = ensure_project(s, client, config_text, document_root=_document_root(ws, roots),
                                 new=new_project, roots=roots, server_key=key)
        return project.row.project_id


LEGACY_NOTE = ("project {id} asks annotators to pick 'normal chest' or 'pneumonia chest' (made by an older wb); "
               "`wb ls push --new-project` moves the images without a valid box to a project with one 'chest' "
               "label whose class wb takes from the image label")


def push(
    ws: Workspace,
    *,
    images: Sequence[str] | None = None,
    batch: str | None = None,
    split: str | None = None,
    predictions_run: int | None = None,
    label_config: Path | None = None,
    new_project: bool = False,
    include_annotated: bool = False,
    progress: bool = True,
) -> dict:
    """Send images as tasks (idempotent), optionally with a run's boxes as pre-annotations.

    Images that already have a valid chest box are not sent again (a new project, or a batch
    annotated from a file) unless `include_annotated`. With a detector run, the images it has
    no prediction for are predicted first (its best.pt, on the CPU).
    """
    config_text = _read_config(label_config)
    with ws.db.session() as s:  # reads only: what to push, and which images need a prediction
        what, chosen_ids = _select_images(s, images, batch, split)
        chosen = image_refs(s, chosen_ids)
        if len(chosen) != len(chosen_ids):
            unknown = sorted(set(chosen_ids) - {im.id for im in chosen})
            raise NotFoundError(f"{len(unknown)} image(s) not in the workspace, e.g. {unknown[0]}", "see `wb status`")
        unusable = [im.rel_path for im in chosen if im.status != ImageStatus.OK or not im.width]
        if unusable:
            raise InputError(f"{len(unusable)} image(s) are unreadable, e.g. {unusable[0]}", "leave them out")
        missing = missing_files(chosen)  # before anything reaches the server
        if missing:
            raise InputError(f"{len(missing)} image file(s) are missing, e.g. {missing[0]}; nothing was pushed",
                             "restore the files (or re-import the dataset) and push again")
        skip = set() if include_annotated else _valid_box_images(s, chosen_ids)
        key = _connection(ws)[3]  # fails here, before any model work, when no server is known
        current = None if new_project else current_project(s, key)
        pushed = set(s.scalars(select(LsTask.image_id).where(LsTask.ls_project_id == current.id))) if current else set()
        run = s.get(Run, predictions_run) if predictions_run is not None else None
    predicted = 0
    if run is not None and run.kind == RunKind.DETECTOR:  # its own session: the push below must not hold a stale read
        from workbench.predicting import predict_missing_boxes  # torch: only when a detector has to run

        predicted = predict_missing_boxes(ws, run.id, [im.id for im in chosen if im.id in pushed or im.id not in skip],
                                          progress=progress)
    # exclusive: a second push at the same time waits, then finds the tasks pushed (no duplicates)
    with ws.db.session(exclusive=True) as s:
        targets = [im for im in chosen if im.id in pushed or im.id not in skip]
        preds = _run_predictions(s, predictions_run, targets) if predictions_run is not None and targets else None
        roots = list(s.scalars(select(DatasetRoot.path)))
        client, key = _client_and_key(ws)
        with _service_errors():
            project = ensure_project(s, client, config_text, document_root=_document_root(ws, roots),
                                     new=new_project, roots=roots, server_key=key)
            summary: PushSummary = push_tasks(
                s, client, project.row, chosen, predictions=preds,
                model_version=str(predictions_run) if predictions_run is not None else None,
                server_task_count=project.task_count, box_labels=project.box_labels, skip=skip,
            )
    note = LEGACY_NOTE.format(id=project.row.project_id) if project.box_labels == "legacy" else None
    return {"selection": what, "images": len(chosen), "url": client.url, "predicted": predicted,
            "box_labels": project.box_labels, "note": note, **summary.as_dict()}


def pull(ws: Workspace, *, progress: bool = True) -> dict:
    """Bring annotations changed since the last pull into the DB (one transaction), then write
    the reasons for rejected ones into their tasks, where the annotator sees them."""
    client, key = _client_and_key(ws)
    with ws.db.session(exclusive=True) as s:  # one pull at a time: each sees the previous one's rows
        row = current_project(s, key)
        if row is None:
            raise NotFoundError(f"Nothing was pushed to {client.url} from this workspace", "run `wb ls push` first")
        with _service_errors():
            client.get_project(row.project_id)
            bar = progress_bar(desc="pull", unit="task", disable=not progress, leave=False)
            try:
                tasks = fetch_changed_tasks(client, row, progress=bar.update)
            finally:
                bar.close()
            users = _user_emails(client) if any(t.get("annotations") for t in tasks) else {}
        summary: PullSummary = apply_tasks(s, row, tasks, users=users)
        row_id = row.id
    out = {"url": client.url, **summary.as_dict()}
    # The annotations are committed; telling the annotator is a second step that a rerun completes.
    with ws.db.session(exclusive=True) as s:
        project = s.get(LsProject, row_id)
        assert project is not None  # committed by the transaction above
        changes = pending_feedback(s, project)
        try:
            out["feedback_written"] = write_feedback(client, changes, {t["id"]: t.get("data") or {} for t in tasks})
        except LabelStudioError as exc:
            raise ExternalServiceError(
                f"Pulled {summary.created} new and {summary.updated} updated annotation(s), but writing the rejection "
                f"reasons back to Label Studio failed: {exc.message}", "run `wb ls pull` again") from None
        out["rejected_total"] = s.scalar(select(func.count(Annotation.id)).where(
            Annotation.ls_project_id == row_id, Annotation.status == AnnotationStatus.REJECTED)) or 0
        out["conflict_tasks"] = conflict_counts(s)["tasks"]
    return out


def _user_emails(client: LabelStudioClient) -> dict[int, str]:
    """LS user id -> e-mail, to name annotators; {} for a token that may not list users (pull then
    reads the name Label Studio shows beside each annotation)."""
    try:
        return {u["id"]: u["email"] for u in client.list_users()}
    except AuthRejected:
        return {}
