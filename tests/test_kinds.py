"""Kinds as objects: the detector registry, the two model kinds, and statuses as str Enums."""
from __future__ import annotations

import pytest
import torch

from db.models import AnnotationStatus, ImageStatus, RunKind, RunStatus
from db.models.labels import ANNOTATION_STATUSES
from pipelines.detection import build_detector, cam_target_layer
from pipelines.registry import DETECTOR_BACKBONES, DETECTORS, UnknownBackbone, get_detector_spec
from workbench.configs import TRAIN_CONFIGS, ClassifierConfig, DetectorConfig, make_config
from workbench.errors import InputError
from workbench.kinds import KINDS, get_kind


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3"])  # resnet50's FPN is the same code path, 10x the size
def test_each_detector_spec_builds_and_names_its_cam_layer(name):
    spec = get_detector_spec(name)
    torch.manual_seed(0)
    model = build_detector(name, "none", image_size=64).eval()
    layer = cam_target_layer(model, name)
    assert layer is (model.backbone.fpn if spec.fpn else model.backbone)
    with torch.inference_mode():
        out = model([torch.rand(3, 64, 64)])[0]
    assert set(out) == {"boxes", "scores", "labels"}


def test_detector_names_come_from_the_registry():
    assert DETECTOR_BACKBONES == tuple(DETECTORS) == ("mobilenet_v2", "mobilenet_v3", "resnet50")
    assert [s.fpn for s in DETECTORS.values()] == [False, True, True]
    with pytest.raises(UnknownBackbone, match="Backbone 'resnet18' has no detector; choose one of mobilenet_v2"):
        get_detector_spec("resnet18")  # a classification backbone without a detector entry
    with pytest.raises(UnknownBackbone, match="Unknown backbone 'vgg'"):
        build_detector("vgg")
    with pytest.raises(InputError, match="Unknown detector backbone 'resnet18'"):
        make_config("detector", backbone="resnet18")


def test_detector_help_lists_the_registry(cli):
    out = cli.run("train", "detector", "--help").output
    assert all(name in out for name in DETECTOR_BACKBONES)


def test_every_trained_kind_has_its_settings_and_behaviour():
    assert set(KINDS) == set(TRAIN_CONFIGS) == {RunKind.DETECTOR, RunKind.CLASSIFIER}
    assert get_kind("detector").config_class is DetectorConfig
    assert get_kind("classifier").config_class is ClassifierConfig
    assert get_kind("detector").scores_boxes and not get_kind("classifier").scores_boxes
    with pytest.raises(InputError, match="Unknown model kind 'suggest'"):
        get_kind("suggest")
    with pytest.raises(InputError, match="Unknown model kind 'eval'"):
        make_config("eval")


def test_a_kind_refuses_the_other_kinds_config():
    with pytest.raises(InputError, match="A detector run has a ClassifierConfig"):
        get_kind("detector").build(ClassifierConfig(members=("mobilenet_v2",)), "none")


def test_config_methods_say_when_boxes_are_needed():
    assert not DetectorConfig().uses_boxes() and not DetectorConfig().trains_with_boxes()
    assert DetectorConfig().own_box_source() is None
    assert not ClassifierConfig().trains_with_boxes()
    guided = ClassifierConfig(guide="boxes", boxes_from=3)
    assert guided.trains_with_boxes() and not guided.uses_boxes() and guided.own_box_source() == 3
    cropped = ClassifierConfig(input_mode="chest-crop")
    assert cropped.uses_boxes() and cropped.trains_with_boxes()


def test_statuses_keep_the_values_stored_in_existing_databases():
    assert ANNOTATION_STATUSES == ("valid", "rejected", "skipped", "deleted", "superseded", "disputed")
    assert [s.value for s in ImageStatus] == ["ok", "unreadable", "changed", "missing"]
    assert [s.value for s in RunStatus] == ["created", "running", "done", "interrupted", "failed"]
    assert [s.value for s in RunKind] == ["detector", "classifier", "suggest", "doctor"]
    # str Enums compare and hash as their values, so rows read back as plain str still match
    assert AnnotationStatus.VALID == "valid" and {"ok": 1}[ImageStatus.OK] == 1
