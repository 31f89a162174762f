"""`wb suggest show`: one scored image with its chest box and each member's CAMs, as a PNG.

The maps come from the same scoring loop `wb suggest` ran (pipelines.scoring.score_pool_batches):
LayerCAM at the stride-16 block (what off-lung attention is measured on) and Grad-CAM at the last
block, per member, over the picture the classifier saw.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.models import Image, Prediction, RunKind, Suggestion
from pipelines import engine
from workbench.configs import DEFAULT_DEVICE, SuggestConfig
from workbench.errors import InputError, NotFoundError
from workbench.runs import dimensions, get_run, latest_boxes, load_models, run_folder
from workbench.workspace import Workspace


def resolve_image(session, ref: str) -> Image:
    """An image by id, relative path or absolute path."""
    if ref.isdigit():
        image = session.get(Image, int(ref))
    else:
        image = session.scalars(select(Image).where(Image.rel_path == Path(ref).as_posix())).first()
        if image is None:
            absolute = Path(ref).expanduser().resolve()
            image = next((im for im in session.scalars(select(Image).where(Image.rel_path.endswith(absolute.name)))
                          if Path(im.abs_path).resolve() == absolute), None)
    if image is None:
        raise NotFoundError(f"No image {ref!r} in the workspace", "give an image id or its path as `wb suggest --json` prints it")
    return image


def _on_file(cam: np.ndarray, size: tuple[int, int], frame: tuple[int, int, int, int] | None) -> np.ndarray:
    """A raw CAM as a [H, W] map of the whole file: scaled into the classifier's frame (the crop)."""
    from pipelines.cam import scale_map

    w, h = size
    if frame is None:
        return scale_map(cam, w, h)
    x0, y0, x1, y1 = frame
    out = np.zeros((h, w), dtype=np.float32)
    out[y0:y1, x0:x1] = scale_map(cam, x1 - x0, y1 - y0)
    return out


def show_suggestion(ws: Workspace, run_id: int, image_ref: str, *, out: Path | None = None,
                    device: str = DEFAULT_DEVICE) -> dict:
    """A PNG of the image with the chest box and each member's LayerCAM and Grad-CAM, titled with the scores.

    The models are the suggest run's own (its detector and classifier runs and checkpoint); `device`
    is where they run (auto, cpu, cuda or mps).
    """
    from pipelines.cam import overlay
    from pipelines.chest import box_on_array, crop_range
    from pipelines.data import load_grey_rgb
    from pipelines.report import plot_image_grid
    from pipelines.scoring import PoolItem, score_pool_batches
    from workbench.predicting import box_source, chest_boxes, classifier_input

    with ws.db.session() as s:
        run = get_run(s, run_id, (RunKind.SUGGEST,))
        image = resolve_image(s, image_ref)
        pred = s.scalars(select(Prediction).where(Prediction.run_id == run_id, Prediction.image_id == image.id)).first()
        if pred is None:
            raise NotFoundError(f"Run {run_id} did not score {image.rel_path}", "pick an image from its `wb suggest --json`")
        sug = s.scalars(select(Suggestion).where(Suggestion.run_id == run_id, Suggestion.image_id == image.id)).first()
        config = SuggestConfig(**{**run.config, "parts": tuple(run.config["parts"]),
                                  "weights": tuple(run.config["weights"].items())})
        box = latest_boxes(s, [image.id]).get(image.id)
        path, folder, (w, h) = image.abs_path, run_folder(run), dimensions(image)
        rel, label, image_id = image.rel_path, image.label, image.id
    try:
        where = engine.pick_device(device)
    except ValueError as exc:
        raise InputError(str(exc), "use --device auto or cpu") from None
    detector, det_cfg, classifier, cls_cfg = load_models(ws, config, where)
    inputs = classifier_input(cls_cfg)
    own = chest_boxes(ws, [image_id], box_source(cls_cfg), progress=False) if cls_cfg.uses_boxes() else {}
    item = PoolItem(path, own[image_id][0] if image_id in own else box)
    scored = next(score_pool_batches(detector, det_cfg.image_size, classifier, cls_cfg.image_size, [item], where,
                                     inputs=inputs, fill=config.fill))
    x0, y0, x1, y1 = (float(v) for v in scored.boxes[0])
    chest = (x0, y0, x1, y1) if np.isfinite(scored.boxes[0]).all() else None
    frame = None
    if inputs.mode == "chest-crop" and item.box is not None:
        frame = crop_range((h, w), box_on_array(item.box, (w, h), (h, w)), inputs.margin)
    picture, _ = load_grey_rgb(path)
    fine = [_on_file(c[0], (w, h), frame) for c in scored.classifier.fine_cams]
    coarse = [_on_file(c[0], (w, h), frame) for c in scored.classifier.cams]
    marks = []
    if pred.x_min is not None:
        marks.append(((pred.x_min, pred.y_min, pred.x_max, pred.y_max), "red", f"detector {pred.score:.2f}"))
    if box is not None:
        marks.append((box, "lime", "annotated"))
    elif chest is not None and item.box is not None:
        marks.append((chest, "lime", "chest box"))
    head = f"#{sug.rank} score {sug.score:.2f}\n{sug.reason}" if sug else "scored, not in the batch"
    titles = [f"{Path(rel).name} ({label}), P(pn) {float(scored.classifier.probs[0, 1]):.2f}\n{head}"]
    names = list(classifier.cam_layers())

    def fmt(value: float, pattern: str) -> str:
        return "n/a" if not np.isfinite(value) else pattern.format(value)

    for m, name in enumerate(names):
        titles.append(f"LayerCAM {name}\noff-lung {fmt(scored.off_lung_members[m, 0], '{:.2f}')}, "
                      f"{fmt(scored.cam_outside[m, 0], '{:.0%}')} outside box; "
                      f"reliance {fmt(scored.reliance_members[m, 0], '{:.2f}')}")
    titles += [f"Grad-CAM {name} (last block)" for name in names]
    target = Path(out) if out else folder / "show" / f"{Path(rel).stem}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    maps = fine + coarse
    plot_image_grid([picture] + [overlay(picture, m) for m in maps], titles, target,
                    boxes=[marks] * (1 + len(maps)), cols=1 + len(names))
    return {"run_id": run_id, "image": rel, "file": str(target)}
