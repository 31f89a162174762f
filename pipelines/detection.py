"""Faster R-CNN factory for the chest box: classes background / normal chest / pneumonia chest.

Backbones (names from pipelines.models' registry):
- `mobilenet_v2`: the study's "MobileNet": torchvision MobileNetV2 `features` as a single-map
  backbone with an AnchorGenerator and RoIAlign, as in torchvision's FasterRCNN docs.
- `mobilenet_v3`: torchvision `fasterrcnn_mobilenet_v3_large_fpn`.
- `resnet50`: torchvision `fasterrcnn_resnet50_fpn`.
ImageNet weights apply to the backbone; the detection heads start from scratch.
The model's own transform is fixed to `image_size` (inputs arrive already resized to it).
"""
from __future__ import annotations

from typing import cast

from torch import nn
from torchvision.models.detection import FasterRCNN, fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from db.models.labels import DETECTOR_CLASSES
from pipelines.models import WeightsUnavailable, build_classification_model, load_state_dict, weights_enum
from pipelines.registry import DETECTOR_BACKBONES, get_spec


def build_detector(backbone: str, weights: str = "none", *, image_size: int = 512, allow_fallback: bool = False,
                   box_score_thresh: float = 0.01) -> nn.Module:
    """A torchvision FasterRCNN with len(DETECTOR_CLASSES) classes.

    `box_score_thresh` is low so that nearly every image keeps a top detection to classify by.
    """
    if backbone not in DETECTOR_BACKBONES:
        get_spec(backbone)  # unknown names get the registry's message
        raise ValueError(f"Backbone {backbone!r} has no detector; choose one of {', '.join(DETECTOR_BACKBONES)}")
    # One chest per image: a few hundred proposals and 64 sampled RoIs per image are plenty,
    # and cut CPU time several-fold against torchvision's 2000 / 512 (tuned for COCO).
    common = dict(num_classes=len(DETECTOR_CLASSES), min_size=image_size, max_size=image_size,
                  box_score_thresh=box_score_thresh, box_detections_per_img=10,
                  rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
                  rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=50, box_batch_size_per_image=64)
    if backbone == "mobilenet_v2":
        trunk = cast(nn.Sequential, build_classification_model("mobilenet_v2", weights, allow_fallback=allow_fallback).features)
        # A 1x1 conv takes the 1280 channels to 256 (as the FPN models have): the box head's first
        # layer shrinks from 64M to 13M weights, the bulk of the CPU time in the docs' version.
        features = nn.Sequential(*trunk, nn.Conv2d(1280, 256, kernel_size=1), nn.ReLU(inplace=True))
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
    state = load_state_dict(backbone, weights, allow_fallback=allow_fallback)  # raises when unavailable
    factory = fasterrcnn_mobilenet_v3_large_fpn if backbone == "mobilenet_v3" else fasterrcnn_resnet50_fpn
    if weights == "imagenet" and state is not None:
        # torchvision's own path: the weights are now in the cache; it also freezes BatchNorm.
        pretrained: nn.Module = factory(weights=None, weights_backbone=weights_enum(get_spec(backbone)), **common)
        return pretrained
    model: nn.Module = factory(weights=None, weights_backbone=None, **common)
    if state is not None:
        # A PATH: a state_dict of the classification model; the FPN body holds its trunk
        # (MobileNetV3's body is `features` itself, so its prefix goes).
        if backbone == "mobilenet_v3":
            state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        body = cast(nn.Module, cast(nn.Module, model.backbone).body)
        result = body.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise WeightsUnavailable(f"Weights file does not fit the {backbone} backbone (missing {result.missing_keys[0]})")
    return model


def cam_target_layer(model: nn.Module, backbone: str) -> nn.Module:
    """The layer EigenCAM reads: the backbone's last feature map (the FPN's output for FPN models)."""
    body = cast(nn.Module, model.backbone)
    return body if backbone == "mobilenet_v2" else cast(nn.Module, body.fpn)
