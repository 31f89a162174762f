"""Use cases `evaluate_run` (metrics, shortcut reliance, predictions, report folder) and `make_cam`."""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from db.models import Image, Prediction, Split
from pipelines import engine
from pipelines.chest import VIEWS
from pipelines.data import LABELS, ImageRecord, load_grey_rgb
from pipelines.metrics import classification_metrics, reliance_metrics
from pipelines.report import plot_confusion, plot_curves, plot_image_grid, plot_roc, write_report
from workbench.configs import CamConfig, EvalConfig, TrainConfig, validate_cam_config, validate_eval_config
from workbench.errors import InputError, NotFoundError
from workbench.kinds import ModelKind, get_kind
from workbench.predicting import box_source, chest_boxes, decision_threshold
from workbench.runs import dimensions, get_run, load_trained, part_images, run_folder, to_record
from workbench.workspace import Workspace

RELIANCE_SHOWN = 2  # example images per class in the report's reliance picture


def _device(name: str) -> torch.device:
    try:
        return engine.pick_device(name)
    except ValueError as exc:
        raise InputError(str(exc), "use --device auto or cpu") from None


def evaluate_run(ws: Workspace, run_id: int, settings: EvalConfig = EvalConfig(), *, progress: bool = True,
                 report: bool = True) -> dict:
    """Score run `run_id` on `settings.part` of its split; store predictions and metrics; write a report.

    Returns the metrics of pipelines.metrics.classification_metrics at the run's decision threshold
    (chosen on its val part) with the same at 0.5 under "at_0.5"; detector runs add map50 /
    map50_95 / mean_iou on the part's annotated images; with `settings.reliance`, "reliance"
    (pipelines.metrics.reliance_metrics on the part's boxed images) and its headline
    "off_chest_auc"; and run_id, kind, part, report.
    """
    validate_eval_config(settings)
    part, checkpoint, batch_size = settings.part, settings.checkpoint, settings.batch_size
    device = _device(settings.device)
    with ws.db.session() as s:
        run = get_run(s, run_id)
        model, config = load_trained(run, checkpoint)
        split = s.get(Split, run.split_id) if run.split_id is not None else None
        if run.split_id is not None and split is None:
            raise NotFoundError(f"Run {run_id}'s split no longer exists", "train the run again on an existing split")
        _, images = part_images(s, split.name if split is not None else None, part)
        if not images:
            raise InputError(f"The {part} part of run {run_id}'s split is empty")
        sizes = [dimensions(im) for im in images]
        bare = [to_record(im) for im in images]
        ids = [im.id for im in images]
        kind, history, folder = get_kind(run.kind), list(run.history or []), run_folder(run)
    model = model.to(device)
    detector_run = box_source(config, settings.boxes_from)
    wanted = config.uses_boxes() or settings.reliance or kind.scores_boxes
    boxes = chest_boxes(ws, ids, detector_run, progress=progress) if wanted else {}
    records = kind.eval_records(bare, boxes)
    threshold = decision_threshold(ws, run_id, checkpoint, model, device=device)
    y_true = np.array([r.label for r in records])
    t0 = time.perf_counter()
    probs, preds = kind.predict(model, config, records, device, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    metrics = classification_metrics(y_true, probs, threshold=threshold["value"], n_boot=settings.bootstrap)
    metrics["threshold_rule"] = threshold
    metrics["at_0.5"] = classification_metrics(y_true, probs, threshold=0.5, n_boot=settings.bootstrap)
    y_pred = (probs >= threshold["value"]).astype(int)
    top_scores, top_boxes, box_metrics = kind.outputs(probs, preds, records, sizes, config)
    metrics.update(box_metrics)
    if config.uses_boxes():
        metrics["input_boxes"] = dict(Counter(boxes[i][1] if i in boxes else "none" for i in ids))
    view_probs: dict[str, Any] = {}
    boxed = [j for j, i in enumerate(ids) if i in boxes]
    if not settings.reliance:
        metrics["reliance"], metrics["off_chest_auc"] = None, None
    elif not boxed:
        metrics["reliance"] = {"images": 0, "skipped": "no image of the part has a chest box (annotate some, or pass "
                                                        "--boxes-from DETECTOR_RUN)"}
        metrics["off_chest_auc"] = None
    else:
        rel_records = [dataclasses.replace(bare[j], box=boxes[ids[j]][0]) for j in boxed]
        view_probs = {"full": probs[boxed]}
        for v in VIEWS[1:]:
            view_probs[v], _ = kind.predict(model, config, rel_records, device, view=v, fill=settings.fill,
                                            batch_size=batch_size, progress=progress)
        reliance = reliance_metrics(y_true[boxed], view_probs, threshold=threshold["value"], n_boot=settings.bootstrap)
        reliance["fill"] = settings.fill
        reliance["box_sources"] = dict(Counter(boxes[ids[j]][1] for j in boxed))
        metrics["reliance"], metrics["off_chest_auc"] = reliance, reliance["off_chest_auc"]
    metrics["inference_seconds_per_image"] = round(seconds / len(records), 4)
    metrics["checkpoint"] = checkpoint
    shown_views = {i: {v: float(view_probs[v][j]) for v in VIEWS[1:]} for j, i in enumerate(boxed)} if view_probs else {}
    with ws.db.session() as s:
        run = get_run(s, run_id)
        for old in [p for p in run.predictions if (p.extra or {}).get("part") == part]:
            s.delete(old)
        for i, (r, label, score, prob, box) in enumerate(zip(records, y_pred, top_scores, probs, top_boxes, strict=True)):
            x0, y0, x1, y1 = box if box is not None else (None,) * 4
            extra = {"part": part, **{f"prob_{v}": p for v, p in shown_views.get(i, {}).items()}}
            s.add(Prediction(run_id=run_id, image_id=r.image_id, label=LABELS[int(label)], score=score,
                             prob_pneumonia=float(prob), x_min=x0, y_min=y0, x_max=x1, y_max=y1, extra=extra))
        run.metrics = {**(run.metrics or {}), part: metrics}
    out = {"run_id": run_id, "kind": kind.name, "part": part, **metrics}
    if report:
        rel_examples = [(bare[i], boxes[ids[i]][0], {v: float(view_probs[v][j]) for v in VIEWS})
                        for j, i in enumerate(boxed)] if view_probs else []
        out["report"] = str(_write_report(folder / f"report-{part}", run_id, kind, part, metrics, history, y_true, probs,
                                          records, top_boxes, y_pred, config, rel_examples))
    return out


def _reliance_table(reliance: dict) -> tuple[list[str], list[list[str]]]:
    def cell(value: float | None, ci: list[float] | None) -> str:
        return "n/a" if value is None else f"{value:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    names = {"full": "as it is", "chest_only": "chest only (outside filled)", "chest_removed": "chest removed (box filled)"}
    rows = [[names[v], cell(m["accuracy"], m["ci"]["accuracy"]), cell(m["roc_auc"], m["ci"]["roc_auc"])]
            for v, m in reliance["views"].items()]
    rows.append([f"predictions that flip when the outside is filled ({reliance['fill']})", f"{reliance['flip_share']:.3f}", ""])
    return ["images seen", "accuracy (95% CI)", "ROC-AUC (95% CI)"], rows


def _write_report(folder: Path, run_id: int, kind: ModelKind, part: str, metrics: dict, history: list, y_true, probs,
                  records: list[ImageRecord], top_boxes, y_pred, config: TrainConfig,
                  reliance_examples: list[tuple[ImageRecord, Any, dict[str, float]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    figures = {}
    if history:
        plot_curves(history, folder / "curves.png")
        figures["Loss and accuracy per epoch"] = "curves.png"
    plot_confusion(metrics["confusion_matrix"], folder / "confusion.png")
    figures[f"Confusion matrix (threshold {metrics['threshold']:.3f}, chosen on the val part)"] = "confusion.png"
    plot_roc(y_true, probs, folder / "roc.png", metrics.get("roc_auc"))
    figures["ROC curve (pneumonia positive)"] = "roc.png"
    # Four of each true class (the part is sorted by id, which groups the classes).
    shown = [i for i, r in enumerate(records) if r.label == 0][:4] + [i for i, r in enumerate(records) if r.label == 1][:4]
    pictures, titles, boxes = [], [], []
    for i in shown:
        image, _ = load_grey_rgb(records[i].path)
        pictures.append(image)
        titles.append(f"true {LABELS[records[i].label]} / pred {LABELS[int(y_pred[i])]} ({float(probs[i]):.2f})")
        marks = []
        if records[i].box is not None:
            marks.append((records[i].box, "lime", "chest box"))
        if top_boxes[i] is not None:
            marks.append((top_boxes[i], "red", "predicted"))
        boxes.append(marks)
    plot_image_grid(pictures, titles, folder / "samples.png", boxes=boxes)
    figures[kind.report_caption] = "samples.png"
    tables = {}
    reliance = metrics.get("reliance")
    if reliance and reliance.get("views"):
        tables[f"Shortcut reliance on {reliance['images']} boxed images (off_chest_auc "
               f"{reliance['off_chest_auc'] if reliance['off_chest_auc'] is None else round(reliance['off_chest_auc'], 3)})"
               ] = _reliance_table(reliance)
        _plot_reliance(reliance_examples, config, kind, reliance["fill"], folder / "reliance.png")
        figures["The three versions each image was scored as (P(pneumonia) above each)"] = "reliance.png"
    return write_report(folder, f"Run {run_id} ({kind.name}) on {part}", metrics, figures, config=dataclasses.asdict(config),
                        tables=tables)


def _plot_reliance(examples: list[tuple[ImageRecord, Any, dict[str, float]]], config: TrainConfig, kind: ModelKind, fill: str,
                   path: Path) -> None:
    """Rows of (as it is, chest only, chest removed) for a few images of each class, as the model saw them."""
    picked = [e for e in examples if e[0].label == 0][:RELIANCE_SHOWN] + [e for e in examples if e[0].label == 1][:RELIANCE_SHOWN]
    pictures, titles = [], []
    names = {"full": "as it is", "chest_only": "chest only", "chest_removed": "chest removed"}
    for record, box, probs in picked:
        image, size = load_grey_rgb(record.path)
        for v in VIEWS:
            pictures.append(kind.seen_image(image, size, box, config, v, fill))
            titles.append(f"{LABELS[record.label]}, {names[v]}\nP(pneumonia) {probs[v]:.2f}")
    plot_image_grid(pictures, titles, path, cols=len(VIEWS))


def _resolve_images(session, refs: list[str]) -> list[tuple[str, int | None, str | None]]:
    """(path, image id or None, label or None) for each ref: an image id or a file path."""
    out = []
    for ref in refs:
        if ref.isdigit():
            image = session.get(Image, int(ref))
            if image is None:
                raise NotFoundError(f"No image with id {ref}")
            out.append((image.abs_path, image.id, image.label))
            continue
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise InputError(f"No image file {ref}", "give image ids or paths of image files")
        match = next((im for im in session.scalars(select(Image).where(Image.rel_path.endswith(path.name)))
                      if Path(im.abs_path).resolve() == path), None)
        out.append((str(path), match.id if match else None, match.label if match else None))
    return out


def make_cam(ws: Workspace, run_id: int, images: list[str], settings: CamConfig = CamConfig(), *,
             out_dir: Path | None = None) -> dict:
    """Per ensemble member Grad-CAM (last block) and LayerCAM (stride-16 block), or EigenCAM for a
    detector, for each image; PNGs in out_dir. Classifiers see each image as they were trained
    to (their input mode, with the same chest box)."""
    if not images:
        raise InputError("No images given", "pass --images ID_OR_PATH ...")
    validate_cam_config(settings)
    device = _device(settings.device)
    with ws.db.session() as s:
        run = get_run(s, run_id)
        model, config = load_trained(run, settings.checkpoint)
        kind, folder = get_kind(run.kind), run_folder(run)
        targets = _resolve_images(s, images)
    model = model.to(device)
    ids = [image_id for _, image_id, _ in targets if image_id is not None]
    boxes = chest_boxes(ws, ids, box_source(config)) if config.uses_boxes() else {}
    out_dir = Path(out_dir) if out_dir else folder / "cam"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for path, image_id, label in targets:
        image, size = load_grey_rgb(path)
        box = boxes[image_id][0] if image_id in boxes else None
        record = ImageRecord(image_id=image_id, path=path, label=int(label == "PNEUMONIA"), box=box)
        figure = kind.cam_figure(model, config, record, image, size, label, device, run_id)
        target = out_dir / f"{Path(path).stem}.png"
        plot_image_grid(figure.pictures, figure.titles, target, boxes=figure.marks, cols=len(figure.pictures))
        files.append(str(target))
    return {"run_id": run_id, "kind": kind.name, "files": files}
