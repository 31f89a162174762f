"""Training/eval/suggest runs, their predictions and suggestions (owned by the pipelines side)."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow


class RunStatus(StrEnum):
    """A run's life: created -> running -> done, or interrupted (Ctrl-C; resumable) or failed (with `error`)."""

    CREATED = "created"
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class RunKind(StrEnum):
    """What a run is: a training of one of the two model kinds (workbench.kinds), a suggestion or a file check."""

    DETECTOR = "detector"
    CLASSIFIER = "classifier"
    SUGGEST = "suggest"
    DOCTOR = "doctor"


class Run(Base):
    """A detector/classifier training, an evaluation or a suggestion run.

    Checkpoints live in `artifact_dir`, never in the database.
    """

    __tablename__ = "run"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), doc="a RunKind value")
    name: Mapped[str | None] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.CREATED, doc="a RunStatus value")
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    history: Mapped[list] = mapped_column(JSON, default=list, doc="per-epoch metrics")
    artifact_dir: Mapped[str | None] = mapped_column(String)
    code_version: Mapped[str | None] = mapped_column(String)
    split_id: Mapped[int | None] = mapped_column(ForeignKey("split.id"))
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id"))
    error: Mapped[str | None] = mapped_column(Text)
    owner_host: Mapped[str | None] = mapped_column(String, doc="host of the process running it (while running)")
    owner_pid: Mapped[int | None] = mapped_column(Integer, doc="that process's PID")
    heartbeat_at: Mapped[datetime | None] = mapped_column(doc="UTC; the owner refreshes it while the run is running")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    predictions: Mapped[list[Prediction]] = relationship(back_populates="run", cascade="all, delete-orphan")


class Prediction(Base):
    """A model's output for one image: class probabilities and, for detectors, the top box (pixels)."""

    __tablename__ = "prediction"
    __table_args__ = (Index("ix_prediction_run_image", "run_id", "image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    label: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    prob_pneumonia: Mapped[float | None] = mapped_column(Float)
    x_min: Mapped[float | None] = mapped_column(Float)
    y_min: Mapped[float | None] = mapped_column(Float)
    x_max: Mapped[float | None] = mapped_column(Float)
    y_max: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)

    run: Mapped[Run] = relationship(back_populates="predictions")


class Suggestion(Base):
    """One ranked image of a suggestion run, with each score component."""

    __tablename__ = "suggestion"
    __table_args__ = (Index("ix_suggestion_run_rank", "run_id", "rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    components: Mapped[dict] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    pushed: Mapped[bool] = mapped_column(default=False)
