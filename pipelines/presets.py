"""The seed study's experiment grid as named presets (overrides of the trainers' defaults).

Table 2 (ensemble classifier, ResNet18 + DenseNet121 + InceptionV3, 299 px, 30 epochs): rows
1-5 vary augmentation, optimiser and head; row 6 = no augmentation, Adam, fc2.
Table 3 (Faster R-CNN): augmentation (none / Affine) x backbone (ResNet50 / MobileNet).
Values are plain dicts so they parse without torch; workbench turns them into configs.
"""
from __future__ import annotations

from typing import Any

STUDY_MEMBERS = ("resnet18", "densenet121", "inception_v3")

CLASSIFIER_PRESETS: dict[str, dict[str, Any]] = {
    "table2-1": {"augment": "none", "optimizer": "sgd", "head": "fc1"},
    "table2-2": {"augment": "affine", "optimizer": "sgd", "head": "fc1"},
    "table2-3": {"augment": "rotate", "optimizer": "sgd", "head": "fc1"},
    "table2-4": {"augment": "none", "optimizer": "adam", "head": "fc1"},
    "table2-5": {"augment": "none", "optimizer": "sgd", "head": "fc2"},
    "table2-6": {"augment": "none", "optimizer": "adam", "head": "fc2"},
}
for _row in CLASSIFIER_PRESETS.values():
    _row.update(members=STUDY_MEMBERS, image_size=299, epochs=30)

DETECTOR_PRESETS: dict[str, dict[str, Any]] = {
    "table3-1": {"augment": "none", "backbone": "resnet50"},
    "table3-2": {"augment": "none", "backbone": "mobilenet_v2"},
    "table3-3": {"augment": "affine", "backbone": "resnet50"},
    "table3-4": {"augment": "affine", "backbone": "mobilenet_v2"},
}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {"classifier": CLASSIFIER_PRESETS, "detector": DETECTOR_PRESETS}


class UnknownPreset(ValueError):
    pass


def get_preset(kind: str, name: str) -> dict[str, Any]:
    """The overrides for preset `name` of trainer `kind` ("classifier" or "detector")."""
    table = PRESETS.get(kind, {})
    if name not in table:
        raise UnknownPreset(f"Unknown {kind} preset {name!r}; choose one of {', '.join(table)}")
    return dict(table[name])
