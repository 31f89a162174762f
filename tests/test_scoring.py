"""The one-pass CAMs in pipelines.scoring match pytorch-grad-cam, member by member: Grad-CAM at the
last block and LayerCAM at the stride-16 block, both from one backward pass."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import require_imagenet_mobilenet_v2


@pytest.mark.slow
def test_one_pass_grad_cam_and_layer_cam_match_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM, LayerCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from pipelines.classification import Ensemble
    from pipelines.scoring import classify_with_cams

    # With random weights the raw maps are ~1e-7 and pytorch-grad-cam's scaling epsilon dominates.
    require_imagenet_mobilenet_v2()
    torch.manual_seed(0)
    model = Ensemble(["mobilenet_v2"], head="fc1", weights="imagenet").eval()
    x = torch.randn(3, 3, 96, 96)
    out = classify_with_cams(model, x, torch.device("cpu"))
    assert out.probs.shape == (3, 2) and out.member_probs.shape == (1, 3, 2) and out.embeddings.shape == (3, 1280)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-6)
    assert all(p.requires_grad for p in model.parameters())  # left as it was found
    predicted = model(x).argmax(dim=1)
    pairs = [(GradCAM, out.cams, model.cam_layers()), (LayerCAM, out.fine_cams, model.cam_layers(fine=True))]
    for method, maps, layers in pairs:
        for cams, layer in zip(maps, layers.values(), strict=True):
            with method(model=model, target_layers=[layer]) as cam:
                reference = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(p)) for p in predicted])
            mine = scale_cam_image(cams, (96, 96))
            for a, b in zip(mine, reference, strict=True):
                assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999, method.__name__
            assert np.abs(mine - reference).max() < 0.05  # same maps up to float32 rounding after min-max scaling
    assert out.fine_cams[0].shape == (3, 6, 6) and out.cams[0].shape == (3, 3, 3)  # stride 16 and 32 at 96 px
    assert all(p.requires_grad for p in model.parameters())  # still as it was found

