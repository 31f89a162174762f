"""Use cases `evaluate_run` (metrics, predictions, report folder) and `make_cam` (CAM overlays)."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from db.models import Image, Prediction, Split
from pipelines import engine
from pipelines.cam import detector_cam, ensemble_cams, overlay
from pipelines.classification import Ensemble
from pipelines.data import LABELS, ClassificationDataset, DetectionDataset, ImageRecord, collate_detection, load_grey_rgb
from pipelines.detection import cam_target_layer
from pipelines.metrics import classification_metrics, detection_map, mean_iou
from pipelines.report import plot_confusion, plot_curves, plot_image_grid, plot_roc, write_report
from workbench.configs import CamConfig, DetectorConfig, EvalConfig, validate_cam_config, validate_eval_config
from workbench.errors import InputError, NotFoundError
from workbench.predicting import top_detections
from workbench.runs import dimensions, get_run, latest_boxes, load_trained, part_images, run_folder, to_record
from workbench.workspace import Workspace


def _device(name: str) -> torch.device:
    try:
        return engine.pick_device(name)
    except ValueError as exc:
        raise InputError(str(exc), "use --device auto or cpu") from None


def evaluate_run(ws: Workspace, run_id: int, settings: EvalConfig = EvalConfig(), *, progress: bool = True,
                 report: bool = True) -> dict:
    """Score run `run_id` on `settings.part` of its split; store predictions and metrics; write a report.

    Returns the metrics dict (see pipelines.metrics.classification_metrics) plus, for detector
    runs, map50 / map50_95 / mean_iou on the part's annotated images, and run_id, part, report.
    """
    validate_eval_config(settings)
    part, checkpoint, batch_size = settings.part, settings.checkpoint, settings.batch_size
    device = _device(settings.device)
    with ws.db.session() as s:
        run = get_run(s, run_id)
        model, config = load_trained(run, checkpoint)
        model = model.to(device)
        split = s.get(Split, run.split_id) if run.split_id is not None else None
        if run.split_id is not None and split is None:
            raise NotFoundError(f"Run {run_id}'s split no longer exists", "train the run again on an existing split")
        split_name = split.name if split is not None else None
        _, images = part_images(s, split_name, part)
        if not images:
            raise InputError(f"The {part} part of run {run_id}'s split is empty")
        boxes = latest_boxes(s, [im.id for im in images])
        records = [to_record(im, boxes.get(im.id)) for im in images]
        sizes = [dimensions(im) for im in images]
        kind, history, folder = run.kind, list(run.history or []), run_folder(run)
    y_true = np.array([r.label for r in records])
    t0 = time.perf_counter()
    extra: dict = {}
    if kind == "classifier":
        loader = torch.utils.data.DataLoader(ClassificationDataset(records, config.image_size), batch_size=batch_size)
        probs = engine.predict_probs(model, loader, device, progress=progress)[:, 1]
        y_pred = (probs >= 0.5).astype(int)
        top_scores = [float(max(p, 1 - p)) for p in probs]
        top_boxes = [None] * len(records)
    else:
        loader = torch.utils.data.DataLoader(DetectionDataset(records, config.image_size), batch_size=batch_size,
                                             collate_fn=collate_detection)
        preds = engine.predict_detections(model, loader, device, progress=progress)
        y_pred, probs, top_scores, top_boxes, scaled = top_detections(preds, sizes, config.image_size)
        y_pred, probs = np.array(y_pred), np.array(probs)
        annotated = [i for i, r in enumerate(records) if r.box is not None]
        if annotated:
            extra.update(detection_map([scaled[i] for i in annotated], [{"boxes": [records[i].box]} for i in annotated]))
            extra["mean_iou"] = mean_iou([top_boxes[i] for i in annotated], [records[i].box for i in annotated])
        else:
            extra.update(map50=None, map50_95=None, mean_iou=None)
        extra["annotated_images"] = len(annotated)
    seconds = time.perf_counter() - t0
    metrics = classification_metrics(y_true, probs, y_pred, n_boot=settings.bootstrap)
    metrics.update(extra)
    metrics["inference_seconds_per_image"] = round(seconds / len(records), 4)
    metrics["checkpoint"] = checkpoint
    with ws.db.session() as s:
        run = get_run(s, run_id)
        for old in [p for p in run.predictions if (p.extra or {}).get("part") == part]:
            s.delete(old)
        for r, label, score, prob, box in zip(records, y_pred, top_scores, probs, top_boxes, strict=True):
            x0, y0, x1, y1 = box if box is not None else (None,) * 4
            s.add(Prediction(run_id=run_id, image_id=r.image_id, label=LABELS[int(label)], score=score,
                             prob_pneumonia=float(prob), x_min=x0, y_min=y0, x_max=x1, y_max=y1, extra={"part": part}))
        run.metrics = {**(run.metrics or {}), part: metrics}
    out = {"run_id": run_id, "kind": kind, "part": part, **metrics}
    if report:
        out["report"] = str(_write_report(folder / f"report-{part}", run_id, kind, part, metrics, history, y_true, probs,
                                          records, top_boxes, y_pred, config))
    return out


def _write_report(folder: Path, run_id: int, kind: str, part: str, metrics: dict, history: list, y_true, probs,
                  records: list[ImageRecord], top_boxes, y_pred, config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    figures = {}
    if history:
        plot_curves(history, folder / "curves.png")
        figures["Loss and accuracy per epoch"] = "curves.png"
    plot_confusion(metrics["confusion_matrix"], folder / "confusion.png")
    figures["Confusion matrix"] = "confusion.png"
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
            marks.append((records[i].box, "lime", "annotated"))
        if top_boxes[i] is not None:
            marks.append((top_boxes[i], "red", "predicted"))
        boxes.append(marks)
    plot_image_grid(pictures, titles, folder / "samples.png", boxes=boxes)
    caption = "Detection overlays (green: annotated, red: top detection)" if kind == "detector" else "Sample predictions"
    figures[caption] = "samples.png"
    return write_report(folder, f"Run {run_id} ({kind}) on {part}", metrics, figures, config=dataclasses.asdict(config))


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
    """Grad-CAM per ensemble member, or EigenCAM for a detector, for each image; PNGs in out_dir."""
    if not images:
        raise InputError("No images given", "pass --images ID_OR_PATH ...")
    validate_cam_config(settings)
    device = _device(settings.device)
    with ws.db.session() as s:
        run = get_run(s, run_id)
        model, config = load_trained(run, settings.checkpoint)
        model = model.to(device)
        kind, folder = run.kind, run_folder(run)
        targets = _resolve_images(s, images)
    out_dir = Path(out_dir) if out_dir else folder / "cam"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for path, image_id, label in targets:
        image, (w, h) = load_grey_rgb(path)
        record = ImageRecord(image_id=image_id, path=path, label=int(label == "PNEUMONIA"))
        if isinstance(model, Ensemble):
            tensor = ClassificationDataset([record], config.image_size)[0][0][None].to(device)
            maps = ensemble_cams(model, tensor, (w, h))
            with torch.inference_mode():
                prob = float(model(tensor).softmax(dim=1)[0, 1])
            pictures = [image] + [overlay(image, m) for m in maps.values()]
            titles = [f"{Path(path).name}\ntrue {label or '?'}, P(pneumonia) {prob:.2f}"] + [f"Grad-CAM {n}" for n in maps]
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
