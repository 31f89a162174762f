"""Runs and the queries the use cases share: one small module below training, evaluation,
suggesting, explaining and simulate, so that none of them imports another.

A run is a `Run` row (kind, config JSON, status, timestamps, metrics, code version) with its files
in `<workspace>/runs/<id>/`. Here: create one, find one, change its status (Ctrl-C marks it
interrupted, any other error failed, with the error), load a trained model with its config, and
the data every use case reads: the newest chest boxes, a split part's images, image records.
torch is imported only by the functions that build models.
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Annotation, AnnotationStatus, Image, ImageStatus, Run, RunStatus, SplitMember, utcnow
from workbench.configs import TRAIN_CONFIGS, ClassifierConfig, DetectorConfig, SuggestConfig, TrainConfig, config_from_dict
from workbench.errors import InputError, NotFoundError, from_exception
from workbench.splitting import resolve_split
from workbench.workspace import Workspace

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pipelines.classification import Ensemble
    from pipelines.data import ImageRecord

TRAINED_KINDS = tuple(TRAIN_CONFIGS)  # the kinds `wb train` makes (workbench.kinds)
Box = tuple[float, float, float, float]


# --- the run row --------------------------------------------------------------------------------

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # holds the four packages (a git checkout, or site-packages)
PACKAGES = ("workbench", "db", "annotations", "pipelines")


def code_version(root: Path = SOURCE_ROOT) -> str:
    """The package version plus the exact code: `0.1.0+git.<commit>` (`.dirty` when tracked files
    differ from it), or outside a git checkout `0.1.0+code.<sha256 of the packages' .py files>`."""
    try:
        from importlib.metadata import version

        base = version("wb")
    except Exception:  # noqa: BLE001 - not installed as a distribution (running from source)
        base = "unknown"
    commit = _git_commit(root)
    return f"{base}+git.{commit}" if commit else f"{base}+code.{source_hash(root)}"


def _git_commit(root: Path) -> str | None:
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git binary, or it hung
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (".dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def source_hash(root: Path = SOURCE_ROOT) -> str:
    """sha256 (first 16 hex digits) over the path and bytes of every .py file of wb's packages."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def get_run(session: Session, run_id: int, kinds: tuple[str, ...] = TRAINED_KINDS) -> Run:
    run = session.get(Run, run_id)
    if run is None or run.kind not in kinds:
        raise NotFoundError(f"No {' or '.join(kinds)} run with id {run_id}", "see `wb status` for runs")
    return run


def create_run(ws: Workspace, kind: str, config: dict, *, split_id: int | None, name: str | None = None,
               parent_run_id: int | None = None, status: RunStatus = RunStatus.CREATED) -> tuple[int, Path]:
    """A new run row with the code version, and its folder `<workspace>/runs/<id>/`: (id, folder)."""
    with ws.db.session() as s:
        run = Run(kind=kind, name=name, status=status, config=config, split_id=split_id, parent_run_id=parent_run_id,
                  code_version=code_version())
        s.add(run)
        s.flush()
        run_id = run.id
    folder = ws.folder("runs", str(run_id))
    update_run(ws, run_id, artifact_dir=str(folder))
    return run_id, folder


def run_folder(run: Run) -> Path:
    """The run's files folder (`<workspace>/runs/<id>/`), set when the run was created."""
    if not run.artifact_dir:
        raise InputError(f"Run {run.id} has no folder", "it was not made by wb train or wb suggest")
    return Path(run.artifact_dir)


def update_run(ws: Workspace, run_id: int, **fields: Any) -> None:
    """Set columns of run `run_id` in their own transaction (e.g. status, metrics, history)."""
    with ws.db.session() as s:
        run = s.get(Run, run_id)
        for k, v in fields.items():
            setattr(run, k, v)


def set_status(ws: Workspace, run_id: int, status: RunStatus, error: str | None = None) -> None:
    update_run(ws, run_id, status=status, error=error)


# --- who runs it: a run whose owner died (kill -9, power cut) shows as interrupted -------------

