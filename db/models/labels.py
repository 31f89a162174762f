"""Chest-box annotations and their Label Studio bookkeeping (owned by the annotations room)."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow
from db.models.core import Image

# The detector's box classes, derived from the image label. The one place these names live:
# the label config, the sync and the detector (pipelines) all read them from here.
CHEST_CLASSES: dict[str, str] = {"NORMAL": "normal chest", "PNEUMONIA": "pneumonia chest"}
DETECTOR_CLASSES: tuple[str, ...] = ("background", *CHEST_CLASSES.values())


class AnnotationStatus(StrEnum):
    """What became of an annotation; never deleted, a row keeps its reason."""

    VALID = "valid"  # a box that passed validation and is the image's (or the task's) chosen one
    REJECTED = "rejected"  # failed validation (the reason says why)
    SKIPPED = "skipped"  # skipped in Label Studio, or flagged "no usable chest"
    DELETED = "deleted"  # deleted in Label Studio
    SUPERSEDED = "superseded"  # a valid box that another annotator's box won over (annotations/consensus.py)
    DISPUTED = "disputed"  # a valid box annotators disagree on, none chosen (annotations/consensus.py)


ANNOTATION_STATUSES: tuple[str, ...] = tuple(AnnotationStatus)


class Annotation(Base):
    """One chest box for one image, from Label Studio or an annotation file.

    Boxes are in pixels of the image file wb imported (x to the right, y down, x_max/y_max
    exclusive edges as float). Never deleted: a rejected, skipped or deleted one keeps its row.
    """

    __tablename__ = "annotation"
    __table_args__ = (
        Index("ix_annotation_image", "image_id"),
        Index("ix_annotation_ls", "ls_project_id", "ls_annotation_id"),
        Index("ix_annotation_ls_task", "ls_project_id", "ls_task_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"), doc="NULL if the task names no known image")
    ls_project_id: Mapped[int | None] = mapped_column(ForeignKey("ls_project.id"), doc="wb's row for the LS project")
    source: Mapped[str] = mapped_column(String(16), doc="label_studio | file")
    origin: Mapped[str] = mapped_column(String(16), default="human", doc="human | machine")
    ls_task_id: Mapped[int | None] = mapped_column(Integer)
    ls_annotation_id: Mapped[int | None] = mapped_column(Integer)
    annotator: Mapped[str | None] = mapped_column(String)
    x_min: Mapped[float | None] = mapped_column(Float)
    y_min: Mapped[float | None] = mapped_column(Float)
    x_max: Mapped[float | None] = mapped_column(Float)
    y_max: Mapped[float | None] = mapped_column(Float)
    box_label: Mapped[str | None] = mapped_column(String(32))
    diagnosis: Mapped[str | None] = mapped_column(String(16))
    flags: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), doc="an AnnotationStatus value")
    reason: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict | None] = mapped_column(JSON, doc="the source result, for audit")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    image: Mapped[Image | None] = relationship()


class LsProject(Base):
    """A Label Studio project wb created on a server, and where the last pull stopped.

    The API token is never stored here (see annotations/server.py: a 0600 file or WB_LS_TOKEN).
    """

    __tablename__ = "ls_project"
    __table_args__ = (Index("ix_ls_project_url", "server_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    server_url: Mapped[str] = mapped_column(
        String, doc="base URL (no trailing slash), or managed:<data dir> for the server `wb ls serve` runs"
    )
    project_id: Mapped[int] = mapped_column(Integer, doc="the project's id on that server")
    title: Mapped[str] = mapped_column(String)
    document_root: Mapped[str | None] = mapped_column(String, doc="the server's local-files document root")
    storages: Mapped[dict] = mapped_column(JSON, default=dict, doc="dataset root path -> local storage id")
    model_version: Mapped[str | None] = mapped_column(String, doc="predictions that pre-fill the editor")
    last_updated_at: Mapped[str | None] = mapped_column(
        String(32), doc="newest task updated_at seen by a pull (server clock, %Y-%m-%dT%H:%M:%S.%fZ)"
    )
    last_pull_at: Mapped[datetime | None] = mapped_column(doc="wb clock, for status only")
    gone: Mapped[bool] = mapped_column(default=False, doc="deleted on the server; a new project replaces it")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LsTask(Base):
    """One image pushed as a task: makes push idempotent and maps tasks back to images."""

    __tablename__ = "ls_task"
    __table_args__ = (
        UniqueConstraint("ls_project_id", "image_id", name="uq_ls_task_project_image"),
        UniqueConstraint("ls_project_id", "ls_task_id", name="uq_ls_task_project_task"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ls_project_id: Mapped[int] = mapped_column(ForeignKey("ls_project.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    ls_task_id: Mapped[int] = mapped_column(Integer)
    prediction_runs: Mapped[list] = mapped_column(JSON, default=list, doc="run ids whose boxes are attached")
    pushed_at: Mapped[datetime] = mapped_column(default=utcnow)
    feedback: Mapped[str | None] = mapped_column(
        Text, doc="what wb last wrote into the task's wb_feedback field (annotations/feedback.py)")
