"""Faster R-CNN factory for the chest box: classes background / normal chest / pneumonia chest.

What each backbone is (FPN or one map, the layer EigenCAM reads, torchvision's factory) is plain
data in `pipelines.registry.DETECTORS`; this module builds from it:
- no `factory` (the study's "MobileNet", `mobilenet_v2`): the classification backbone's `features`
  as a single-map backbone with an AnchorGenerator and RoIAlign, as in torchvision's FasterRCNN docs.
- a `factory` (`mobilenet_v3`, `resnet50`): that torchvision FPN detector.
ImageNet weights apply to the backbone; the detection heads start from scratch.
The model's own transform is fixed to `image_size` (inputs arrive already resized to it).
"""
from __future__ import annotations

from typing import Any, cast

import torchvision.models.detection as tv_detection
from numpy.typing import NDArray
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from db.models.labels import DETECTOR_CLASSES
from pipelines.models import WeightsUnavailable, build_classification_model, load_state_dict, weights_enum
from pipelines.registry import DetectorSpec, get_detector_spec, get_spec


def build_detector(backbone: str, weights: str = "none", *, image_size: int = 512, allow_fallback: bool = False,
                   box_score_thresh: float = 0.01) -> nn.Module:
    """A torchvision FasterRCNN with len(DETECTOR_CLASSES) classes.

    `box_score_thresh` is low so that nearly every image keeps a top detection to classify by.
    """
    spec = get_detector_spec(backbone)  # UnknownBackbone (a ValueError) for names it cannot build
    # One chest per image: a few hundred proposals and 64 sampled RoIs per image are plenty,
    # and cut CPU time several-fold against torchvision's 2000 / 512 (tuned for COCO).
    common: dict[str, Any] = dict(num_classes=len(DETECTOR_CLASSES), min_size=image_size, max_size=image_size,
                                  box_score_thresh=box_score_thresh, box_detections_per_img=10,
                                  rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
                                  rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=50, box_batch_size_per_image=64)
    if spec.factory is None:
        return _single_map(spec, weights, image_size, allow_fallback, common)
    return _fpn(spec, weights, allow_fallback, common)


def _single_map(spec: DetectorSpec, weights: str, image_size: int, allow_fallback: bool, common: dict[str, Any]) -> nn.Module:
    trunk = cast(nn.Sequential, build_classification_model(spec.name, weights, allow_fallback=allow_fallback).features)
    # A 1x1 conv takes the trunk's channels (1280 for MobileNetV2) to 256 (as the FPN models have): the
    # box head's first layer shrinks from 64M to 13M weights, the bulk of the CPU time in the docs' version.
    features = nn.Sequential(*trunk, nn.Conv2d(get_spec(spec.name).feature_dim, 256, kernel_size=1), nn.ReLU(inplace=True))
    features.out_channels = 256  # type: ignore[assignment]  # a plain int FasterRCNN reads; Module's stub allows only tensors
    # One feature map (stride 32); the chest spans a quarter to all of the image, so the
    # anchors scale with the input instead of the docs' fixed 32..512 px.
    sizes = tuple(max(16, int(image_size * f)) for f in (0.25, 0.4, 0.6, 0.8, 1.0))
    anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=((0.75, 1.0, 1.33),))
    # sampling_ratio=0 is RoIAlign's adaptive grid (Detectron2's default): ceil(bin size) points
    # per bin. On this one stride-32 map a bin is under a cell at low resolution, so one point
    # does what torchvision's fixed 2x2 does, and its CPU backward (half of a training step
    # at 160 px) runs 4x fewer points.
    roi_pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=0)
    detector: nn.Module = FasterRCNN(features, rpn_anchor_generator=anchors, box_roi_pool=roi_pool, **common)
    return detector


def _fpn(spec: DetectorSpec, weights: str, allow_fallback: bool, common: dict[str, Any]) -> nn.Module:
    assert spec.factory is not None
    factory = getattr(tv_detection, spec.factory)
    state = load_state_dict(spec.name, weights, allow_fallback=allow_fallback)  # raises when unavailable
    if weights == "imagenet" and state is not None:
        # torchvision's own path: the weights are now in the cache; it also freezes BatchNorm.
        pretrained: nn.Module = factory(weights=None, weights_backbone=weights_enum(get_spec(spec.name)), **common)
        return pretrained
    model: nn.Module = factory(weights=None, weights_backbone=None, **common)
    if state is not None:
        # A PATH: a state_dict of the classification model; the FPN body holds its trunk
        # (MobileNetV3's body is `features` itself, so its prefix goes).
        state = {k.removeprefix(spec.state_prefix): v for k, v in state.items() if k.startswith(spec.state_prefix)}
        body = cast(nn.Module, cast(nn.Module, model.backbone).body)
        result = body.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise WeightsUnavailable(f"Weights file does not fit the {spec.name} backbone (missing {result.missing_keys[0]})")
    return model


def cam_target_layer(model: nn.Module, backbone: str) -> nn.Module:
    """The layer EigenCAM reads: the backbone's last feature map (the FPN's output for FPN models)."""
    return model.get_submodule(get_detector_spec(backbone).cam_layer)


def detector_eigencam(model: nn.Module, backbone: str, input_tensor: Tensor, image_size: tuple[int, int]) -> NDArray[Any]:
    """EigenCAM map [H, W] (float32 in [0, 1]) of the detector's feature map for one image [1, 3, S, S]."""
    from pipelines.cam import detector_cam  # pytorch-grad-cam and OpenCV: only when a map is drawn

    return detector_cam(model, cam_target_layer(model, backbone), input_tensor, image_size,
                        fpn=get_detector_spec(backbone).fpn)
