"""What exists, without building anything: backbone specs, detector specs, heads, augmentations.

The names here are plain data, so the CLI lists its choices and configs validate them without
importing torch (`wb --help` stays fast). The factories that build these live beside their kind:
`pipelines.models` (backbones), `pipelines.detection`, `pipelines.classification`, `pipelines.data`.
"""
from __future__ import annotations

from dataclasses import dataclass


class UnknownBackbone(ValueError):
    """A name that is not in the registry."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: str  # torchvision.models function name
    weights: str  # torchvision weights enum member, e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"
    feature_dim: int  # width of the pooled feature vector once the classifier is removed
    head_attr: str  # attribute holding the ImageNet classifier (replaced by Identity)
    cam_layer: str  # dotted path of the layer Grad-CAM hooks (last conv block, stride 32: 7x7 at 224 px)
    fine_cam_layer: str  # a stride-16 block (14x14 at 224 px) for LayerCAM, fine enough to see a small marker
    min_size: int = 32  # smallest input side the network accepts


REGISTRY: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec("mobilenet_v2", "mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1", 1280, "classifier",
                     "features.18", "features.13"),
        BackboneSpec("mobilenet_v3", "mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1", 960, "classifier",
                     "features.16", "features.12"),
        BackboneSpec("resnet18", "resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512, "fc", "layer4", "layer3"),
        BackboneSpec("resnet50", "resnet50", "ResNet50_Weights.IMAGENET1K_V1", 2048, "fc", "layer4", "layer3"),
        BackboneSpec("densenet121", "densenet121", "DenseNet121_Weights.IMAGENET1K_V1", 1024, "classifier",
                     "features.norm5", "features.denseblock3"),
        BackboneSpec("inception_v3", "inception_v3", "Inception_V3_Weights.IMAGENET1K_V1", 2048, "fc", "Mixed_7c",
                     "Mixed_6e", min_size=75),
    )
}
BACKBONES = tuple(REGISTRY)



@dataclass(frozen=True)
class DetectorSpec:
    """A Faster R-CNN backbone `pipelines.detection.build_detector` can build; `name` is also the
    classification backbone (REGISTRY) whose ImageNet weights its trunk starts from."""

    name: str
    fpn: bool  # several feature maps (torchvision's FPN models) or one stride-32 map
    cam_layer: str  # dotted path, in the detector, of the feature map EigenCAM reads
    # torchvision.models.detection function building the whole detector; None: wb's single-map
    # Faster R-CNN on the classification backbone's `features` (spec.feature_dim channels).
    factory: str | None = None
    # A classification state_dict (--weights PATH) fits the FPN body once this prefix is dropped
    # (keys without it are left out); "" keeps every key.
    state_prefix: str = ""


DETECTORS: dict[str, DetectorSpec] = {
    s.name: s
    for s in (
        DetectorSpec("mobilenet_v2", fpn=False, cam_layer="backbone"),  # the study's "MobileNet"
        DetectorSpec("mobilenet_v3", fpn=True, cam_layer="backbone.fpn", factory="fasterrcnn_mobilenet_v3_large_fpn",
                     state_prefix="features."),
        DetectorSpec("resnet50", fpn=True, cam_layer="backbone.fpn", factory="fasterrcnn_resnet50_fpn"),
    )
}
DETECTOR_BACKBONES = tuple(DETECTORS)  # the `--backbone` choices of `wb train detector`
HEADS = ("fc1", "fc2")  # the ensemble's heads (pipelines.classification)
AUGMENTATIONS = ("none", "affine", "rotate")  # pipelines.data.augmentation
INPUT_MODES = ("full", "chest-crop", "chest-mask")  # how a classifier sees an image (pipelines.chest.INPUT_MODES)
FILLS = ("grey", "blur", "noise")  # what fills a removed region (pipelines.chest.fill_values)
GUIDES = ("none", "boxes")
MARKER_SHAPES = ("square", "disc", "ring", "cross", "letter")  # planted shortcut markers (pipelines.stress)
MARKER_PLACES = ("anywhere", "corners", "margin")  # boxes: input-gradient penalty outside the chest box (pipelines.engine)


def get_detector_spec(name: str) -> DetectorSpec:
    try:
        return DETECTORS[name]
    except KeyError:
        get_spec(name)  # a name unknown altogether gets the backbone registry's message
        raise UnknownBackbone(f"Backbone {name!r} has no detector; choose one of {', '.join(DETECTOR_BACKBONES)}") from None


def get_spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownBackbone(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None
