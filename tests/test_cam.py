"""Grad-CAM and LayerCAM per ensemble member and EigenCAM for the detector give maps of the image's size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.cam import detector_cam, overlay, scale_map
from pipelines.classification import Ensemble
from pipelines.data import ClassificationDataset, DetectionDataset, ImageRecord, load_grey_rgb
from pipelines.detection import build_detector, cam_target_layer
from pipelines.registry import get_detector_spec

torch.set_num_threads(1)


@pytest.fixture
def xray(sample_dir):
    path = sample_dir / "chest_xray" / "test" / "NORMAL" / "IM-0016-0001.jpeg"
    return ImageRecord(image_id=None, path=str(path), label=0)


@pytest.mark.parametrize("head", ["fc1", "fc2"])
def test_cams_per_member_scale_to_the_image_size(xray, head):
    from pipelines.scoring import classify_with_cams

    torch.manual_seed(0)
    model = Ensemble(["mobilenet_v2", "resnet18"], head, "none", freeze=0.5).eval()
    tensor = ClassificationDataset([xray], 64)[0][0][None]
    image, (w, h) = load_grey_rgb(xray.path)
    out = classify_with_cams(model, tensor, torch.device("cpu"))
    assert list(model.cam_layers()) == ["0:mobilenet_v2", "1:resnet18"]
    assert [c.shape for c in out.cams] == [(1, 2, 2), (1, 2, 2)]  # stride 32 at 64 px
    assert [c.shape for c in out.fine_cams] == [(1, 4, 4), (1, 4, 4)]  # stride 16: twice as fine
    for raw in out.cams + out.fine_cams:
        cam = scale_map(raw[0], w, h)
        assert cam.shape == (h, w) and cam.dtype == np.float32
        assert 0.0 <= cam.min() and cam.max() <= 1.0
    assert overlay(image, scale_map(out.fine_cams[0][0], w, h)).shape == (h, w, 3)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v3"])
def test_eigencam_for_the_detector_has_the_image_size(xray, backbone):
    torch.manual_seed(0)
    model = build_detector(backbone, "none", image_size=64).eval()
    tensor = DetectionDataset([xray], 64)[0][0][None]
    _, (w, h) = load_grey_rgb(xray.path)
    cam = detector_cam(model, cam_target_layer(model, backbone), tensor, (w, h), fpn=get_detector_spec(backbone).fpn)
    assert cam.shape == (h, w)
    assert cam.max() > cam.min()  # a map with structure, not a constant
