"""Grad-CAM per ensemble member and EigenCAM for the detector return maps of the image's size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.cam import detector_cam, ensemble_cams, overlay
from pipelines.classification import Ensemble
from pipelines.data import ClassificationDataset, DetectionDataset, ImageRecord, load_grey_rgb
from pipelines.detection import build_detector, cam_target_layer

torch.set_num_threads(1)


@pytest.fixture
def xray(sample_dir):
    path = sample_dir / "chest_xray" / "test" / "NORMAL" / "IM-0016-0001.jpeg"
    return ImageRecord(image_id=None, path=str(path), label=0)


@pytest.mark.parametrize("head", ["fc1", "fc2"])
def test_gradcam_per_member_has_the_image_size(xray, head):
    torch.manual_seed(0)
    model = Ensemble(["mobilenet_v2", "resnet18"], head, "none", freeze=0.5).eval()
    tensor = ClassificationDataset([xray], 64)[0][0][None]
    image, (w, h) = load_grey_rgb(xray.path)
    maps = ensemble_cams(model, tensor, (w, h), target_class=1)
    assert list(maps) == ["0:mobilenet_v2", "1:resnet18"]
    for cam in maps.values():
        assert cam.shape == (h, w) and cam.dtype == np.float32
        assert 0.0 <= cam.min() and cam.max() <= 1.0
    assert overlay(image, maps["0:mobilenet_v2"]).shape == (h, w, 3)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v3"])
def test_eigencam_for_the_detector_has_the_image_size(xray, backbone):
    torch.manual_seed(0)
    model = build_detector(backbone, "none", image_size=64).eval()
    tensor = DetectionDataset([xray], 64)[0][0][None]
    _, (w, h) = load_grey_rgb(xray.path)
    cam = detector_cam(model, cam_target_layer(model, backbone), tensor, (w, h), fpn=backbone != "mobilenet_v2")
    assert cam.shape == (h, w)
    assert cam.max() > cam.min()  # a map with structure, not a constant
