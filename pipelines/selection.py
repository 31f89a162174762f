"""Choosing a batch from scored candidates: rank, exclusions, per-patient cap, near-duplicates,
class balance and an optional diversity stage. Pure and deterministic for a given seed.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class SelectionRules:
    """How to turn scores into a batch (stored on the suggest run as JSON)."""

    k: int = 20  # batch size
    per_patient: int = 1  # at most this many images of one patient key (0 = no cap)
    phash_distance: int = 4  # perceptual hashes within this Hamming distance are near-duplicates (-1 = off)
    balance: bool = False  # at most ceil(k / classes) per label, then fill with the best of the rest
    diversity: bool = False  # k-center greedy over embeddings within the top `pool_factor * k`
    pool_factor: int = 3
    seed: int = 0  # breaks ties in score


@dataclass
class Selection:
    order: list[int]  # indices into the candidate arrays, best first
    skipped: dict[int, str] = field(default_factory=dict)  # index -> why it was passed over


def rank_indices(scores: Sequence[float] | NDArray[Any], seed: int = 0) -> list[int]:
    """Indices by descending score; NaN last; ties broken by a permutation drawn from `seed`."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    tie = np.random.default_rng(seed).permutation(len(s))
    key = np.where(np.isfinite(s), -s, np.inf)
    return [int(i) for i in np.lexsort((tie, key))]


def hamming_hex(a: str, b: str) -> int:
    """Bit distance between two equal-length hex strings (imagehash's `str(hash)` form)."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def k_center_greedy(embeddings: NDArray[Any], k: int, first: int = 0, centres: NDArray[Any] | None = None) -> list[int]:
    """Pick k rows of embeddings[P, D] that cover the set: each next pick is farthest from all picked.

    Starts from row `first` unless `centres[Q, D]` (e.g. already-labelled images) are given, in
    which case the first pick is the row farthest from them. Ties go to the lower index.
    Source: core-set selection, Sener & Savarese 2018, "Active Learning for Convolutional Neural
    Networks: A Core-Set Approach" (ICLR).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    p = len(x)
    k = min(k, p)
    if k <= 0:
        return []
    dist = np.full(p, np.inf)
    picked: list[int] = []
    if centres is not None and len(centres):
        c = np.asarray(centres, dtype=np.float64)
        dist = np.sqrt(((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)).min(axis=1)
    else:
        picked.append(first)
        dist = np.sqrt(((x - x[first]) ** 2).sum(-1))
    while len(picked) < k:
        d = dist.copy()
        d[picked] = -1.0
        nxt = int(np.argmax(d))
        picked.append(nxt)
        dist = np.minimum(dist, np.sqrt(((x - x[nxt]) ** 2).sum(-1)))
    return picked


def select_batch(
    scores: Sequence[float] | NDArray[Any],
    rules: SelectionRules,
    *,
    patient_keys: Sequence[str] | None = None,
    sha256s: Sequence[str] | None = None,
    phashes: Sequence[str | None] | None = None,
    labels: Sequence[str] | None = None,
    excluded: Sequence[bool] | None = None,
    embeddings: NDArray[Any] | None = None,
) -> Selection:
    """The batch, best first, under `rules`.

    scores[N] (higher first). Walking the ranking, a candidate is skipped when excluded, when its
    patient already has `per_patient` picks, when its sha256 equals a pick's (exact duplicate),
    or when its phash is within `phash_distance` bits of a pick's. With `balance`, each label
    takes at most ceil(k / labels) picks before the rest of the batch is filled by rank. With
    `diversity`, the first `pool_factor * k` eligible candidates form a shortlist from which
    k-center greedy over `embeddings[N, D]` (seeded by the top candidate) picks k; the batch is
    returned in score order.
    """
    n = len(scores)
    if rules.k < 0:
        raise ValueError("k must be >= 0")
    for name, arr in (("patient_keys", patient_keys), ("sha256s", sha256s), ("phashes", phashes),
                      ("labels", labels), ("excluded", excluded), ("embeddings", embeddings)):
        if arr is not None and len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries for {n} scores")
    if rules.diversity and embeddings is None:
        raise ValueError("the diversity stage needs embeddings")
    if rules.balance and labels is None:
        raise ValueError("class balance needs labels")
    ranked = rank_indices(scores, rules.seed)
    skipped: dict[int, str] = {}
    target = rules.k * max(rules.pool_factor, 1) if rules.diversity else rules.k
    quota = math.ceil(rules.k / len(set(labels))) if rules.balance and labels is not None and n else None

    chosen: list[int] = []
    per_patient: Counter[str] = Counter()
    per_label: Counter[str] = Counter()
    seen_sha: set[str] = set()
    seen_phash: list[str] = []
    deferred: list[int] = []  # over the class quota: considered again to fill the batch

    def blocker(i: int) -> str | None:
        if excluded is not None and excluded[i]:
            return "excluded"
        if patient_keys is not None and rules.per_patient > 0 and per_patient[patient_keys[i]] >= rules.per_patient:
            return f"patient {patient_keys[i]} already has {rules.per_patient} pick(s)"
        if sha256s is not None and sha256s[i] in seen_sha:
            return "exact duplicate of a pick"
        phash = phashes[i] if phashes is not None else None
        if phash and rules.phash_distance >= 0:
            for other in seen_phash:
                if len(other) == len(phash) and hamming_hex(other, phash) <= rules.phash_distance:
                    return "near-duplicate of a pick (phash)"
        return None

    def take(i: int) -> None:
        chosen.append(i)
        if patient_keys is not None:
            per_patient[patient_keys[i]] += 1
        if sha256s is not None:
            seen_sha.add(sha256s[i])
        phash = phashes[i] if phashes is not None else None
        if phash:
            seen_phash.append(phash)
        if labels is not None:
            per_label[labels[i]] += 1

    for i in ranked:
        if len(chosen) >= target:
            break
        why = blocker(i)
        if why:
            skipped[i] = why
            continue
        if quota is not None and labels is not None and per_label[labels[i]] >= quota * (target // max(rules.k, 1)):
            deferred.append(i)
            continue
        take(i)
    for i in deferred:  # not enough of the other classes: fill by rank, rules still apply
        if len(chosen) >= target:
            break
        why = blocker(i)
        if why:
            skipped[i] = why
        else:
            take(i)
    for i in deferred:
        if i not in chosen and i not in skipped:
            skipped[i] = "class quota full"

    if rules.diversity and len(chosen) > rules.k:
        emb = np.asarray(embeddings, dtype=np.float64)[chosen]
        keep = set(k_center_greedy(emb, rules.k, first=0))
        for j, i in enumerate(chosen):
            if j not in keep:
                skipped[i] = "too similar to a pick (diversity stage)"
        chosen = [i for j, i in enumerate(chosen) if j in keep]
    return Selection(order=chosen[: rules.k], skipped=skipped)
