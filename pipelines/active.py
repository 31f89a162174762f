"""Active-learning scores as pure functions over prediction arrays (no models, no database).

Every function maps arrays for N images to `scores[N]` in [0, 1], higher = more worth annotating.
Conventions (explicit, tested):
- Boxes are `[x_min, y_min, x_max, y_max]` in pixels of the image they were predicted on.
- "No chest found" (no detection: NaN box / NaN score) is maximal detector uncertainty (1.0).
- Non-finite probabilities (NaN/inf from a diverged model) make that image maximally
  uncertain (1.0): we would rather show a person a broken prediction than hide it.
- Off-lung attention is NaN when it cannot be measured (no box, a CAM with no mass); the
  combination ranks NaN below every measured value.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

_EPS = 1e-12


def _rows_finite(a: NDArray[Any]) -> NDArray[Any]:
    """bool[N]: rows of a[N, ...] with only finite values."""
    return np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1) if a.size else np.zeros(a.shape[0], bool)


def _as_probs(probs: NDArray[Any], *, ndim: int = 2) -> NDArray[Any]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != ndim:
        raise ValueError(f"expected a {ndim}-d probability array, got shape {p.shape}")
    return p


# --- detector -------------------------------------------------------------------------------

def top_box_uncertainty(top_scores: NDArray[Any]) -> NDArray[Any]:
    """Least confidence of the detector: 1 - max box score.

    top_scores[N]: the highest detection score per image (NaN = no detection).
    Returns [N]; no detection or a non-finite score -> 1.0.
    Source: least-confidence sampling for detection, Brust et al. 2019, "Active Learning for Deep
    Object Detection" (VISAPP).
    """
    s = np.asarray(top_scores, dtype=np.float64)
    out = 1.0 - np.clip(s, 0.0, 1.0)
    out[~np.isfinite(s)] = 1.0
    return out


def class_scores_from_detections(labels: list[NDArray[Any]], scores: list[NDArray[Any]], n_classes: int = 2) -> NDArray[Any]:
    """Best score per foreground class for each image: [N, n_classes].

    labels[i][D_i] are 1-based class ids (1 = normal chest, 2 = pneumonia chest, torchvision
    style, 0 = background never appears); scores[i][D_i] their scores. A class without a box
    scores 0; an image with no detections gets a NaN row (no chest found).
    """
    out = np.full((len(labels), n_classes), np.nan)
    for i, (lab, sc) in enumerate(zip(labels, scores, strict=True)):
        lab = np.asarray(lab, dtype=np.int64).reshape(-1)
        sc = np.asarray(sc, dtype=np.float64).reshape(-1)
        keep = np.isfinite(sc) & (lab >= 1) & (lab <= n_classes)
        if not keep.any():
            continue
        out[i] = 0.0
        for c, s in zip(lab[keep], sc[keep], strict=True):
            out[i, c - 1] = max(out[i, c - 1], s)
    return out


def margin_uncertainty(probs: NDArray[Any]) -> NDArray[Any]:
    """1 - (p_top1 - p_top2) after renormalising each row to sum 1.

    probs[N, C] (C >= 2), e.g. the detector's best normal-chest and pneumonia-chest scores.
    A row of NaN (no chest found), a non-finite row or a row summing to 0 -> 1.0.
    Source: margin sampling, Scheffer et al. 2001, "Active Hidden Markov Models for Information
    Extraction" (IDA).
    """
    p = _as_probs(probs)
    if p.shape[1] < 2:
        raise ValueError("margin needs at least two classes")
    out = np.ones(p.shape[0])
    total = np.where(_rows_finite(p), p.sum(axis=1), 0.0)
    ok = total > _EPS
    if ok.any():
        q = p[ok] / total[ok, None]
        top2 = np.sort(q, axis=1)[:, -2:]
        out[ok] = 1.0 - (top2[:, 1] - top2[:, 0])
    return np.clip(out, 0.0, 1.0)


def entropy_uncertainty(probs: NDArray[Any]) -> NDArray[Any]:
    """Shannon entropy of each row (renormalised to sum 1) divided by log C, in [0, 1].

    probs[N, C]. A non-finite row or a row summing to 0 -> 1.0.
    Source: predictive-entropy sampling, Settles 2009, "Active Learning Literature Survey" (UW-Madison TR 1648), sec. 3.1.
    """
    p = _as_probs(probs)
    c = p.shape[1]
    if c < 2:
        raise ValueError("entropy needs at least two classes")
    out = np.ones(p.shape[0])
    total = np.where(_rows_finite(p), p.sum(axis=1), 0.0)
    ok = total > _EPS
    if ok.any():
        q = np.clip(p[ok] / total[ok, None], 0.0, 1.0)
        h = -(q * np.log(np.where(q > 0, q, 1.0))).sum(axis=1)
        out[ok] = h / np.log(c)
    return np.clip(out, 0.0, 1.0)


def box_iou(a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
    """IoU of paired boxes a[N, 4] and b[N, 4] (pixels). NaN where either box is non-finite or both are empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih

    def area(x: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None))

    union = area(a) + area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)
    iou[~(_rows_finite(a) & _rows_finite(b))] = np.nan
    return iou