HEARTBEAT_S = 30.0  # a running run's owner refreshes heartbeat_at this often
STALE_AFTER_S = 300.0  # a run owned on another host is interrupted after this long without a heartbeat


def owner_fields() -> dict[str, Any]:
    """Columns that name this process as a run's owner, with a fresh heartbeat."""
    return {"owner_host": socket.gethostname(), "owner_pid": os.getpid(), "heartbeat_at": utcnow()}


def owner_gone(run: Run, now: datetime | None = None) -> bool:
    """True when `run` says running but the process running it is gone.

    On the owner's host the PID decides (a process with that PID that started after the last
    heartbeat is a newcomer, not the owner); elsewhere, a heartbeat older than STALE_AFTER_S.
    Runs recorded before owners were (no owner) fall back to their last update.
    """
    if run.status != RunStatus.RUNNING:
        return False
    last = run.heartbeat_at or run.updated_at
    if run.owner_pid is not None and run.owner_host == socket.gethostname():
        return not _process_alive(run.owner_pid, since=last)
    return ((now or utcnow()) - last).total_seconds() > STALE_AFTER_S


def shown_status(run: Run) -> str:
    """The status to show: RUNNING becomes INTERRUPTED when its owner is gone."""
    return RunStatus.INTERRUPTED if owner_gone(run) else run.status


def _process_alive(pid: int, since: datetime | None = None) -> bool:
    """Whether process `pid` runs (a zombie has exited); with `since` (UTC), it must have started before it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():  # no procfs (macOS): existence is all we know
        return True
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return True
    if fields[0] == "Z":
        return False
    if since is None:
        return True
    started = datetime.fromtimestamp(boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), UTC).replace(tzinfo=None)
    return started <= since + timedelta(seconds=2)  # btime is whole seconds


@contextmanager
def running(ws: Workspace, run_id: int, **fields: Any) -> Iterator[None]:
    """Mark the run running, owned by this process, and keep its heartbeat fresh while the block runs.

    Ctrl-C marks it interrupted, any other error failed (see `recording_failures`); both re-raise.
    """
    update_run(ws, run_id, status=RunStatus.RUNNING, error=None, **owner_fields(), **fields)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ws, run_id, stop), name=f"run-{run_id}-heartbeat", daemon=True)
    beat.start()
    try:
        with recording_failures(ws, run_id):
            yield
    finally:
        stop.set()
        beat.join()


def _heartbeat(ws: Workspace, run_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            with ws.db.session() as s:
                s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))
        except Exception:  # noqa: BLE001 - a missed beat (e.g. the DB busy) must not stop the run
            continue


@contextmanager
def recording_failures(ws: Workspace, run_id: int) -> Iterator[None]:
    """Ctrl-C marks the run interrupted; any other exception marks it failed with the error. Both re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        set_status(ws, run_id, RunStatus.INTERRUPTED)
        raise
    except Exception as exc:
        known = from_exception(exc)  # the same one line the CLI shows (e.g. which image file is damaged)
        error = known.message if known is not None else f"{type(exc).__name__}: {exc}"
        set_status(ws, run_id, RunStatus.FAILED, error)
        raise


# --- trained models -----------------------------------------------------------------------------

def build_model(kind: str, config: TrainConfig, weights: str | None = None) -> nn.Module:
    """The model for `config` (weights override: 'none' when a checkpoint supplies them)."""
    from pipelines.models import WeightsUnavailable
    from pipelines.registry import UnknownBackbone
    from workbench.kinds import get_kind

    try:
        return get_kind(kind).build(config, weights or config.weights)
    except (WeightsUnavailable, UnknownBackbone, ValueError) as exc:
        raise InputError(str(exc)) from None


