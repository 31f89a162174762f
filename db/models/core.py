"""Dataset tables: roots, images, splits and annotation batches."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.models.base import Base, utcnow


class ImageStatus(StrEnum):
    """Whether wb can use an imported file."""

    OK = "ok"
    UNREADABLE = "unreadable"  # not an image, truncated or empty when imported (the reason says which)
    CHANGED = "changed"  # set by wb doctor: the file differs from what was imported
    MISSING = "missing"  # set by wb doctor: the file is gone


class DatasetRoot(Base):
    """A folder that holds a `chest_xray` tree; image paths are relative to it."""

    __tablename__ = "dataset_root"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True, doc="absolute folder above chest_xray/")
    layout: Mapped[str] = mapped_column(String, doc="kaggle | mendeley_v2 | mendeley_v3")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="root")


class Image(Base):
    """One file found by `wb import`. Unreadable files are kept, with the reason."""

    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("root_id", "rel_path"),
        Index("ix_image_sha256", "sha256"),
        Index("ix_image_patient_key", "patient_key"),
        # `wb status` counts and lists from these instead of scanning every image (issue 12.5).
        Index("ix_image_status_mode", "status", "mode"),
        Index("ix_image_label", "label"),
        Index("ix_image_duplicate_of_id", "duplicate_of_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("dataset_root.id"))
    rel_path: Mapped[str] = mapped_column(String, doc="path under the root, '/'-separated")
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer, doc="pixels; NULL when unreadable")
    height: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str | None] = mapped_column(String(8), doc="Pillow mode: L, RGB, ...")
    label: Mapped[str] = mapped_column(String(16), doc="NORMAL | PNEUMONIA")
    subtype: Mapped[str | None] = mapped_column(String(16), doc="normal | bacteria | virus")
    patient_key: Mapped[str] = mapped_column(String)
    source_split: Mapped[str] = mapped_column(String(8), doc="train | val | test (folder)")
    status: Mapped[str] = mapped_column(
        String(16), default=ImageStatus.OK, doc="an ImageStatus value")
    reason: Mapped[str | None] = mapped_column(Text)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"))
    phash: Mapped[str | None] = mapped_column(String(32), doc="perceptual hash (hex), by wb audit")
    checked_at: Mapped[datetime | None] = mapped_column(doc="UTC; when wb doctor last compared the file with this row")
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)

    root: Mapped[DatasetRoot] = relationship(back_populates="images")

    @property
    def abs_path(self) -> str:
        return f"{self.root.path}/{self.rel_path}"


class Split(Base):
    """A named assignment of images to train/val/test."""

    __tablename__ = "split"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    strategy: Mapped[str] = mapped_column(String, doc="grouped | random | source")
    seed: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict] = mapped_column(JSON, default=dict, doc="ratios and other settings")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[SplitMember]] = relationship(
        back_populates="split", cascade="all, delete-orphan"
    )


class SplitMember(Base):
    __tablename__ = "split_member"
    __table_args__ = (Index("ix_split_member_part", "split_id", "part"),)

    split_id: Mapped[int] = mapped_column(ForeignKey("split.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), primary_key=True)
    part: Mapped[str] = mapped_column(String(8), doc="train | val | test")

    split: Mapped[Split] = relationship(back_populates="members")
    image: Mapped[Image] = relationship()


class AnnotationBatch(Base):
    """Images chosen for box annotation: the first batch from `wb split`, later ones from suggest."""

    __tablename__ = "annotation_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    split_id: Mapped[int | None] = mapped_column(ForeignKey("split.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), doc="initial | suggestion | manual")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[AnnotationBatchItem]] = relationship(
        back_populates="batch", cascade="all, delete-orphan", order_by="AnnotationBatchItem.rank"
    )


class AnnotationBatchItem(Base):
    __tablename__ = "annotation_batch_item"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_batch.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)

    batch: Mapped[AnnotationBatch] = relationship(back_populates="items")
    image: Mapped[Image] = relationship()