def unflip_boxes(boxes: NDArray[Any], widths: NDArray[Any]) -> NDArray[Any]:
    """Map boxes[N, 4] predicted on horizontally flipped images back: x -> W - x (x_min/x_max swap)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.asarray(widths, dtype=np.float64).reshape(-1)
    return np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)


def localization_instability(boxes: NDArray[Any], flipped_boxes: NDArray[Any], widths: NDArray[Any]) -> NDArray[Any]:
    """1 - IoU(top box, top box of the horizontally flipped image mapped back).

    boxes[N, 4]: top box on the image; flipped_boxes[N, 4]: top box on its mirror image, in the
    mirror's pixels; widths[N]: image widths in pixels. A missing box on either side (NaN) -> 1.0.
    Source: localization stability, Kao et al. 2018, "Localization-Aware Active Learning for
    Object Detection" (ACCV).
    """
    iou = box_iou(boxes, unflip_boxes(flipped_boxes, widths))
    return np.where(np.isfinite(iou), 1.0 - iou, 1.0)


def detector_uncertainty(top: NDArray[Any], ambiguity: NDArray[Any], instability: NDArray[Any]) -> NDArray[Any]:
    """Mean of the three detector components [N] (each in [0, 1]); no chest found gives 1.0 in each, so 1.0 here."""
    return np.asarray(np.mean(np.stack([top, ambiguity, instability]), axis=0))


# --- classifier ensemble -----------------------------------------------------------------------

def mutual_information(member_probs: NDArray[Any]) -> NDArray[Any]:
    """Member disagreement: H(mean_m p_m) - mean_m H(p_m), divided by log C, in [0, 1].

    member_probs[M, N, C]. Equal to the mean KL divergence of each member to the consensus.
    Any non-finite value for an image -> 1.0. Identical members -> 0.
    Source: BALD, Houlsby et al. 2011, "Bayesian Active Learning for Classification and
    Preference Learning" (arXiv:1112.5745), with ensemble members as posterior samples
    (Beluch et al. 2018, "The power of ensembles for active learning in image classification").
    """
    p = _as_probs(member_probs, ndim=3)
    m, n, c = p.shape
    finite = _rows_finite(np.moveaxis(p, 1, 0))
    q = np.where(np.isfinite(p), np.clip(p, 0.0, 1.0), 0.0)
    q = q / np.clip(q.sum(axis=2, keepdims=True), _EPS, None)
    def ent(x: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(-(x * np.log(np.where(x > 0, x, 1.0))).sum(axis=-1))

    mi = ent(q.mean(axis=0)) - ent(q).mean(axis=0)
    out = np.asarray(np.clip(mi / np.log(c), 0.0, 1.0))
    out[~finite] = 1.0
    return out


def vote_entropy(member_probs: NDArray[Any]) -> NDArray[Any]:
    """Entropy of the members' hard votes / log min(M, C), in [0, 1] (ties in a member's argmax go to the lower class).

    member_probs[M, N, C]. Any non-finite value for an image -> 1.0.
    Source: query by committee vote entropy, Dagan & Engelson 1995, "Committee-Based Sampling
    for Training Probabilistic Classifiers" (ICML).
    """
    p = _as_probs(member_probs, ndim=3)
    m, n, c = p.shape
    finite = _rows_finite(np.moveaxis(p, 1, 0))
    votes = np.argmax(np.where(np.isfinite(p), p, -np.inf), axis=2)  # [M, N]
    frac = np.stack([(votes == k).mean(axis=0) for k in range(c)], axis=1)  # [N, C]
    h = -(frac * np.log(np.where(frac > 0, frac, 1.0))).sum(axis=1)
    denom = np.log(min(m, c))
    out: NDArray[Any] = np.clip(h / denom, 0.0, 1.0) if denom > 0 else np.zeros(n)
    out[~finite] = 1.0
    return out


# --- Grad-CAM attention outside the chest ------------------------------------------------------

def _coverage(lo: float, hi: float, n: int) -> NDArray[Any]:
    """Fraction of each unit cell [j, j+1), j < n, covered by the interval [lo, hi)."""
    edges = np.arange(n, dtype=np.float64)
    return np.asarray(np.clip(np.minimum(edges + 1, hi) - np.maximum(edges, lo), 0.0, 1.0))


def cam_outside_share(cams: NDArray[Any], boxes: NDArray[Any], image_sizes: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """(out_share[N], out_area[N]): the CAM mass and the grid area outside the chest box, each in [0, 1].

    cams[N, h, w]: non-negative CAMs (any resolution; negatives are clipped to 0); boxes[N, 4]:
    chest boxes in pixels of the image; image_sizes[N, 2]: (width, height) of the image in pixels,
    used to map the box onto the CAM grid (cells partly inside count by the covered fraction).
    Both are NaN where the share cannot be measured: no box / non-finite or empty box, a
    non-finite CAM, a CAM with no mass.
    """
    cams = np.asarray(cams, dtype=np.float64)
    if cams.ndim != 3:
        raise ValueError(f"cams must be [N, h, w], got shape {cams.shape}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    n, h, w = cams.shape
    if not (len(boxes) == len(sizes) == n):
        raise ValueError("cams, boxes and image_sizes must have the same N")
    share, area = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        cam, box, (W, H) = cams[i], boxes[i], sizes[i]
        if not (np.isfinite(cam).all() and np.isfinite(box).all() and W > 0 and H > 0):
            continue
        cam = np.clip(cam, 0.0, None)
        total = cam.sum()
        if total <= _EPS:
            continue
        cx = _coverage(box[0] * w / W, box[2] * w / W, w)
        cy = _coverage(box[1] * h / H, box[3] * h / H, h)
        in_area = cy.sum() * cx.sum() / (h * w)
        if in_area <= _EPS:  # an empty box marks no chest at all
            continue
        area[i] = max(0.0, 1.0 - in_area)
        share[i] = float(np.clip(1.0 - (cy @ cam @ cx) / total, 0.0, 1.0))
    return share, area


def off_lung_attention(cams: NDArray[Any], boxes: NDArray[Any], image_sizes: NDArray[Any]) -> NDArray[Any]:
    """Share of CAM mass outside the chest box, normalised so uniform = 0 and all-outside = 1.

    Inputs as `cam_outside_share`. score = (out_share - out_area) / (1 - out_area), clipped
    to [0, 1], where out_share is the CAM mass outside the box and out_area the fraction of
    the grid outside it. A box covering the whole image scores 0 (nothing can lie outside it).
    NaN where the share cannot be measured (see `cam_outside_share`).
    Source: wb's own measure; the idea of checking saliency against anatomy follows Zech et al.
    2018, "Variable generalization performance of a deep learning model to detect pneumonia in
    chest radiographs" (PLOS Med), who found CNNs attending to non-lung hospital markers.
    """
    share, area = cam_outside_share(cams, boxes, image_sizes)
    out = np.full(share.shape, np.nan)
    ok = np.isfinite(share)
    full = ok & (area <= _EPS)
    out[full] = 0.0
    part = ok & ~full
    out[part] = np.clip((share[part] - area[part]) / (1.0 - area[part]), 0.0, 1.0)
    return out


def off_lung_members(member_cams: Sequence[NDArray[Any]] | NDArray[Any], boxes: NDArray[Any],
                     image_sizes: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Per-member off-lung scores [M, N] and the combined score [N].

    member_cams: M arrays [N, h_m, w_m] (members may have different CAM grids), or one [M, N, h, w].
    Combined = mean over the members that could be measured (NaN when none could).
    """
    per = np.stack([off_lung_attention(c, boxes, image_sizes) for c in member_cams])
    if per.ndim != 2:
        raise ValueError("member_cams must hold at least one member")
    measured = np.isfinite(per)
    count = measured.sum(axis=0)
    combined = np.where(count > 0, np.where(measured, per, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)
    return per, combined


# --- shortcut reliance ----------------------------------------------------------------------------

def probability_shift(probs: NDArray[Any], chest_probs: NDArray[Any]) -> NDArray[Any]:
    """|P(pneumonia) as it is - P(pneumonia) with everything outside the chest box filled|, in [0, 1].

    probs[N, 2] and chest_probs[N, 2] (column 1 = PNEUMONIA), or [M, N, 2] per member (then [M, N]).
    NaN where either is non-finite (no chest box: nothing was filled). High: the answer depends
    on what lies outside the chest (markers, text, borders), the shortcut boxes should fix.
    Source: occlusion sensitivity (Zeiler & Fergus 2014, "Visualizing and Understanding
    Convolutional Networks", ECCV), with the chest box's complement as the occluded region.
    """
    p = np.asarray(probs, dtype=np.float64)[..., 1]
    c = np.asarray(chest_probs, dtype=np.float64)[..., 1]
    if p.shape != c.shape:
        raise ValueError(f"probs {p.shape} and chest_probs {c.shape} differ in shape")
    out = np.abs(p - c)
    out[~(np.isfinite(p) & np.isfinite(c))] = np.nan
    return np.clip(out, 0.0, 1.0)


# --- combination -----------------------------------------------------------------------------

def rank_normalise(values: NDArray[Any]) -> NDArray[Any]:
    """Average rank / N in (0, 1] for finite values (ties share their mean rank); NaN/inf -> 0.

    values[N]. E.g. [0.1, 0.5, 0.3] -> [1/3, 1, 2/3]. Ranks make components of different
    scales mix fairly (cf. rank aggregation in Settles 2009, sec. 3).
    """
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    out = np.zeros(v.shape)
    ok = np.isfinite(v)
    if ok.any():
        out[ok] = rankdata(v[ok], method="average") / ok.sum()
    return out


def combine_scores(components: Mapping[str, NDArray[Any]], weights: Mapping[str, float]) -> NDArray[Any]:
    """Weighted mean of rank-normalised components: [N] in [0, 1].

    components: name -> values[N] (higher = more worth annotating); weights: name -> weight >= 0
    (names not in `components` are an error; a component without a weight is ignored).
    """
    unknown = sorted(set(weights) - set(components))
    if unknown:
        raise ValueError(f"unknown score component(s) {', '.join(unknown)}; known: {', '.join(sorted(components))}")
    if any(not np.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError("weights must be finite and >= 0")
    total = float(sum(weights.values()))
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    n = len(next(iter(components.values())))
    out = np.zeros(n)
    for name, w in weights.items():
        if w:
            out += w * rank_normalise(components[name])
    return out / total


# --- all components for a pool -----------------------------------------------------------------

COMPONENTS = ("det_confidence", "det_ambiguity", "det_instability", "uncertainty",
              "cls_entropy", "cls_disagreement", "classifier", "off_lung", "off_chest_reliance")
ALIASES = {"detector": "uncertainty", "offlung": "off_lung", "off-lung": "off_lung", "reliance": "off_chest_reliance"}


def score_components(*, top_scores: NDArray[Any], class_scores: NDArray[Any], boxes: NDArray[Any], flip_boxes: NDArray[Any],
                     widths: NDArray[Any], probs: NDArray[Any], member_probs: NDArray[Any],
                     off_lung: NDArray[Any], reliance: NDArray[Any] | None = None) -> dict[str, NDArray[Any]]:
    """Every component [N] by name (see COMPONENTS), from a pool's stored model outputs.

    top_scores[N], class_scores[N, 2], boxes[N, 4], flip_boxes[N, 4] (mirror's pixels), widths[N]:
    the detector; probs[N, 2], member_probs[M, N, 2]: the ensemble; off_lung[N]: combined
    off-lung attention (LayerCAM at stride 16); reliance[N]: `probability_shift` of the ensemble
    (NaN when not measured). `uncertainty` = mean of the three detector parts, `classifier` =
    mean of entropy and member disagreement.
    """
    conf = top_box_uncertainty(top_scores)
    amb = margin_uncertainty(class_scores)
    inst = localization_instability(boxes, flip_boxes, widths)
    ent = entropy_uncertainty(probs)
    dis = mutual_information(member_probs)
    return {"det_confidence": conf, "det_ambiguity": amb, "det_instability": inst,
            "uncertainty": detector_uncertainty(conf, amb, inst), "cls_entropy": ent, "cls_disagreement": dis,
            "classifier": (ent + dis) / 2, "off_lung": np.asarray(off_lung, dtype=np.float64),
            "off_chest_reliance": (np.full(len(ent), np.nan) if reliance is None
                                   else np.asarray(reliance, dtype=np.float64))}
