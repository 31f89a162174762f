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



@pytest.mark.slow
def test_the_fine_map_locates_an_8_pixel_square_outside_the_box(tmp_path):
    """A classifier taught that an 8 px bright square (anywhere outside a central chest box) means
    class 1: the square's cell is among the 4 hottest of the stride-16 LayerCAM's 64 cells (8x8 at
    128 px, a 16th of the image) on most marked images; the last block's 4x4 Grad-CAM, given the
    same area (its hottest cell of 16), finds it far less often."""
    from PIL import Image as PILImage

    from pipelines import engine
    from pipelines.classification import Ensemble
    from pipelines.data import ClassificationDataset, ImageRecord
    from pipelines.scoring import classify_with_cams

    require_imagenet_mobilenet_v2()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    box = (32.0, 32.0, 96.0, 96.0)
    records, squares = [], {}
    for i in range(96):
        pixels = rng.normal(90, 25, (128, 128))
        label = i % 2
        if label:
            while True:  # a top-left corner whose 8 px square misses the box
                y, x = (int(v) for v in rng.integers(0, 121, 2))
                if x + 8 <= 32 or x >= 96 or y + 8 <= 32 or y >= 96:
                    break
            pixels[y:y + 8, x:x + 8] = 255
            squares[i] = (y + 4, x + 4)
        path = tmp_path / f"{i}.png"
        PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        records.append(ImageRecord(i, str(path), label, box))
    engine.seed_everything(0)
    model = Ensemble(["mobilenet_v2"], "fc2", "imagenet", freeze=0.6)
    data = ClassificationDataset(records, 128)
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    for _ in range(8):
        engine.train_one_epoch(model, opt, loader, torch.device("cpu"), engine.ClassifierTask(), progress=False)
    marked = sorted(squares)
    out = classify_with_cams(model, torch.stack([data[i][0] for i in marked]), torch.device("cpu"))
    assert (out.probs[:, 1] > 0.5).mean() > 0.9  # it learnt the square

    def hits(cams: np.ndarray, top: int) -> float:
        """Share of marked images whose square's centre cell is among the `top` hottest cells."""
        cell = 128 / cams.shape[-1]
        ok = []
        for cam, i in zip(cams, marked, strict=True):
            sy, sx = (int(v // cell) for v in squares[i])
            ok.append(cam[sy, sx] >= np.sort(cam.ravel())[-top])
        return float(np.mean(ok))

    fine, coarse = hits(out.fine_cams[0], 4), hits(out.cams[0], 1)
    print(f"\nsquare's cell among the hottest 1/16 of the map: LayerCAM 8x8 {fine:.2f}; Grad-CAM 4x4 {coarse:.2f}")
    assert out.fine_cams[0].shape[-2:] == (8, 8) and out.cams[0].shape[-2:] == (4, 4)
    assert fine >= 0.8 and fine > coarse + 0.3
