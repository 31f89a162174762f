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
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from tqdm import tqdm

from annotations import LABEL_CONFIG
from annotations.client import LabelStudioClient
from annotations.errors import LabelConfigError, LabelStudioError
from annotations.pull import PullSummary, apply_tasks, fetch_changed_tasks
from annotations.server import (
    CREDENTIALS_FILE,
    is_answering,
    load_credentials,
    load_state,
    pid_alive,
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
)
from db.models import AnnotationBatch, AnnotationBatchItem, DatasetRoot, Image, Prediction, Run
from db.models.labels import LsTask
from pipelines.imagecheck import missing_files
from workbench.errors import ExternalServiceError, InputError, NotFoundError
from workbench.splitting import resolve_split
from workbench.workspace import Workspace


@contextmanager
def _service_errors() -> Iterator[None]:
    """annotations.errors -> the WorkbenchError family (one line + hint, exit 1)."""
    try:
        yield
    except LabelConfigError as exc:
        raise InputError(exc.message, exc.hint) from None
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
    pid: int
    document_root: str
    credentials: str
    already_running: bool
    process: subprocess.Popen | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "process"}


def serve(ws: Workspace, *, port: int | None = None) -> ServeResult:
    """Start (or find) the workspace's Label Studio on 127.0.0.1; returns once it answers."""
    with ws.db.session() as s:
        roots = list(s.scalars(select(DatasetRoot.path)))
    root = document_root_for(roots)
    folder = ls_folder(ws)
    with _service_errors():
        state, proc = start_server(folder, root, port=port)
    creds = load_credentials(folder)
    return ServeResult(state.url, creds.email if creds else "?", state.pid, state.document_root,
                       str(folder / CREDENTIALS_FILE), already_running=proc is None, process=proc)


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
        url, key = state.url, f"managed:{state.data_dir}"
    if not url:
        raise ExternalServiceError(
            "No Label Studio server is known to this workspace",
            "start one with `wb ls serve --detach`, or set WB_LS_URL and WB_LS_TOKEN",
        )
    token, source = os.environ.get("WB_LS_TOKEN"), "WB_LS_TOKEN"
    if not token:
        creds = load_credentials(folder)
        token, source = (creds.token, str(folder / CREDENTIALS_FILE)) if creds else (None, "none")
    return url.rstrip("/"), token, source, key.rstrip("/")


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
    folder = ls_folder(ws)
    state = load_state(folder)
    known = bool(os.environ.get("WB_LS_URL")) or state is not None
    url, tok, source, key = _connection(ws) if known else (None, None, "none", None)
    project, tasks = None, 0
    with ws.db.session() as s:
        project = current_project(s, key) if key else None
        if project is not None:
            tasks = s.scalar(select(func.count(LsTask.id)).where(LsTask.ls_project_id == project.id)) or 0
    info = {
        "url": url,
        "running": bool(url) and is_answering(url),
        "project_id": project.project_id if project else None,
        "tasks_pushed": tasks,
        "managed": state is not None and not os.environ.get("WB_LS_URL"),
        "pid": state.pid if state and not os.environ.get("WB_LS_URL") else None,
        "token_source": source if tok else None,
        "document_root": state.document_root if state else os.environ.get("WB_LS_DOCUMENT_ROOT"),
        "last_pull_at": project.last_pull_at.isoformat() if project and project.last_pull_at else None,
    }
    return info


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
    run = s.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"No run {run_id}", "see `wb status` for runs")
    wanted = {im.id for im in images}
    best: dict[int, Prediction] = {}
    for p in s.scalars(select(Prediction).where(Prediction.run_id == run_id, Prediction.x_min.is_not(None))):
        if p.image_id in wanted and (p.image_id not in best or (p.score or 0) > (best[p.image_id].score or 0)):
            best[p.image_id] = p
    if not best:
        raise InputError(f"Run {run_id} has no boxes for these images", "pick a detector run that predicted them")
    return best


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
        row, _ = ensure_project(s, client, config_text, document_root=_document_root(ws, roots),
                                new=new_project, roots=roots, server_key=key)
        return row.project_id


def push(
    ws: Workspace,
    *,
    images: Sequence[str] | None = None,
    batch: str | None = None,
    split: str | None = None,
    predictions_run: int | None = None,
    label_config: Path | None = None,
    new_project: bool = False,
) -> dict:
    """Send images as tasks (idempotent), optionally with a run's boxes as pre-annotations."""
    config_text = _read_config(label_config)
    with ws.db.session() as s:
        what, chosen_ids = _select_images(s, images, batch, split)
        chosen = image_refs(s, chosen_ids)
        if len(chosen) != len(chosen_ids):
            unknown = sorted(set(chosen_ids) - {im.id for im in chosen})
            raise NotFoundError(f"{len(unknown)} image(s) not in the workspace, e.g. {unknown[0]}", "see `wb status`")
        unusable = [im.rel_path for im in chosen if im.status != "ok" or not im.width]
        if unusable:
            raise InputError(f"{len(unusable)} image(s) are unreadable, e.g. {unusable[0]}", "leave them out")
        missing = missing_files(chosen)  # before anything reaches the server
        if missing:
            raise InputError(f"{len(missing)} image file(s) are missing, e.g. {missing[0]}; nothing was pushed",
                             "restore the files (or re-import the dataset) and push again")
        preds = _run_predictions(s, predictions_run, chosen) if predictions_run is not None else None
        roots = list(s.scalars(select(DatasetRoot.path)))
        client, key = _client_and_key(ws)
        with _service_errors():
            row, count = ensure_project(s, client, config_text, document_root=_document_root(ws, roots),
                                        new=new_project, roots=roots, server_key=key)
            summary: PushSummary = push_tasks(
                s, client, row, chosen, predictions=preds,
                model_version=str(predictions_run) if predictions_run is not None else None, server_task_count=count,
            )
    return {"selection": what, "images": len(chosen), "url": client.url, **summary.as_dict()}


def pull(ws: Workspace, *, progress: bool = True) -> dict:
    """Bring annotations changed since the last pull into the DB (one transaction)."""
    client, key = _client_and_key(ws)
    with ws.db.session() as s:
        row = current_project(s, key)
        if row is None:
            raise NotFoundError(f"Nothing was pushed to {client.url} from this workspace", "run `wb ls push` first")
        with _service_errors():
            client.get_project(row.project_id)
            bar = tqdm(desc="pull", unit="task", disable=not progress, leave=False)
            try:
                tasks = fetch_changed_tasks(client, row, progress=bar.update)
            finally:
                bar.close()
        summary: PullSummary = apply_tasks(s, row, tasks)
    return {"url": client.url, **summary.as_dict()}
