"""Several annotators on one task: which box wb keeps, and which pairs disagree. Pure functions.

When two people annotate the same task, Label Studio keeps both annotations; wb keeps every one
as a row and lets a stated policy pick the one box the image gets (status `valid`). The others
keep their row with status `superseded` (another box was chosen) or `disputed` (the consensus
policy found no box a majority agrees on; the image then has no box until they agree), and a
reason naming the policy and the chosen annotation.

Policies (POLICIES; DEFAULT_POLICY = "newest"):
- `newest`: the box most recently submitted or updated (Label Studio's `updated_at`; ties: the
  higher annotation id). A reviewer who re-draws a box overrides the first annotator, and one
  annotator alone is never affected.
- `first`: the box submitted first (the lowest annotation id: ids grow with creation).
- `consensus`: a box is kept only when more than half of the task's annotators who gave an
  opinion (a box, or the flag "no usable chest") agree with it (see `disagreement`); of those,
  the one with the highest mean IoU with the others (ties: the lowest id). No such box: all are
  `disputed`.

Two opinions disagree when one has a box and the other says "no usable chest", when the labels
or flags differ, or when the IoU of their boxes is below the threshold (DEFAULT_IOU = 0.7).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

from annotations.convert import PixelBox
from db.models.labels import AnnotationStatus

POLICIES = ("newest", "first", "consensus")
DEFAULT_POLICY = "newest"
# Chest boxes are large: careful annotators agree at IoU ~0.85-0.95; below 0.7 one of them
# drew a different region (a lung only, or the whole film), which a person should look at.
DEFAULT_IOU = 0.7


@dataclass(frozen=True)
class Opinion:
    """One annotator's answer on a task.

    key: the caller's id for it (e.g. the Label Studio annotation id; also the order of creation).
    box: pixels (None: the annotator flagged "no usable chest"). updated: a sortable timestamp
    (ISO 8601 text) of its last change, or None.
    """

    key: int
    box: PixelBox | None
    label: str | None = None
    flags: tuple[str, ...] = ()
    annotator: str | None = None
    updated: str | None = None


@dataclass(frozen=True)
class Resolution:
    """The policy's answer for one task: the chosen key (None: none) and, for every opinion with a
    box that was not chosen, (status, reason) with status `superseded` or `disputed`."""

    chosen: int | None
    others: dict[int, tuple[str, str]] = field(default_factory=dict)


def box_iou(a: PixelBox, b: PixelBox) -> float:
    """Intersection over union of two pixel boxes (float edges); 0.0 when either has no area."""
    w = min(a.x_max, b.x_max) - max(a.x_min, b.x_min)
    h = min(a.y_max, b.y_max) - max(a.y_min, b.y_min)
    inter = max(0.0, w) * max(0.0, h)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def disagreement(a: Opinion, b: Opinion, iou_min: float = DEFAULT_IOU) -> str | None:
    """Why two opinions disagree, in a few words; None when they agree."""
    if (a.box is None) != (b.box is None):
        return "one drew a box, the other flagged 'no usable chest'"
    if a.box is None or b.box is None:
        return None  # both: no usable chest
    if a.label != b.label:
        return f"labels differ ({a.label!r} vs {b.label!r})"
    if tuple(sorted(a.flags)) != tuple(sorted(b.flags)):
        return f"flags differ ({', '.join(sorted(a.flags)) or 'none'} vs {', '.join(sorted(b.flags)) or 'none'})"
    iou = box_iou(a.box, b.box)
    if iou < iou_min:
        return f"IoU {iou:.2f} < {iou_min:.2f}"
    return None


def disagreeing_pairs(opinions: Sequence[Opinion], iou_min: float = DEFAULT_IOU) -> list[tuple[Opinion, Opinion, str]]:
    """Every pair (in key order) that disagrees, with the reason."""
    ordered = sorted(opinions, key=lambda o: o.key)
    return [(a, b, why) for a, b in combinations(ordered, 2) if (why := disagreement(a, b, iou_min)) is not None]


def _who(o: Opinion) -> str:
    return f"annotation {o.key} by {o.annotator or 'unknown'}"


def resolve(opinions: Sequence[Opinion], policy: str = DEFAULT_POLICY, iou_min: float = DEFAULT_IOU) -> Resolution:
    """Pick the task's box by `policy` (see the module docstring). Raises ValueError for an unknown policy.

    Only opinions with a box can be chosen; "no usable chest" opinions count as votes in consensus.
    One box alone is always chosen, whatever the policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    boxes = [o for o in opinions if o.box is not None]
    if not boxes:
        return Resolution(None)
    if len(boxes) == 1 and policy != "consensus":
        return Resolution(boxes[0].key)
    if policy == "newest":
        chosen = max(boxes, key=lambda o: (o.updated or "", o.key))
    elif policy == "first":
        chosen = min(boxes, key=lambda o: o.key)
    else:
        support = {o.key: sum(disagreement(o, other, iou_min) is None for other in opinions) for o in boxes}
        majority = [o for o in boxes if support[o.key] * 2 > len(opinions)]
        if not majority:
            why = (f"policy 'consensus': no box agreed by more than half of the {len(opinions)} annotators "
                   f"(IoU >= {iou_min:.2f}, same label and flags); see `wb annotations conflicts`")
            return Resolution(None, {o.key: (AnnotationStatus.DISPUTED, why) for o in boxes})

        def mean_iou(o: Opinion) -> float:
            ious = [box_iou(o.box, p.box) for p in boxes if p.key != o.key and o.box is not None and p.box is not None]
            return sum(ious) / len(ious) if ious else 0.0

        chosen = max(majority, key=lambda o: (support[o.key], mean_iou(o), -o.key))
    why = f"policy {policy!r} kept {_who(chosen)}"
    return Resolution(chosen.key, {o.key: (AnnotationStatus.SUPERSEDED, why) for o in boxes if o.key != chosen.key})
