"""Chest-box annotations and their Label Studio bookkeeping (owned by the annotations room)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow
from db.models.core import Image


class Annotation(Base):
    """One chest box for one image, from Label Studio or an annotation file.

    Boxes are in pixels of the image file wb imported (x to the right, y down, x_max/y_max
    exclusive edges as float). Never deleted: a rejected, skipped or deleted one keeps its row.
    """

    __tablename__ = "annotation"
    __table_args__ = (
        Index("ix_annotation_image", "image_id"),
        Index("ix_annotation_ls", "ls_annotation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"), doc="NULL if the task names no known image")
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
    status: Mapped[str] = mapped_column(String(16), doc="valid | rejected | skipped | deleted")
    reason: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict | None] = mapped_column(JSON, doc="the source result, for audit")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    image: Mapped[Image | None] = relationship()
