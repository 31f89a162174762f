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
from pipelines.cam import detector_cam, overlay, scale_map
from pipelines.chest import VIEWS, box_on_array, view
from pipelines.classification import Ensemble
from pipelines.data import LABELS, DetectionDataset, ImageRecord, classifier_image, classifier_tensors, load_grey_rgb
from pipelines.detection import cam_target_layer
from pipelines.metrics import classification_metrics, detection_map, mean_iou, reliance_metrics
from pipelines.report import plot_confusion, plot_curves, plot_image_grid, plot_roc, write_report
from pipelines.scoring import classify_with_cams
from workbench.configs import CamConfig, DetectorConfig, EvalConfig, TrainConfig, validate_cam_config, validate_eval_config
from workbench.errors import InputError, NotFoundError
from workbench.predicting import (
    box_source,
    chest_boxes,
    classifier_input,
    decision_threshold,
    predict_probabilities,
    top_detections,
    uses_boxes,
)
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
        kind, history, folder = run.kind, list(run.history or []), run_folder(run)
    model = model.to(device)
    detector_run = box_source(config, settings.boxes_from)
    wanted = uses_boxes(config) or settings.reliance or kind == "detector"
    boxes = chest_boxes(ws, ids, detector_run, progress=progress) if wanted else {}
    if kind == "detector":  # chest-box metrics compare against annotations only
        records = [dataclasses.replace(r, box=boxes[i][0]) if i in boxes and boxes[i][1] == "annotated" else r
                   for r, i in zip(bare, ids, strict=True)]
    else:
        records = [dataclasses.replace(r, box=boxes[i][0]) if i in boxes else r for r, i in zip(bare, ids, strict=True)]
    threshold = decision_threshold(ws, run_id, checkpoint, model, device=device)
    y_true = np.array([r.label for r in records])
    t0 = time.perf_counter()
    probs, preds = predict_probabilities(model, config, kind, records, device, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    metrics = classification_metrics(y_true, probs, threshold=threshold["value"], n_boot=settings.bootstrap)
    metrics["threshold_rule"] = threshold
    metrics["at_0.5"] = classification_metrics(y_true, probs, threshold=0.5, n_boot=settings.bootstrap)
    y_pred = (probs >= threshold["value"]).astype(int)
    top_boxes: list = [None] * len(records)
    top_scores = [float(max(p, 1 - p)) for p in probs]
    if preds is not None:
        _, _, scores, top_boxes, scaled = top_detections(preds, sizes, config.image_size)
        top_scores = [s if s is not None else 0.0 for s in scores]
        annotated = [i for i, r in enumerate(records) if r.box is not None]
        if annotated:
            metrics.update(detection_map([scaled[i] for i in annotated], [{"boxes": [records[i].box]} for i in annotated]))
            metrics["mean_iou"] = mean_iou([top_boxes[i] for i in annotated], [records[i].box for i in annotated])
        else:
            metrics.update(map50=None, map50_95=None, mean_iou=None)
        metrics["annotated_images"] = len(annotated)
    if uses_boxes(config):
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
            view_probs[v], _ = predict_probabilities(model, config, kind, rel_records, device, view=v, fill=settings.fill,
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
    out = {"run_id": run_id, "kind": kind, "part": part, **metrics}
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


def _write_report(folder: Path, run_id: int, kind: str, part: str, metrics: dict, history: list, y_true, probs,
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
    caption = "Detection overlays (green: annotated, red: top detection)" if kind == "detector" else "Sample predictions"
    figures[caption] = "samples.png"
    tables = {}
    reliance = metrics.get("reliance")
    if reliance and reliance.get("views"):
        tables[f"Shortcut reliance on {reliance['images']} boxed images (off_chest_auc "
               f"{reliance['off_chest_auc'] if reliance['off_chest_auc'] is None else round(reliance['off_chest_auc'], 3)})"
               ] = _reliance_table(reliance)
        _plot_reliance(reliance_examples, config, kind, reliance["fill"], folder / "reliance.png")
        figures["The three versions each image was scored as (P(pneumonia) above each)"] = "reliance.png"
    return write_report(folder, f"Run {run_id} ({kind}) on {part}", metrics, figures, config=dataclasses.asdict(config),
                        tables=tables)


def _plot_reliance(examples: list[tuple[ImageRecord, Any, dict[str, float]]], config: TrainConfig, kind: str, fill: str,
                   path: Path) -> None:
    """Rows of (as it is, chest only, chest removed) for a few images of each class, as the model saw them."""
    picked = [e for e in examples if e[0].label == 0][:RELIANCE_SHOWN] + [e for e in examples if e[0].label == 1][:RELIANCE_SHOWN]
    pictures, titles = [], []
    names = {"full": "as it is", "chest_only": "chest only", "chest_removed": "chest removed"}
    for record, box, probs in picked:
        image, size = load_grey_rgb(record.path)
        for v in VIEWS:
            if kind == "classifier":
                pictures.append(classifier_image(image, size, box, classifier_input(config), view=v, fill=fill))
            else:
                pictures.append(view(image, box_on_array(box, size, image.shape), v, fill))
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
        kind, folder = run.kind, run_folder(run)
        targets = _resolve_images(s, images)
    model = model.to(device)
    ids = [image_id for _, image_id, _ in targets if image_id is not None]
    boxes = chest_boxes(ws, ids, box_source(config)) if uses_boxes(config) else {}
    out_dir = Path(out_dir) if out_dir else folder / "cam"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for path, image_id, label in targets:
        image, (w, h) = load_grey_rgb(path)
        box = boxes[image_id][0] if image_id in boxes else None
        record = ImageRecord(image_id=image_id, path=path, label=int(label == "PNEUMONIA"), box=box)
        if isinstance(model, Ensemble):
            inputs = classifier_input(config)
            if inputs.uses_box and box is None:
                raise InputError(f"Run {run_id} sees chest boxes only ({inputs.mode}) and {path} has none",
                                 "annotate it, or give an image the run's detector has boxed")
            seen = classifier_image(image, (w, h), box, inputs)  # what the model looks at
            tensor = classifier_tensors(record, config.image_size, inputs)[0][None]
            out = classify_with_cams(model, tensor, device)
            prob = float(out.probs[0, 1])
            sh, sw = seen.shape[:2]
            names = list(model.cam_layers())
            pictures = [seen] + [overlay(seen, scale_map(c[0], sw, sh)) for c in out.cams] + [
                overlay(seen, scale_map(c[0], sw, sh)) for c in out.fine_cams]
            titles = [f"{Path(path).name}\ntrue {label or '?'}, P(pneumonia) {prob:.2f}"] + [
                f"Grad-CAM {n}" for n in names] + [f"LayerCAM {n} (stride 16)" for n in names]
            marks = None
        else:
            assert isinstance(config, DetectorConfig)  # the run is a detector: get_run takes only the two kinds
            tensor = DetectionDataset([record], config.image_size)[0][0][None].to(device)
            cam = detector_cam(model, cam_target_layer(model, config.backbone), tensor, (w, h),
                               fpn=config.backbone != "mobilenet_v2")
            with torch.inference_mode():
                pred = model(tensor)[0]
            f = np.array([w, h, w, h]) / config.image_size
            top = [] if not len(pred["boxes"]) else [
                (pred["boxes"][0].cpu().numpy() * f, "red",
                 f"{['bg', 'normal', 'pneumonia'][int(pred['labels'][0])]} {float(pred['scores'][0]):.2f}")]
            pictures, marks = [image, overlay(image, cam)], [top, top]
            titles = [f"{Path(path).name} (true {label or '?'})", "EigenCAM"]
        target = out_dir / f"{Path(path).stem}.png"
        plot_image_grid(pictures, titles, target, boxes=marks, cols=len(pictures))
        files.append(str(target))
    return {"run_id": run_id, "kind": kind, "files": files}
