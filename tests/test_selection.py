"""Selection rules: ranking, exclusions, per-patient cap, duplicates, balance, diversity, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.selection import SelectionRules, hamming_hex, k_center_greedy, rank_indices, select_batch

NAN = float("nan")


def test_rank_indices_descending_nan_last_and_seeded_ties():
    assert rank_indices([0.2, NAN, 0.9, 0.5]) == [2, 3, 0, 1]
    ties = [0.5] * 6
    a, b, c = rank_indices(ties, seed=1), rank_indices(ties, seed=1), rank_indices(ties, seed=2)
    assert a == b and sorted(a) == list(range(6))
    assert a != c  # another seed breaks the ties differently


def test_top_k_with_exclusions():
    sel = select_batch([0.9, 0.8, 0.7, 0.6], SelectionRules(k=2), excluded=[False, True, False, False])
    assert sel.order == [0, 2]
    assert sel.skipped == {1: "excluded"}


def test_per_patient_cap_default_one_and_two():
    scores = [0.9, 0.8, 0.7, 0.6]
    patients = ["p1", "p1", "p1", "p2"]
    assert select_batch(scores, SelectionRules(k=3), patient_keys=patients).order == [0, 3]
    assert select_batch(scores, SelectionRules(k=3, per_patient=2), patient_keys=patients).order == [0, 1, 3]
    assert select_batch(scores, SelectionRules(k=3, per_patient=0), patient_keys=patients).order == [0, 1, 2]


def test_exact_and_near_duplicates_are_suppressed():
    scores = [0.9, 0.8, 0.7, 0.6]
    sha = ["a", "a", "b", "c"]
    ph = ["ff00", "0000", "ff01", "0f00"]  # ff01 is 1 bit from ff00; 0f00 is 4 bits away
    sel = select_batch(scores, SelectionRules(k=4, phash_distance=2), sha256s=sha, phashes=ph)
    assert sel.order == [0, 3]
    assert sel.skipped[1] == "exact duplicate of a pick"
    assert "near-duplicate" in sel.skipped[2]
    off = select_batch(scores, SelectionRules(k=4, phash_distance=-1), sha256s=sha, phashes=ph)
    assert off.order == [0, 2, 3]
    assert hamming_hex("ff00", "0f00") == 4


def test_missing_phash_never_blocks():
    sel = select_batch([0.9, 0.8], SelectionRules(k=2, phash_distance=64), phashes=[None, "00"])
    assert sel.order == [0, 1]


def test_class_balance_caps_each_label_then_fills():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    labels = ["P", "P", "P", "N", "P"]
    sel = select_batch(scores, SelectionRules(k=4, balance=True), labels=labels)
    # quota ceil(4/2) = 2 per label: P0, P1, N3, then only P is left: fill with P2 by rank
    assert sel.order == [0, 1, 3, 2]
    assert select_batch(scores, SelectionRules(k=3, balance=True), labels=labels).order == [0, 1, 3]


def test_k_center_greedy_hand_computed():
    x = np.array([[0.0], [1.0], [10.0], [11.0], [5.0]])
    assert k_center_greedy(x, 3, first=0) == [0, 3, 4]
    # with labelled centres at 0 and 11, the farthest point is 5.0
    assert k_center_greedy(x, 1, centres=np.array([[0.0], [11.0]])) == [4]


def test_diversity_stage_picks_spread_points_in_score_order():
    scores = [0.9, 0.85, 0.8, 0.7, 0.1]
    emb = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [0.0, 0.2], [9.0, 9.0]])
    sel = select_batch(scores, SelectionRules(k=2, diversity=True, pool_factor=2), embeddings=emb)
    # shortlist = top 4 (indices 0..3); k-center from 0 takes the far point 2
    assert sel.order == [0, 2]
    assert "diversity" in sel.skipped[1]
    plain = select_batch(scores, SelectionRules(k=2), embeddings=emb)
    assert plain.order == [0, 1]


def test_same_seed_same_batch():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(50), 1)  # many ties
    patients = [f"p{i % 17}" for i in range(50)]
    rules = SelectionRules(k=10, seed=7)
    a = select_batch(scores, rules, patient_keys=patients).order
    b = select_batch(scores, rules, patient_keys=patients).order
    assert a == b and len(a) == 10
    assert len({patients[i] for i in a}) == 10


def test_bad_inputs():
    with pytest.raises(ValueError, match="patient_keys"):
        select_batch([0.1, 0.2], SelectionRules(k=1), patient_keys=["a"])
    with pytest.raises(ValueError, match="embeddings"):
        select_batch([0.1], SelectionRules(k=1, diversity=True))
    with pytest.raises(ValueError, match="labels"):
        select_batch([0.1], SelectionRules(k=1, balance=True))
    assert select_batch([], SelectionRules(k=3)).order == []
