"""Use case `suggest`: rank the unlabelled pool by detector uncertainty, classifier uncertainty and
Grad-CAM attention outside the chest, pick a diverse batch, store it, optionally push it.

A suggest run is a `Run` (kind "suggest") whose `Prediction` rows hold each scored image's model
outputs (the detector's top box, its mirror's box, class scores, ensemble and member
probabilities, off-lung attention) as they are computed, batch by batch: an interrupted run
resumes where it stopped when the same command is given again. Embeddings for the diversity
stage go to `<run folder>/embeddings-*.npz`. The ranking itself is computed from the stored
rows (pipelines.active), the batch by pipelines.selection, and written as `Suggestion` rows.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from db.models import (
    Annotation,
    AnnotationBatch,
    AnnotationBatchItem,
    DatasetRoot,
    Image,
    Prediction,
    Run,
    RunKind,
    RunStatus,
    SplitMember,
    Suggestion,
)
from db.models.core import ImageStatus
from db.models.labels import AnnotationStatus, LsTask
from pipelines import active, engine
from pipelines.progress import progress_bar
from pipelines.scoring import PoolItem, score_pool_batches
from pipelines.selection import SelectionRules, select_batch
from workbench.configs import SuggestConfig, validate_suggest_config
from workbench.errors import ConflictError, InputError
from workbench.runs import (
    create_run,
    get_run,
    latest_boxes,
    load_models,
    owner_gone,
    require_files,
    run_folder,
    running,
)
from workbench.splitting import resolve_split
from workbench.workspace import Workspace


@dataclass
class SuggestResult:
    run_id: int
    candidates: int
    scored: int
    resumed: int  # images whose scores an earlier, interrupted run had stored
    seconds: float
    rows: list[dict] = field(default_factory=list)  # rank order: image, image_id, rank, score, components, reason
    pushed: dict | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- candidates -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    image_id: int
    rel_path: str
    abs_path: str
    label: str
    patient_key: str
    sha256: str
    phash: str | None
    width: int
    height: int
    box: tuple[float, float, float, float] | None  # a valid annotated chest box, if one exists


def list_candidates(session, config: SuggestConfig) -> tuple[int, list[Candidate]]:
    """(split id, readable first-copy images of the parts that are not annotated, batched or pushed)."""
    split = resolve_split(session, config.split)
    # Rows of the columns a candidate needs, not ORM images: the pool can be 100k images.
    images = session.execute(
        select(Image.id, DatasetRoot.path, Image.rel_path, Image.label, Image.patient_key, Image.sha256, Image.phash,
               Image.width, Image.height)
        .join(SplitMember, SplitMember.image_id == Image.id).join(DatasetRoot, DatasetRoot.id == Image.root_id)
        .where(SplitMember.split_id == split.id, SplitMember.part.in_(config.parts), Image.status == ImageStatus.OK,
               Image.duplicate_of_id.is_(None), Image.width.is_not(None))
        .order_by(Image.id)).all()
    boxes = latest_boxes(session, [im.id for im in images])
    if not config.include_annotated:
        # Any valid annotation counts (even one whose box is degenerate): a person has seen the image.
        annotated = set(session.scalars(select(Annotation.image_id).where(Annotation.status == AnnotationStatus.VALID)))
        pushed = set(session.scalars(select(LsTask.image_id)))
        batched = set(session.scalars(select(AnnotationBatchItem.image_id)))
        images = [im for im in images if im.id not in annotated | pushed | batched]
    out = [Candidate(im.id, im.rel_path, f"{im.path}/{im.rel_path}", im.label, im.patient_key, im.sha256, im.phash,
                     im.width, im.height, boxes.get(im.id)) for im in images]
    if config.limit is not None and len(out) > config.limit:
        picked = sorted(np.random.default_rng(config.seed).choice(len(out), config.limit, replace=False))
        out = [out[i] for i in picked]
    require_files(out, "the candidate pool")
    return split.id, out


# --- scoring ----------------------------------------------------------------------------------

def _run_for(ws: Workspace, config: SuggestConfig, split_id: int) -> tuple[int, Path, bool]:
    """(run id, folder, resumed): an unfinished suggest run with this exact config, else a new one."""
    wanted = _config_json(config)
    unfinished = (RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.FAILED)
    with ws.db.session() as s:
        for run in s.scalars(select(Run).where(Run.kind == RunKind.SUGGEST, Run.status.in_(unfinished)).order_by(Run.id.desc())):
            if run.config == wanted and (run.status != RunStatus.RUNNING or owner_gone(run)):  # not one live elsewhere
                run.status, run.error = RunStatus.RUNNING, None
                return run.id, run_folder(run), True
    run_id, folder = create_run(ws, RunKind.SUGGEST, wanted, split_id=split_id, parent_run_id=config.detector_run,
                                status=RunStatus.RUNNING)
    return run_id, folder, False


def _config_json(config: SuggestConfig) -> dict:
    data = dataclasses.asdict(config)
    data["parts"] = list(config.parts)
    data["weights"] = {k: v for k, v in config.weights}
    return data


def _label_name(label: float | int) -> str | None:
    return {1: "NORMAL", 2: "PNEUMONIA"}.get(int(label)) if np.isfinite(label) else None


def _nan_to_none(values) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


SCORING_VERSION = 2  # stored with each scored image; scores of another version are never reused


def score_pool(ws: Workspace, run_id: int, folder: Path, config: SuggestConfig, candidates: list[Candidate], *,
               progress: bool = True) -> int:
    """Score the candidates that run `run_id` has not stored yet; returns how many were already stored."""
    from workbench.predicting import box_source, chest_boxes, classifier_input

    _reuse_scores(ws, run_id, config, candidates)
    with ws.db.session() as s:
        done = set(s.scalars(select(Prediction.image_id).where(Prediction.run_id == run_id)))
    todo = [c for c in candidates if c.image_id not in done]
    if not todo:
        return len(done)
    try:
        device = engine.pick_device(config.device)
    except ValueError as exc:
        raise InputError(str(exc), "use --device auto or cpu") from None
    detector, det_cfg, classifier, cls_cfg = load_models(ws, config, device)
    members = list(classifier.cam_layers())
    # A classifier that sees chest boxes gets its own (annotated, else its detector run's), as in training.
    own = chest_boxes(ws, [c.image_id for c in todo], box_source(cls_cfg), progress=progress) if cls_cfg.uses_boxes() else {}
    items = [PoolItem(c.abs_path, own[c.image_id][0] if c.image_id in own else c.box) for c in todo]
    bar = progress_bar(total=len(todo), desc="score", unit="img", disable=not progress, leave=False)
    try:
        for out in score_pool_batches(detector, det_cfg.image_size, classifier, cls_cfg.image_size, items, device,
                                      inputs=classifier_input(cls_cfg), fill=config.fill, batch_size=config.batch_size):
            batch = [todo[i] for i in out.indices]
            det, cls = out.detector, out.classifier
            top_class = np.argmax(np.nan_to_num(det.class_scores, nan=-1.0), axis=1) + 1  # the top box's class
            rows = []
            for j, c in enumerate(batch):
                has_box = np.isfinite(det.top_box[j]).all()
                top_label = _label_name(top_class[j]) if has_box else None
                rows.append(Prediction(
                    run_id=run_id, image_id=c.image_id, label=top_label,
                    score=None if not np.isfinite(det.top_score[j]) else float(det.top_score[j]),
                    prob_pneumonia=float(cls.probs[j, 1]),
                    x_min=float(det.top_box[j][0]) if has_box else None, y_min=float(det.top_box[j][1]) if has_box else None,
                    x_max=float(det.top_box[j][2]) if has_box else None, y_max=float(det.top_box[j][3]) if has_box else None,
                    extra={"scoring": SCORING_VERSION, "fill": config.fill,
                           "class_scores": _nan_to_none(det.class_scores[j]), "flip_box": _nan_to_none(det.flip_box[j]),
                           "probs": _nan_to_none(cls.probs[j]), "member_probs": [_nan_to_none(m[j]) for m in cls.member_probs],
                           "members": members, "off_lung_members": _nan_to_none(out.off_lung_members[:, j]),
                           "off_lung": _nan_to_none([out.off_lung[j]])[0], "cam_outside": _nan_to_none(out.cam_outside[:, j]),
                           "reliance_members": _nan_to_none(out.reliance_members[:, j]),
                           "off_chest_reliance": _nan_to_none([out.reliance[j]])[0],
                           "chest_box": _nan_to_none(out.boxes[j]) if np.isfinite(out.boxes[j]).all() else None,
                           "annotated_box": list(c.box) if c.box is not None else None}))
            np.savez(folder / f"embeddings-{batch[0].image_id}.npz", image_ids=np.array([c.image_id for c in batch]),
                     embeddings=cls.embeddings.astype(np.float32))
            with ws.db.session() as s:  # one commit per batch: an interruption loses at most one batch
                s.add_all(rows)
            bar.update(len(batch))
    finally:
        bar.close()
    return len(done)


def _reuse_scores(ws: Workspace, run_id: int, config: SuggestConfig, candidates: list[Candidate]) -> None:
    """Copy stored scores of earlier suggest runs with the same models and checkpoint into this run.

    Changing k, weights or selection rules then re-ranks without running a model. A score is
    reused only when the chest box it measured CAM attention against is still the one to use.
    """
    key = (config.detector_run, config.classifier_run, config.checkpoint)
    want = {c.image_id: (list(c.box) if c.box is not None else None) for c in candidates}
    with ws.db.session() as s:
        have = set(s.scalars(select(Prediction.image_id).where(Prediction.run_id == run_id)))
        runs = [r for r in s.scalars(select(Run).where(Run.kind == RunKind.SUGGEST, Run.id != run_id).order_by(Run.id.desc()))
                if (r.config.get("detector_run"), r.config.get("classifier_run"), r.config.get("checkpoint")) == key]
        for run in runs:
            copied = []
            for p in s.scalars(select(Prediction).where(Prediction.run_id == run.id)):
                if (p.image_id in want and p.image_id not in have and p.extra.get("annotated_box") == want[p.image_id]
                        and p.extra.get("scoring") == SCORING_VERSION and p.extra.get("fill") == config.fill):
                    copied.append(Prediction(run_id=run_id, image_id=p.image_id, label=p.label, score=p.score,
                                             prob_pneumonia=p.prob_pneumonia, x_min=p.x_min, y_min=p.y_min,
                                             x_max=p.x_max, y_max=p.y_max, extra=dict(p.extra)))
                    have.add(p.image_id)
            s.add_all(copied)
            src = Path(run.artifact_dir or "")
            dst = Path(ws.folder("runs", str(run_id)))
            for f in src.glob("embeddings-*.npz") if copied and src.is_dir() else []:
                if not (dst / f.name).exists():
                    (dst / f.name).write_bytes(f.read_bytes())


def _load_embeddings(folder: Path, image_ids: list[int]) -> np.ndarray | None:
    found: dict[int, np.ndarray] = {}
    for f in sorted(folder.glob("embeddings-*.npz")):
        with np.load(f) as data:
            found.update(zip(data["image_ids"].tolist(), data["embeddings"], strict=True))
    if any(i not in found for i in image_ids):
        return None
    return np.stack([found[i] for i in image_ids]) if image_ids else np.zeros((0, 1))


# --- ranking ----------------------------------------------------------------------------------

def pool_arrays(preds: list[Prediction], widths: list[int]) -> dict[str, np.ndarray]:
    """The arrays `active.score_components` takes, from stored Prediction rows (one per image)."""
    def arr(values, shape):
        return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64).reshape(shape)

    n = len(preds)
    m = len(preds[0].extra["member_probs"]) if n else 1
    return {
        "top_scores": np.array([np.nan if p.score is None else p.score for p in preds], dtype=np.float64),
        "class_scores": arr([p.extra["class_scores"] for p in preds], (n, 2)),
        "boxes": arr([[p.x_min, p.y_min, p.x_max, p.y_max] for p in preds], (n, 4)),
        "flip_boxes": arr([p.extra["flip_box"] for p in preds], (n, 4)),
        "widths": np.asarray(widths, dtype=np.float64),
        "probs": arr([p.extra["probs"] for p in preds], (n, 2)),
        "member_probs": arr([r for p in preds for r in p.extra["member_probs"]], (n, m, 2)).transpose(1, 0, 2),
        "off_lung": np.array([np.nan if p.extra.get("off_lung") is None else p.extra["off_lung"] for p in preds]),
        "reliance": np.array([np.nan if p.extra.get("off_chest_reliance") is None else p.extra["off_chest_reliance"]
                              for p in preds]),
    }


def reason_for(components: dict[str, Any], pred: Prediction, weights: dict[str, float]) -> str:
    """A short phrase naming what drove the rank, e.g. 'CAM 71% outside chest'."""
    if pred.x_min is None:
        return "no chest found"
    parts = []
    shift = components.get("off_chest_reliance")
    if weights.get("off_chest_reliance") and shift is not None and shift >= 0.1:
        parts.append(f"P(pneumonia) moves {shift:.2f} without the outside")
    shares = [s for s in pred.extra.get("cam_outside", []) if s is not None]
    if weights.get("off_lung") and components.get("off_lung") is not None and components["off_lung"] >= 0.2 and shares:
        parts.append(f"CAM {np.mean(shares):.0%} outside chest")
    if any(weights.get(k) for k in ("uncertainty", "det_confidence", "det_ambiguity", "det_instability")):
        if components["det_instability"] >= 0.3:
            parts.append(f"box moves on flip (IoU {1 - components['det_instability']:.2f})")
        if components["det_confidence"] >= 0.5:
            parts.append(f"weak chest box ({pred.score:.2f})")
        if components["det_ambiguity"] >= 0.6:
            parts.append("detector unsure normal/pneumonia")
    if any(weights.get(k) for k in ("classifier", "cls_entropy", "cls_disagreement")):
        if components["cls_disagreement"] >= 0.1:
            parts.append("members disagree")
        elif components["cls_entropy"] >= 0.8:
            parts.append(f"classifier unsure (P(pneumonia) {pred.prob_pneumonia:.2f})")
    return "; ".join(parts[:2]) or "ranked by combined score"


def rank_pool(preds: Sequence[Any], candidates: list[Candidate], config: SuggestConfig, folder: Path) -> list[dict]:
    """The batch (rank order) as dicts: image, image_id, rank, score, components, reason.

    preds: Prediction objects, or rows with the same attribute names (what `suggest` loads).
    """
    by_id = {c.image_id: c for c in candidates}
    preds = [p for p in preds if p.image_id in by_id]
    cands = [by_id[p.image_id] for p in preds]
    comps = active.score_components(**pool_arrays(preds, [c.width for c in cands]))
    weights = dict(config.weights)
    try:
        combined = active.combine_scores(comps, weights)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    embeddings = _load_embeddings(folder, [p.image_id for p in preds]) if config.diversity else None
    if config.diversity and embeddings is None:
        raise ConflictError("Embeddings for the diversity stage are missing from the run folder", "run without --diversity")
    rules = SelectionRules(k=config.k, per_patient=config.per_patient, phash_distance=config.phash_distance,
                           balance=config.balance, diversity=config.diversity, seed=config.seed)
    chosen = select_batch(combined, rules, patient_keys=[c.patient_key for c in cands], sha256s=[c.sha256 for c in cands],
                          phashes=[c.phash for c in cands], labels=[c.label for c in cands], embeddings=embeddings).order
    rows = []
    for rank, i in enumerate(chosen, start=1):
        values: dict[str, Any] = {name: (None if not np.isfinite(v[i]) else round(float(v[i]), 6))
                                  for name, v in comps.items()}
        extra = preds[i].extra
        values["off_lung_members"] = dict(zip(extra.get("members", []), extra.get("off_lung_members", []), strict=False))
        values["reliance_members"] = dict(zip(extra.get("members", []), extra.get("reliance_members", []), strict=False))
        rows.append({"image": cands[i].rel_path, "image_id": cands[i].image_id, "rank": rank,
                     "score": round(float(combined[i]), 6), "components": values,
                     "reason": reason_for(values, preds[i], weights), "label": cands[i].label})
    return rows


def suggest(ws: Workspace, config: SuggestConfig, *, push: bool = False, progress: bool = True) -> SuggestResult:
    """Score the candidate pool (resuming an interrupted run of the same config), store and return the batch."""
    validate_suggest_config(config)
    t0 = time.perf_counter()
    with ws.db.session() as s:
        get_run(s, config.detector_run, (RunKind.DETECTOR,))
        get_run(s, config.classifier_run, (RunKind.CLASSIFIER,))
        split_id, candidates = list_candidates(s, config)
    if not candidates:
        raise InputError("No candidates: every image of the chosen parts is annotated, batched or already pushed",
                         "name other parts with --parts, or pass --include-annotated to rank them anyway")
    run_id, folder, _ = _run_for(ws, config, split_id)
    with running(ws, run_id):
        resumed = score_pool(ws, run_id, folder, config, candidates, progress=progress)
    with ws.db.session() as s:
        # Rows (same attribute names as Prediction), not ORM objects: one per scored image of the pool.
        preds = s.execute(select(Prediction.image_id, Prediction.label, Prediction.score, Prediction.prob_pneumonia,
                                 Prediction.x_min, Prediction.y_min, Prediction.x_max, Prediction.y_max, Prediction.extra)
                          .where(Prediction.run_id == run_id).order_by(Prediction.image_id)).all()
    rows = rank_pool(preds, candidates, config, folder)
    seconds = round(time.perf_counter() - t0, 2)
    with ws.db.session() as s:
        s.execute(delete(Suggestion).where(Suggestion.run_id == run_id))
        s.add_all(Suggestion(run_id=run_id, image_id=r["image_id"], rank=r["rank"], score=r["score"],
                             components=r["components"], reason=r["reason"]) for r in rows)
        run = get_run(s, run_id, (RunKind.SUGGEST,))
        run.status = RunStatus.DONE
        run.metrics = {"candidates": len(candidates), "selected": len(rows), "resumed": resumed, "seconds": seconds}
    result = SuggestResult(run_id=run_id, candidates=len(candidates), scored=len(preds), resumed=resumed,
                           seconds=seconds, rows=rows)
    if push:
        result.pushed = push_suggestions(ws, run_id)
    return result


# --- push ----------------------------------------------------------------------------

def push_suggestions(ws: Workspace, run_id: int) -> dict:
    """Send a suggest run's batch to Label Studio in rank order, the detector's boxes as pre-annotations."""
    from workbench import labelling  # Label Studio only when asked for

    name = f"suggest/{run_id}"
    with ws.db.session() as s:
        run = get_run(s, run_id, (RunKind.SUGGEST,))
        rows = list(s.scalars(select(Suggestion).where(Suggestion.run_id == run_id).order_by(Suggestion.rank)))
        if not rows:
            raise InputError(f"Suggest run {run_id} selected no images")
        if s.scalars(select(AnnotationBatch).where(AnnotationBatch.name == name)).first() is None:
            batch = AnnotationBatch(name=name, split_id=run.split_id, kind="suggestion", params={"run_id": run_id})
            s.add(batch)
            s.flush()
            s.add_all(AnnotationBatchItem(batch_id=batch.id, image_id=r.image_id, rank=r.rank) for r in rows)
    out = labelling.push(ws, batch=name, predictions_run=run_id)
    with ws.db.session() as s:
        for r in s.scalars(select(Suggestion).where(Suggestion.run_id == run_id)):
            r.pushed = True
    return out
