"""Dataset traps as pure functions: near-duplicates, patients shared between parts, metadata shortcuts.

Nothing here touches the database; `workbench.analysis` feeds these functions arrays and rows.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from numpy.typing import NDArray

# 11x11 DCT bits = 121 bits = 31 hex digits, so a hash fits Image.phash (String(32)). On the
# Kermany subset the 64-bit default (8x8) separates nothing: unrelated chest films sit 2-4 bits
# apart. At 121 bits exact copies sit at 0 and the closest distinct films at 10+.
PHASH_SIZE = 11
PHASH_HEX_LEN = -(-PHASH_SIZE * PHASH_SIZE // 4)
PHASH_DRAFT = (128, 128)  # JPEG DCT-scaled decode: the hash only looks at a 44x44 thumbnail
PARTS = ("train", "val", "test")


def phash_hex(path: str) -> str:
    """Perceptual hash (imagehash.phash, 11x11 bits) of one image file, as a hex string.

    Raises OSError when the file cannot be read or decoded.
    """
    import imagehash
    from PIL import Image

    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("L", PHASH_DRAFT)
        return str(imagehash.phash(img, hash_size=PHASH_SIZE))


def hex_to_bits(hashes: Sequence[str]) -> NDArray[Any]:
    """Hex hashes of equal length -> bytes[N, ceil(len/2)] (uint8), for XOR + popcount."""
    if not hashes:
        return np.zeros((0, 0), dtype=np.uint8)
    lengths = {len(h) for h in hashes}
    if len(lengths) != 1:
        raise ValueError(f"hashes must all have the same length, got lengths {sorted(lengths)}")
    width = lengths.pop()
    padded = [h if width % 2 == 0 else "0" + h for h in hashes]
    return np.frombuffer(bytes.fromhex("".join(padded)), dtype=np.uint8).reshape(len(hashes), -1)


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def near_duplicate_groups(hashes: Sequence[str], threshold: int, *, block: int = 512) -> list[list[int]]:
    """Indices grouped by perceptual hash: i and j join when hamming(h_i, h_j) <= threshold.

    Groups are connected components (a chain a~b~c is one group even if a and c are far apart).
    Returns only groups of two or more, each sorted, ordered by their first index.
    Works in row blocks of `block` so memory stays O(block * N).
    """
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    bits = hex_to_bits(hashes)
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, block):
        rows = bits[start : start + block]
        dist = np.bitwise_count(rows[:, None, :] ^ bits[None, :, :]).sum(axis=2, dtype=np.int32)
        for r, j in zip(*np.nonzero(dist <= threshold), strict=True):
            i = start + int(r)
            if int(j) > i:
                parent[find(int(j))] = find(i)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        members[find(i)].append(i)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])


def groups_across_parts(groups: Sequence[Sequence[int]],
                        parts: Sequence[str | None] | Mapping[int, str | None]) -> list[list[int]]:
    """The groups whose members sit in two or more parts of a split (None = not in the split).

    parts[i] is image i's part: a sequence by position, or a mapping by image id."""
    out = []
    for g in groups:
        seen = {parts[i] for i in g if parts[i] is not None}
        if len(seen) > 1:
            out.append(list(g))
    return out


def patient_overlap(patient_keys: Sequence[str], parts: Sequence[str], *, examples: int = 5) -> dict[str, Any]:
    """Patients whose images sit in more than one part of a split.

    Returns {"patients": P, "shared_patients": S, "shared_images": images of those S patients,
    "by_pair": {"train-val": n, "train-test": n, "val-test": n} (patients in both parts of the pair),
    "examples": up to `examples` shared keys, sorted}.
    """
    if len(patient_keys) != len(parts):
        raise ValueError("patient_keys and parts must have the same length")
    owners: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for key, part in zip(patient_keys, parts, strict=True):
        owners[key].add(part)
        counts[key] += 1
    shared = sorted(k for k, p in owners.items() if len(p) > 1)
    by_pair = {f"{a}-{b}": sum(1 for k in shared if {a, b} <= owners[k]) for a, b in combinations(PARTS, 2)}
    return {
        "patients": len(owners),
        "shared_patients": len(shared),
        "shared_images": sum(counts[k] for k in shared),
        "by_pair": by_pair,
        "examples": shared[:examples],
    }


