"""The two kinds of trained model, detector and classifier, as objects: what differs between them
lives here, and training, evaluation and prediction ask `get_kind(run.kind)` instead of testing
a string.

A kind knows: its settings class (`workbench.configs.TRAIN_CONFIGS`, readable without torch), how
its model is built, which images of a split part it trains on and with which boxes, its datasets
and collate function, its loss (`pipelines.engine.ClassifierTask` / `DetectorTask`), the val
metrics the loss does not give, which chest boxes its evaluation compares against, how it gives
P(pneumonia), how an image looks to it, and its CAM picture.

torch is imported inside the methods: `workbench.runs`, which `wb status` reads, builds models
through here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from workbench.configs import TRAIN_CONFIGS, ClassifierConfig, DetectorConfig, TrainConfig
from workbench.errors import InputError
from workbench.runs import Box, latest_boxes, part_images, to_record
from workbench.workspace import Workspace

if TYPE_CHECKING:
    import torch
    from numpy.typing import NDArray
    from torch import nn

    from db.models import Image
    from pipelines.data import ImageRecord
    from pipelines.engine import Task

Mark = tuple[Any, str, str]  # (box in file pixels, colour, caption) drawn on a picture


@dataclasses.dataclass
class CamFigure:
    """One row of `wb cam`: pictures with titles and the boxes drawn on each (None: none)."""

    pictures: list[NDArray[Any]]
    titles: list[str]
    marks: list[list[Mark]] | None = None


class ModelKind:
    """What one kind of trained model does differently. Subclasses: `DetectorKind`, `ClassifierKind`."""

    name: ClassVar[str]
    report_caption: ClassVar[str]  # the caption of the sample pictures in `wb eval`'s report
    scores_boxes: ClassVar[bool] = False  # whether `wb eval` scores chest boxes (needs the part's boxes)

    @property
    def config_class(self) -> type[TrainConfig]:
        return TRAIN_CONFIGS[self.name]

    def build(self, config: TrainConfig, weights: str) -> nn.Module:
        """A new model for `config` with weights policy `weights` (imagenet | none | PATH)."""
        raise NotImplementedError

    def records(self, ws: Workspace, config: TrainConfig, part: str, *,
                progress: bool = True) -> tuple[int, list[ImageRecord], dict[str, int] | None]:
        """(split id, the records of split part `part` this kind trains or validates on, counts per
        chest-box source or None when boxes do not steer it)."""
        raise NotImplementedError

    def datasets(self, config: TrainConfig, train: list[ImageRecord],
                 val: list[ImageRecord]) -> tuple[torch.utils.data.Dataset[Any], torch.utils.data.Dataset[Any]]:
        raise NotImplementedError

    def collate(self) -> Callable[..., Any] | None:
        """The DataLoader's collate_fn for this kind's datasets (None: torch's default)."""
        return None

    def task(self, config: TrainConfig, train: list[ImageRecord]) -> Task:
        """The loss of one batch, for pipelines.engine's loops."""
        raise NotImplementedError

    def val_metrics(self, model: nn.Module, loader: Any, device: torch.device, records: list[ImageRecord]) -> dict[str, Any]:
        """Val metrics the task's loss pass does not give (merged over `engine.evaluate`'s)."""
        return {}

    def eval_records(self, records: list[ImageRecord], boxes: dict[int, tuple[Box, str]]) -> list[ImageRecord]:
        """`wb eval`'s records with the chest boxes this kind is scored or shown with."""
        return [dataclasses.replace(r, box=boxes[r.image_id][0]) if r.image_id in boxes else r for r in records]

    def predict(self, model: nn.Module, config: TrainConfig, records: Sequence[ImageRecord], device: torch.device, *,
                view: str = "full", fill: str = "grey", batch_size: int = 8,
                progress: bool = False) -> tuple[NDArray[Any], list[dict[str, Any]] | None]:
        """(P(pneumonia)[N], detector outputs per image or None) on `records` seen as `view`."""
        raise NotImplementedError

    def outputs(self, probs: NDArray[Any], preds: list[dict[str, Any]] | None, records: list[ImageRecord],
                sizes: list[tuple[int, int]], config: TrainConfig) -> tuple[list[float], list[Any], dict[str, Any]]:
        """`wb eval`'s view of `predict`'s output: (score stored per image, top box in file pixels or
        None per image, metrics of the boxes). A classifier's score is its confidence, max(p, 1 - p)."""
        return [float(max(p, 1 - p)) for p in probs], [None] * len(records), {}

    def seen_image(self, image: NDArray[Any], file_size: tuple[int, int], box: Box, config: TrainConfig, view: str,
                   fill: str) -> NDArray[Any]:
        """The picture [h, w, 3] the model is given of `image` in a shortcut-reliance `view`."""
        raise NotImplementedError

    def cam_figure(self, model: nn.Module, config: TrainConfig, record: ImageRecord, image: NDArray[Any],
                   file_size: tuple[int, int], label: str | None, device: torch.device, run_id: int) -> CamFigure:
        """`wb cam`'s pictures of one image."""
        raise NotImplementedError


class DetectorKind(ModelKind):
    """Faster R-CNN on the annotated images; its P(pneumonia) is 0.5 +- 0.5 x the top box's score
    by the box's class (see workbench.predicting.top_detections)."""

    name = "detector"
    report_caption = "Detection overlays (green: annotated, red: top detection)"
    scores_boxes = True

    @staticmethod
    def _config(config: TrainConfig) -> DetectorConfig:
        if not isinstance(config, DetectorConfig):
            raise InputError(f"A detector run has a {type(config).__name__}", "the run's config does not match its kind")
        return config

    def build(self, config: TrainConfig, weights: str) -> nn.Module:
        from pipelines.detection import build_detector

        c = self._config(config)
        return build_detector(c.backbone, weights, image_size=c.image_size, allow_fallback=c.allow_fallback)

    def collate(self) -> Callable[..., Any] | None:
        from pipelines.data import collate_detection

        return collate_detection

    def records(self, ws: Workspace, config: TrainConfig, part: str, *,
                progress: bool = True) -> tuple[int, list[ImageRecord], dict[str, int] | None]:
        with ws.db.session() as s:
            split_id, images = part_images(s, config.split, part)
            boxes = latest_boxes(s, [im.id for im in images])
            records = [to_record(im, boxes[im.id]) for im in images if im.id in boxes]
        if not records:
            raise InputError(f"No annotated images in the {part} part of the split",
                             "import chest boxes (`wb annotations import FILE`) or annotate in Label Studio")
        return split_id, records, None

    def datasets(self, config: TrainConfig, train: list[ImageRecord],
                 val: list[ImageRecord]) -> tuple[torch.utils.data.Dataset[Any], torch.utils.data.Dataset[Any]]:
        from pipelines.data import DetectionDataset

        return DetectionDataset(train, config.image_size, config.augment), DetectionDataset(val, config.image_size)

    def task(self, config: TrainConfig, train: list[ImageRecord]) -> Task:
        from pipelines.engine import DetectorTask

        return DetectorTask()

    def val_metrics(self, model: nn.Module, loader: Any, device: torch.device, records: list[ImageRecord]) -> dict[str, Any]:
        """The share of val images whose top detection has the image's class (torchvision gives losses only)."""
        from pipelines import engine

        preds = engine.predict_detections(model, loader, device)
        hits = [len(p["labels"]) > 0 and int(p["labels"][0]) == r.label + 1 for p, r in zip(preds, records, strict=True)]
        return {"accuracy": sum(hits) / len(hits)}

    def eval_records(self, records: list[ImageRecord], boxes: dict[int, tuple[Box, str]]) -> list[ImageRecord]:
        # Chest-box metrics compare against annotations only, never against another detector's boxes.
        return [dataclasses.replace(r, box=boxes[r.image_id][0])
                if r.image_id in boxes and boxes[r.image_id][1] == "annotated" else r for r in records]

    def predict(self, model: nn.Module, config: TrainConfig, records: Sequence[ImageRecord], device: torch.device, *,
                view: str = "full", fill: str = "grey", batch_size: int = 8,
                progress: bool = False) -> tuple[NDArray[Any], list[dict[str, Any]] | None]:
        import numpy as np
        import torch

        from pipelines import engine
        from pipelines.data import DetectionDataset, collate_detection

        loader = torch.utils.data.DataLoader(DetectionDataset(records, config.image_size, view=view, fill=fill),
                                             batch_size=batch_size, collate_fn=collate_detection)
        preds = engine.predict_detections(model, loader, device, progress=progress)
        return np.asarray([0.5 if not len(p["scores"]) else
                           0.5 + (0.5 if int(p["labels"][0]) == 2 else -0.5) * float(p["scores"][0])
                           for p in preds]), preds

    def outputs(self, probs: NDArray[Any], preds: list[dict[str, Any]] | None, records: list[ImageRecord],
                sizes: list[tuple[int, int]], config: TrainConfig) -> tuple[list[float], list[Any], dict[str, Any]]:
        """The top detection's score and box per image; chest-box metrics (class-agnostic COCO mAP, mean
        IoU of the top box) on the records with an annotated box."""
        from pipelines.metrics import detection_map, mean_iou
        from workbench.predicting import top_detections

        assert preds is not None  # DetectorKind.predict gives them
        _, _, scores, top_boxes, scaled = top_detections(preds, sizes, config.image_size)
        metrics: dict[str, Any] = {}
        annotated = [i for i, r in enumerate(records) if r.box is not None]
        if annotated:
            metrics.update(detection_map([scaled[i] for i in annotated], [{"boxes": [records[i].box]} for i in annotated]))
            metrics["mean_iou"] = mean_iou([top_boxes[i] for i in annotated], [records[i].box for i in annotated])
        else:
            metrics.update(map50=None, map50_95=None, mean_iou=None)
        metrics["annotated_images"] = len(annotated)
        return [s if s is not None else 0.0 for s in scores], top_boxes, metrics

    def seen_image(self, image: NDArray[Any], file_size: tuple[int, int], box: Box, config: TrainConfig, view: str,
                   fill: str) -> NDArray[Any]:
        from pipelines.chest import box_on_array
        from pipelines.chest import view as chest_view

        return chest_view(image, box_on_array(box, file_size, image.shape), view, fill)

    def cam_figure(self, model: nn.Module, config: TrainConfig, record: ImageRecord, image: NDArray[Any],
                   file_size: tuple[int, int], label: str | None, device: torch.device, run_id: int) -> CamFigure:
        """EigenCAM of the backbone's feature map, with the top detection."""
        import numpy as np
        import torch

        from pipelines.data import DetectionDataset
        from pipelines.detection import detector_eigencam

        c = self._config(config)
        tensor = DetectionDataset([record], c.image_size)[0][0][None].to(device)
        cam = detector_eigencam(model, c.backbone, tensor, file_size)
        with torch.inference_mode():
            pred = model(tensor)[0]
        f = np.array([*file_size, *file_size]) / c.image_size
        top: list[Mark] = [] if not len(pred["boxes"]) else [
            (pred["boxes"][0].cpu().numpy() * f, "red",
             f"{['bg', 'normal', 'pneumonia'][int(pred['labels'][0])]} {float(pred['scores'][0]):.2f}")]
        from pipelines.cam import overlay

        return CamFigure([image, overlay(image, cam)], [f"{Path(record.path).name} (true {label or '?'})", "EigenCAM"],
                         [top, top])


class ClassifierKind(ModelKind):
    """The ensemble on every readable image of a part; chest boxes may steer it (an input mode, guidance)."""

    name = "classifier"
    report_caption = "Sample predictions"

    @staticmethod
    def _config(config: TrainConfig) -> ClassifierConfig:
        if not isinstance(config, ClassifierConfig):
            raise InputError(f"A classifier run has a {type(config).__name__}", "the run's config does not match its kind")
        return config

    def build(self, config: TrainConfig, weights: str) -> nn.Module:
        from pipelines.classification import Ensemble

        c = self._config(config)
        return Ensemble(c.members, c.head, weights, allow_fallback=c.allow_fallback, freeze=c.freeze)

    def records(self, ws: Workspace, config: TrainConfig, part: str, *,
                progress: bool = True) -> tuple[int, list[ImageRecord], dict[str, int] | None]:
        from workbench.predicting import box_records

        with ws.db.session() as s:
            split_id, images = part_images(s, config.split, part)
            _load_roots(images)
        if not config.trains_with_boxes():
            return split_id, [to_record(im) for im in images], None
        records, sources = box_records(ws, images, config.own_box_source(), progress=progress)
        return split_id, records, sources

    def datasets(self, config: TrainConfig, train: list[ImageRecord],
                 val: list[ImageRecord]) -> tuple[torch.utils.data.Dataset[Any], torch.utils.data.Dataset[Any]]:
        from pipelines.data import ClassificationDataset
        from workbench.predicting import classifier_input

        c = self._config(config)
        inputs = classifier_input(c)
        return (ClassificationDataset(train, c.image_size, c.augment, inputs=inputs, guide=c.guide == "boxes"),
                ClassificationDataset(val, c.image_size, inputs=inputs))

    def task(self, config: TrainConfig, train: list[ImageRecord]) -> Task:
        from pipelines.engine import ClassifierTask

        c = self._config(config)
        return ClassifierTask(_class_weight(train) if c.balance else None,
                              guide_weight=c.guide_weight if c.guide == "boxes" else 0.0)

    def predict(self, model: nn.Module, config: TrainConfig, records: Sequence[ImageRecord], device: torch.device, *,
                view: str = "full", fill: str = "grey", batch_size: int = 8,
                progress: bool = False) -> tuple[NDArray[Any], list[dict[str, Any]] | None]:
        import torch

        from pipelines import engine
        from pipelines.data import ClassificationDataset
        from workbench.predicting import classifier_input

        c = self._config(config)
        data = ClassificationDataset(records, c.image_size, inputs=classifier_input(c), view=view, fill=fill)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
        return engine.predict_probs(model, loader, device, progress=progress)[:, 1], None

    def seen_image(self, image: NDArray[Any], file_size: tuple[int, int], box: Box, config: TrainConfig, view: str,
                   fill: str) -> NDArray[Any]:
        from pipelines.data import classifier_image
        from workbench.predicting import classifier_input

        return classifier_image(image, file_size, box, classifier_input(self._config(config)), view=view, fill=fill)

    def cam_figure(self, model: nn.Module, config: TrainConfig, record: ImageRecord, image: NDArray[Any],
                   file_size: tuple[int, int], label: str | None, device: torch.device, run_id: int) -> CamFigure:
        """Per member Grad-CAM (last block) and LayerCAM (stride-16 block), on the picture the model sees."""
        from pipelines.cam import overlay, scale_map
        from pipelines.classification import Ensemble
        from pipelines.data import classifier_image, classifier_tensors
        from pipelines.scoring import classify_with_cams
        from workbench.predicting import classifier_input

        c = self._config(config)
        assert isinstance(model, Ensemble)  # built by ClassifierKind.build
        inputs = classifier_input(c)
        if inputs.uses_box and record.box is None:
            raise InputError(f"Run {run_id} sees chest boxes only ({inputs.mode}) and {record.path} has none",
                             "annotate it, or give an image the run's detector has boxed")
        seen = classifier_image(image, file_size, record.box, inputs)  # what the model looks at
        tensor = classifier_tensors(record, c.image_size, inputs)[0][None]
        out = classify_with_cams(model, tensor, device)
        prob = float(out.probs[0, 1])
        sh, sw = seen.shape[:2]
        names = list(model.cam_layers())
        pictures = [seen] + [overlay(seen, scale_map(m[0], sw, sh)) for m in out.cams] + [
            overlay(seen, scale_map(m[0], sw, sh)) for m in out.fine_cams]
        titles = [f"{Path(record.path).name}\ntrue {label or '?'}, P(pneumonia) {prob:.2f}"] + [
            f"Grad-CAM {n}" for n in names] + [f"LayerCAM {n} (stride 16)" for n in names]
        return CamFigure(pictures, titles)


def _class_weight(records: list[ImageRecord]) -> tuple[float, float]:
    """n / (2 * n_c) per class: each class then weighs as much as the other in the loss."""
    normal, pneumonia = (sum(r.label == c for r in records) for c in (0, 1))
    return len(records) / (2 * max(normal, 1)), len(records) / (2 * max(pneumonia, 1))


def _load_roots(images: list[Image]) -> None:
    for im in images:
        im.root  # noqa: B018 - abs_path needs the root after the session closes


KINDS: dict[str, ModelKind] = {k.name: k for k in (DetectorKind(), ClassifierKind())}
assert set(KINDS) == set(TRAIN_CONFIGS), "every trained kind has its settings in workbench.configs.TRAIN_CONFIGS"


def get_kind(name: str) -> ModelKind:
    try:
        return KINDS[name]
    except KeyError:
        raise InputError(f"Unknown model kind {name!r}", f"choose one of {', '.join(KINDS)}") from None
