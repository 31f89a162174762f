"""Split assignment as pure functions over per-image arrays (no database).

Parts are "train", "val", "test". Grouped splits never put two images of one group in two parts;
a group is the union of images that share a patient key or are byte-identical (same sha256).
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence

PARTS = ("train", "val", "test")


def union_groups(patient_keys: Sequence[str], sha256s: Sequence[str]) -> list[int]:
    """Group id per image: images joined by a shared patient key or identical content.

    Returns ids 0..G-1 numbered by first appearance.
    """
    parent = list(range(len(patient_keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for keys in (patient_keys, sha256s):
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    ids: dict[int, int] = {}
    return [ids.setdefault(find(i), len(ids)) for i in range(len(parent))]


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(not math.isfinite(r) or r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {list(ratios)}")
    return tuple(float(r) for r in ratios)  # type: ignore[return-value]


def grouped_split(
    labels: Sequence[str], groups: Sequence[int], ratios: Sequence[float], seed: int
) -> list[str]:
    """Part per image, patient-grouped and stratified by label.

    Each group takes its majority label as stratum. Within a stratum, groups are shuffled with
    `seed`, placed largest first, each into the part furthest below its target image count.
    """
    ratios = check_ratios(ratios)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    strata: dict[str, list[int]] = defaultdict(list)
    for g, idx in members.items():
        label = Counter(labels[i] for i in idx).most_common(1)[0][0]
        strata[label].append(g)
    rng = random.Random(seed)
    part_of_group: dict[int, str] = {}
    for label in sorted(strata):
        gs = sorted(strata[label])
        rng.shuffle(gs)
        gs.sort(key=lambda g: -len(members[g]))  # stable: shuffled order among equal sizes
        total = sum(len(members[g]) for g in gs)
        target = [r * total for r in ratios]
        have = [0, 0, 0]
        for g in gs:
            k = max(range(3), key=lambda p: (target[p] - have[p], -p))
            part_of_group[g] = PARTS[k]
            have[k] += len(members[g])
    return [part_of_group[g] for g in groups]


def random_split(n: int, ratios: Sequence[float], seed: int) -> list[str]:
    """Image-level random split (the seed study's): no grouping, no stratification."""
    ratios = check_ratios(ratios)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_train = round(ratios[0] * n)
    n_val = round(ratios[1] * n)
    parts = [""] * n
    for rank, i in enumerate(order):
        parts[i] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return parts


def pick_per_class(labels: Sequence[str], per_class: int, seed: int) -> list[int]:
    """Indices of up to `per_class` images of each label, drawn at random with `seed`.

    Returned interleaved by label (NORMAL, PNEUMONIA, NORMAL, ...) so any prefix stays balanced.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    picks = {label: rng.sample(idx, min(per_class, len(idx))) for label, idx in sorted(by_label.items())}
    out: list[int] = []
    for k in range(max((len(p) for p in picks.values()), default=0)):
        out.extend(p[k] for p in picks.values() if k < len(p))
    return out
