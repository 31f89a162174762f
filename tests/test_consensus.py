"""Several annotators on one task: IoU, disagreement and the three policies, hand-computed."""
from __future__ import annotations

import pytest

from annotations.consensus import Opinion, box_iou, disagreeing_pairs, disagreement, resolve
from annotations.convert import PixelBox

A = PixelBox(0, 0, 10, 10)
B = PixelBox(5, 0, 15, 10)  # half of A: intersection 50, union 150 -> IoU 1/3
C = PixelBox(0, 0, 10, 9)  # inside A: 90 / 100 -> IoU 0.9


def _o(key, box, updated=None, label="normal chest", flags=(), who=None):
    return Opinion(key, box, label if box is not None else None, tuple(flags), who or f"u{key}@lab.org", updated)


def test_box_iou_hand_computed():
    assert box_iou(A, A) == 1.0
    assert box_iou(A, B) == pytest.approx(1 / 3)
    assert box_iou(A, C) == pytest.approx(0.9)
    assert box_iou(A, PixelBox(20, 20, 30, 30)) == 0.0
    assert box_iou(PixelBox(0, 0, 0, 5), PixelBox(0, 0, 0, 5)) == 0.0  # no area: no overlap to speak of


def test_disagreement_reasons():
    assert disagreement(_o(1, A), _o(2, C)) is None
    assert disagreement(_o(1, A), _o(2, B)) == "IoU 0.33 < 0.70"
    assert disagreement(_o(1, A), _o(2, B), iou_min=0.3) is None
    assert disagreement(_o(1, A), _o(2, C, label="pneumonia chest")).startswith("labels differ")
    assert disagreement(_o(1, A), _o(2, C, flags=["label looks wrong"])) == "flags differ (none vs label looks wrong)"
    assert disagreement(_o(1, A), _o(2, None)) == "one drew a box, the other flagged 'no usable chest'"
    assert disagreement(_o(1, None), _o(2, None)) is None
    pairs = disagreeing_pairs([_o(3, B), _o(1, A), _o(2, C)])
    assert [(a.key, b.key) for a, b, _ in pairs] == [(1, 3), (2, 3)]


def test_one_box_stands_whatever_the_policy():
    for policy in ("newest", "first", "consensus"):
        assert resolve([_o(4, A)], policy).chosen == 4


def test_newest_and_first():
    ops = [_o(1, A, "2026-01-02T00:00:00Z"), _o(2, B, "2026-01-01T00:00:00Z")]  # 1 was edited after 2 was made
    newest = resolve(ops, "newest")
    assert newest.chosen == 1 and newest.others == {2: ("superseded", "policy 'newest' kept annotation 1 by u1@lab.org")}
    assert resolve(ops, "first").chosen == 1
    tied = [_o(1, A, "t"), _o(2, B, "t")]
    assert resolve(tied, "newest").chosen == 2  # same time: the later annotation
    assert resolve([_o(5, A, "b"), _o(3, B, "a")], "first").chosen == 3


def test_consensus_needs_a_majority():
    # two who agree: the one with the higher mean IoU to the others (tie: the lower id)
    agree = resolve([_o(1, A), _o(2, C)], "consensus")
    assert agree.chosen == 1 and agree.others[2][0] == "superseded"
    # two who disagree: no box; both disputed
    split = resolve([_o(1, A), _o(2, B)], "consensus")
    assert split.chosen is None and {k: v[0] for k, v in split.others.items()} == {1: "disputed", 2: "disputed"}
    assert "no box agreed by more than half of the 2 annotators" in split.others[1][1]
    # three: A and C agree (2 of 3), B is outvoted. Mean IoU with the others: A (0.9 + 1/3) / 2 = 0.617,
    # C (0.9 + 45/145) / 2 = 0.605 (C and B overlap 5 x 9 = 45 of 90 + 100 - 45), so A is kept
    three = resolve([_o(1, A), _o(2, B), _o(3, C)], "consensus")
    assert box_iou(C, B) == pytest.approx(45 / 145)
    assert three.chosen == 1 and three.others[2][0] == "superseded" and three.others[3][0] == "superseded"
    # "no usable chest" is a vote: one box against it has no majority
    assert resolve([_o(1, A), _o(2, None)], "consensus").chosen is None
    assert resolve([_o(1, A), _o(2, C), _o(3, None)], "consensus").chosen == 1  # 2 of 3 agree; tie on IoU: lower id


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown policy 'majority'"):
        resolve([_o(1, A)], "majority")
