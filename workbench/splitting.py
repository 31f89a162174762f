"""`wb split`: assign readable images to train/val/test and choose the first annotation batch."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select

from db import Database
from db.models import AnnotationBatch, AnnotationBatchItem, Image, ImageStatus, Run, Split, SplitMember
from pipelines.splits import check_ratios, grouped_split, pick_per_class, random_split, union_groups
from workbench.configs import STRATEGIES, SplitConfig
from workbench.errors import ConflictError, InputError, NotFoundError


@dataclass
class SplitSummary:
    name: str
    strategy: str
    counts: dict = field(default_factory=dict)  # part -> label -> n
    batch: dict = field(default_factory=dict)  # label -> n
    batch_name: str | None = None
    shared_patients: int = 0  # patient keys in more than one part (0 for grouped)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _assign(config: SplitConfig, images: Sequence[Any]) -> list[str]:
    """images: rows with label, patient_key, sha256, source_split."""
    labels = [im.label for im in images]
    groups = union_groups([im.patient_key for im in images], [im.sha256 for im in images])
    if config.strategy == "grouped":
        return grouped_split(labels, groups, config.ratios, config.seed)
    if config.strategy == "random":
        return random_split(len(images), config.ratios, config.seed)
    # source: the dataset's test folder stays the test set; train+val are re-split by patient.
    train_r, val_r, _ = config.ratios
    pool = [i for i, im in enumerate(images) if im.source_split != "test"]
    val_share = val_r / (train_r + val_r) if train_r + val_r else 0.0
    sub = grouped_split([labels[i] for i in pool], [groups[i] for i in pool], (1 - val_share, val_share, 0.0), config.seed)
    parts = ["test"] * len(images)
    for i, part in zip(pool, sub, strict=True):
        parts[i] = part
    return parts


def create_split(db: Database, name: str | None, config: SplitConfig, *, replace: bool = False) -> SplitSummary:
    if config.strategy not in STRATEGIES:
        raise InputError(f"Unknown split strategy {config.strategy!r}", f"choose one of {', '.join(STRATEGIES)}")
    try:
        check_ratios(config.ratios)
    except ValueError as exc:
        raise InputError(str(exc), "e.g. --ratios 0.8,0.1,0.1") from None
    if config.batch_per_class < 0:
        raise InputError(f"--batch-per-class must be 0 or more, got {config.batch_per_class}")
    name = name or config.strategy
    with db.session() as s:
        existing = s.scalar(select(Split).where(Split.name == name))
        if existing is not None:
            if not replace:
                raise ConflictError(f"A split named {name!r} exists", "pick another --name or pass --replace")
            used_by = list(s.scalars(select(Run.id).where(Run.split_id == existing.id).order_by(Run.id)))
            if used_by:
                runs = ", ".join(map(str, used_by[:5])) + (", ..." if len(used_by) > 5 else "")
                raise ConflictError(f"Split {name!r} is used by {len(used_by)} run(s) ({runs}): replacing it would "
                                    "leave them without the split they were trained and evaluated on",
                                    "give the new split another --name")
            # Statements, not the ORM cascade, which would load every member first (100k rows at scale).
            s.execute(delete(AnnotationBatch).where(AnnotationBatch.split_id == existing.id))
            s.execute(delete(SplitMember).where(SplitMember.split_id == existing.id))
            s.execute(delete(Split).where(Split.id == existing.id))
            s.expunge(existing)
        # Rows of the columns a split needs, not ORM objects: at 100k images that is ~5x less memory.
        images = s.execute(select(Image.id, Image.label, Image.patient_key, Image.sha256, Image.source_split,
                                  Image.duplicate_of_id).where(Image.status == ImageStatus.OK).order_by(Image.id)).all()
        if not images:
            raise InputError("No readable images in the workspace", "run `wb import PATH` first")
        parts = _assign(config, images)
        split = Split(name=name, strategy=config.strategy, seed=config.seed,
                      params={"ratios": list(config.ratios), "batch_per_class": config.batch_per_class})
        s.add(split)
        s.flush()
        s.execute(insert(SplitMember), [{"split_id": split.id, "image_id": im.id, "part": p}
                                        for im, p in zip(images, parts, strict=True)])
        summary = SplitSummary(name=name, strategy=config.strategy)
        counts: dict = {p: Counter() for p in ("train", "val", "test")}
        owners: dict[str, set] = {}
        for im, p in zip(images, parts, strict=True):
            counts[p][im.label] += 1
            owners.setdefault(im.patient_key, set()).add(p)
        summary.counts = {p: dict(c) for p, c in counts.items()}
        summary.shared_patients = sum(len(v) > 1 for v in owners.values())
        # First annotation batch: from train, first copies only (a duplicate adds no information).
        train = [im for im, p in zip(images, parts, strict=True) if p == "train" and im.duplicate_of_id is None]
        picked = pick_per_class([im.label for im in train], config.batch_per_class, config.seed)
        if picked:
            batch = AnnotationBatch(name=f"{name}/initial", split_id=split.id, kind="initial",
                                    params={"per_class": config.batch_per_class, "seed": config.seed})
            s.add(batch)
            s.flush()
            s.add_all(AnnotationBatchItem(batch_id=batch.id, image_id=train[i].id, rank=r) for r, i in enumerate(picked))
            summary.batch_name = batch.name
            summary.batch = dict(Counter(train[i].label for i in picked))
    return summary


def resolve_split(session, name: str | None) -> Split:
    """The split called `name`, or the newest one when name is None."""
    query = select(Split).order_by(Split.id.desc()) if name is None else select(Split).where(Split.name == name)
    split = session.scalars(query).first()
    if split is None:
        if name is None:
            raise NotFoundError("No split exists yet", "run `wb split` first")
        names = ", ".join(session.scalars(select(Split.name))) or "none"
        raise NotFoundError(f"No split named {name!r}", f"existing splits: {names}")
    return split