def load_trained(run: Run, checkpoint: str = "best") -> tuple[nn.Module, TrainConfig]:
    """(model on CPU in eval mode, config) from the run's `best.pt` or `last.pt`."""
    from pipelines import engine

    config = config_from_dict(run.kind, run.config)
    path = Path(run.artifact_dir or "") / f"{checkpoint}.pt"
    try:
        state = engine.load_checkpoint(path)
    except engine.CorruptCheckpoint as exc:
        raise InputError(str(exc), f"train run {run.id} again, or resume it with `--resume {run.id}`") from None
    model = build_model(run.kind, config, "none")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise InputError(f"Checkpoint {path} does not fit run {run.id}'s model") from None
    return model.eval(), config


def load_models(ws: Workspace, config: SuggestConfig,
                device: torch.device) -> tuple[nn.Module, DetectorConfig, Ensemble, ClassifierConfig]:
    """(detector, its config, classifier, its config) of a suggest config, on `device`, in eval mode."""
    from pipelines.classification import Ensemble

    with ws.db.session() as s:
        det_run = get_run(s, config.detector_run, ("detector",))
        cls_run = get_run(s, config.classifier_run, ("classifier",))
        detector, det_cfg = load_trained(det_run, config.checkpoint)
        classifier, cls_cfg = load_trained(cls_run, config.checkpoint)
    # build_model made these from the runs' kinds; the checks tell the type checker.
    assert isinstance(det_cfg, DetectorConfig) and isinstance(classifier, Ensemble) and isinstance(cls_cfg, ClassifierConfig)
    return detector.to(device), det_cfg, classifier.to(device), cls_cfg


# --- shared queries -----------------------------------------------------------------------------

def latest_boxes(session: Session, image_ids: Iterable[int] | None = None) -> dict[int, Box]:
    """image id -> its newest valid chest box (pixels of the imported file, exclusive max)."""
    query = select(Annotation.image_id, Annotation.x_min, Annotation.y_min, Annotation.x_max, Annotation.y_max).where(
        Annotation.status == AnnotationStatus.VALID, Annotation.image_id.is_not(None), Annotation.x_min.is_not(None)
    ).order_by(Annotation.id)
    boxes: dict[int, Box] = {}
    for a in session.execute(query):  # rows, not ORM objects (their raw JSON is not needed here)
        x0, y0, x1, y1 = a.x_min, a.y_min, a.x_max, a.y_max
        if a.image_id is None or x0 is None or y0 is None or x1 is None or y1 is None:
            continue
        if x1 > x0 and y1 > y0:
            boxes[a.image_id] = (x0, y0, x1, y1)
    if image_ids is not None:
        keep = set(image_ids)
        boxes = {k: v for k, v in boxes.items() if k in keep}
    return boxes


def part_images(session: Session, split_name: str | None, part: str) -> tuple[int, list[Image]]:
    """(split id, readable images of one part, by id); their files must be on disk."""
    split = resolve_split(session, split_name)
    images = list(session.scalars(
        select(Image).join(SplitMember, SplitMember.image_id == Image.id)
        .where(SplitMember.split_id == split.id, SplitMember.part == part, Image.status == ImageStatus.OK)
        .order_by(Image.id)
    ))
    require_files(images, f"split part {part!r}")
    return split.id, images


def require_files(images: Iterable[Any], what: str) -> None:
    """One-line error, before any model work, when image files have gone from disk."""
    from pipelines.imagecheck import missing_files  # Pillow: not for `wb status`, which reads run states here

    missing = missing_files(images)
    if missing:
        raise InputError(f"{len(missing)} image file(s) of {what} are missing, e.g. {missing[0]}",
                         "wb reads images where they were imported: restore the folder, or import the new copy")


def dimensions(image: Image) -> tuple[int, int]:
    """(width, height) in pixels of a readable image (measured at import)."""
    if image.width is None or image.height is None:
        raise InputError(f"{image.rel_path} has no size: it was unreadable when imported", "see `wb status`")
    return image.width, image.height


def to_record(image: Image, box: Box | None = None) -> ImageRecord:
    from pipelines.data import ImageRecord

    return ImageRecord(image_id=image.id, path=image.abs_path, label=int(image.label == "PNEUMONIA"), box=box)
