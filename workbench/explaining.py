"""`wb suggest show`: one scored image with its chest box and each member's Grad-CAM, as a PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.models import Image, Prediction, Suggestion
from pipelines import engine
from pipelines.scoring import PoolDataset, classify_with_cams, collate_pool
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


def show_suggestion(ws: Workspace, run_id: int, image_ref: str, *, out: Path | None = None,
                    device: str = DEFAULT_DEVICE) -> dict:
    """A PNG of the image with the chest box and each member's Grad-CAM, titled with the scores.

    The models are the suggest run's own (its detector and classifier runs and checkpoint); `device`
    is where they run (auto, cpu, cuda or mps).
    """
    from pipelines.cam import overlay
    from pipelines.data import load_grey_rgb
    from pipelines.report import plot_image_grid

    with ws.db.session() as s:
        run = get_run(s, run_id, ("suggest",))
        image = resolve_image(s, image_ref)
        pred = s.scalars(select(Prediction).where(Prediction.run_id == run_id, Prediction.image_id == image.id)).first()
        if pred is None:
            raise NotFoundError(f"Run {run_id} did not score {image.rel_path}", "pick an image from its `wb suggest --json`")
        sug = s.scalars(select(Suggestion).where(Suggestion.run_id == run_id, Suggestion.image_id == image.id)).first()
        config = SuggestConfig(**{**run.config, "parts": tuple(run.config["parts"]),
                                  "weights": tuple(run.config["weights"].items())})
        box = latest_boxes(s, [image.id]).get(image.id)
        path, folder, (w, h) = image.abs_path, run_folder(run), dimensions(image)
        rel, label = image.rel_path, image.label
    try:
        where = engine.pick_device(device)
    except ValueError as exc:
        raise InputError(str(exc), "use --device auto or cpu") from None
    detector, det_cfg, classifier, cls_cfg = load_models(ws, config, where)
    dataset = PoolDataset([path], det_cfg.image_size, cls_cfg.image_size)
    _, _, cls_image, size = collate_pool([dataset[0]])
    cls = classify_with_cams(classifier, cls_image, where)
    picture, _ = load_grey_rgb(path)
    import cv2

    maps = [cv2.resize(c[0].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) for c in cls.cams]
    maps = [m / m.max() if m.max() > 0 else m for m in maps]
    marks = []
    if pred.x_min is not None:
        marks.append(((pred.x_min, pred.y_min, pred.x_max, pred.y_max), "red", f"detector {pred.score:.2f}"))
    if box is not None:
        marks.append((box, "lime", "annotated"))
    head = f"#{sug.rank} score {sug.score:.2f}\n{sug.reason}" if sug else "scored, not in the batch"
    shares = pred.extra.get("cam_outside", [])
    titles = [f"{Path(rel).name} ({label}), P(pn) {pred.prob_pneumonia:.2f}\n{head}"]
    for name, ol, share in zip(pred.extra.get("members", []), pred.extra.get("off_lung_members", []), shares, strict=False):
        titles.append(f"Grad-CAM {name}\noff-lung {'n/a' if ol is None else f'{ol:.2f}'}, "
                      f"{'n/a' if share is None else f'{share:.0%}'} outside box")
    target = Path(out) if out else folder / "show" / f"{Path(rel).stem}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    plot_image_grid([picture] + [overlay(picture, m) for m in maps], titles[: 1 + len(maps)], target,
                    boxes=[marks] * (1 + len(maps)), cols=1 + len(maps))
    return {"run_id": run_id, "image": rel, "file": str(target)}