def _oriented_auc(values: NDArray[Any], y: NDArray[Any]) -> float:
    """ROC-AUC of one feature used as a score, in whichever direction separates better (>= 0.5)."""
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, values))
    return max(auc, 1.0 - auc)


def metadata_shortcut(
    widths: Sequence[float],
    heights: Sequence[float],
    modes: Sequence[str],
    labels: Sequence[str],
    *,
    positive: str = "PNEUMONIA",
    groups: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """How well image width, height and mode alone predict the label.

    Model: logistic regression on (log width, log height, is-RGB), standardised; scored by
    out-of-fold ROC-AUC over `folds` stratified folds (patient-grouped when `groups` is given, so
    one patient's films never sit on both sides). AUC ~0.5 means no shortcut; ~1 means the
    metadata gives the label away.

    Returns {"n", "folds", "auc" (mean over folds), "auc_std", "fold_aucs", "per_class":
    {label: {"n", "median_width", "median_height", "median_aspect" (h/w), "rgb_fraction"}},
    "features": {"width"|"height"|"mode": {"auc_alone" (oriented, >= 0.5), "higher_in": label}}}.
    "auc" is None (with "skipped": why) when a class has fewer than 2 images.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(labels)
    if not (len(widths) == len(heights) == len(modes) == n):
        raise ValueError("widths, heights, modes and labels must have the same length")
    w = np.asarray(widths, dtype=float)
    h = np.asarray(heights, dtype=float)
    rgb = np.array([m == "RGB" for m in modes], dtype=float)
    y = np.array([lab == positive for lab in labels], dtype=int)
    per_class = {}
    for label in sorted(set(labels)):
        m = np.array([lab == label for lab in labels])
        per_class[label] = {
            "n": int(m.sum()),
            "median_width": float(np.median(w[m])),
            "median_height": float(np.median(h[m])),
            "median_aspect": round(float(np.median(h[m] / w[m])), 4),
            "rgb_fraction": round(float(rgb[m].mean()), 4),
        }
    result: dict[str, Any] = {"n": n, "positive": positive, "per_class": per_class, "features": {}, "auc": None}
    smallest = min(int(y.sum()), int(n - y.sum()))
    if smallest < 2:
        result["skipped"] = "needs at least 2 images of each class"
        return result
    for name, values in (("width", w), ("height", h), ("mode", rgb)):
        avg = {lab: float(np.mean(values[np.array([x == lab for x in labels])])) for lab in per_class}
        result["features"][name] = {
            "auc_alone": round(_oriented_auc(values, y), 4),
            "higher_in": max(avg, key=lambda lab: avg[lab]) if len(set(avg.values())) > 1 else None,
        }
    k = min(folds, smallest)
    if groups is not None:
        k = min(k, len(set(groups)))
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(w, y, groups=list(groups))
    else:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(w, y)
    x = np.column_stack([np.log(w), np.log(h), rgb])
    aucs = []
    for train, test in splits:
        if len(set(y[test])) < 2 or len(set(y[train])) < 2:
            continue  # a fold with one class has no AUC
        model = make_pipeline(StandardScaler(), LogisticRegression())
        model.fit(x[train], y[train])
        aucs.append(float(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])))
    result["folds"] = len(aucs)
    result["fold_aucs"] = [round(a, 4) for a in aucs]
    if aucs:
        result["auc"] = round(float(np.mean(aucs)), 4)
        result["auc_std"] = round(float(np.std(aucs)), 4)
    else:
        result["skipped"] = "no fold held both classes"
    return result
