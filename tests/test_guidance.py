"""Box guidance (`wb train classifier --guide boxes`): the "Right for the Right Reasons" penalty is 0
when no input gradient falls outside the chest box and grows as a marker there drives the answer;
a guided run on a tiny planted set looks less at the marker than a plain one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from pipelines import engine
from pipelines.data import ClassificationDataset, ImageRecord

torch.set_num_threads(1)


class RegionModel(torch.nn.Module):
    """logits = (-v, v), v = weight x the mean of an input region (rows y0:y1, columns x0:x1)."""

    def __init__(self, region: tuple[int, int, int, int], weight: float = 1.0):
        super().__init__()
        self.region, self.weight = region, weight

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = self.region
        v = self.weight * images[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3))
        return torch.stack([-v, v], dim=1)


def test_the_penalty_is_zero_inside_and_grows_with_an_outside_marker():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 16, 16)
    outside = torch.ones(4, 16, 16)
    outside[:, 4:12, 4:12] = 0.0  # the chest box: the centre
    inside_only = engine.input_gradient_penalty(RegionModel((5, 11, 5, 11)), images, outside)
    assert float(inside_only) == 0.0
    marker = [float(engine.input_gradient_penalty(RegionModel((0, 3, 0, 3), w), images, outside)) for w in (1.0, 2.0, 4.0)]
    assert 0.0 < marker[0] < marker[1] < marker[2]


def test_the_task_adds_the_weighted_penalty_only_for_boxed_images():
    torch.manual_seed(0)
    model = RegionModel((0, 3, 0, 3), 2.0)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    outside = torch.ones(4, 16, 16)
    plain, _ = engine.ClassifierTask().loss(model, images, labels)
    none_boxed = (labels, outside, torch.zeros(4, dtype=torch.bool))
    assert float(engine.ClassifierTask(guide_weight=10.0).loss(model, images, none_boxed)[0]) == pytest.approx(float(plain))
    boxed = (labels, outside, torch.tensor([True, False, True, False]))
    task = engine.ClassifierTask(guide_weight=10.0)
    guided, _ = task.loss(model, images, boxed)
    expected = float(plain) + 10.0 * float(engine.input_gradient_penalty(model, images[[0, 2]], outside[[0, 2]]))
    assert float(guided) == pytest.approx(expected, rel=1e-5) and task.stats["guided_batches"] == 1


def _outside_gradient_energy(model: torch.nn.Module, data: ClassificationDataset, idx: list[int]) -> float:
    """Mean over images of sum_{outside the box} (d/dx sum log p)^2: the penalty, measured in eval mode."""
    model.eval()
    x = torch.stack([data[i][0] for i in idx])
    outside = torch.stack([data[i][2] for i in idx])
    return float(engine.input_gradient_penalty(model, x, outside).detach())


def _synthetic(folder, n: int, marker_on: int, seed: int) -> list[ImageRecord]:
    """n 32 px noise images; class 1 has a darker patch inside the centre box (the real sign) and, when
    `marker_on` is 1, a bright 4 px square in a corner outside it; marker_on 0 puts the square on class 0."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        pixels = rng.normal(100, 20, (32, 32))
        if label:
            pixels[12:20, 12:20] -= 50
        if label == marker_on:
            y, x = [(1, 1), (1, 27), (27, 1), (27, 27)][int(rng.integers(4))]
            pixels[y:y + 4, x:x + 4] = 255
        path = folder / f"{seed}-{i}.png"
        PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        out.append(ImageRecord(i, str(path), label, (8.0, 8.0, 24.0, 24.0)))
    return out


def _tiny_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2))


def test_a_guided_run_has_less_input_gradient_outside_the_box(tmp_path, record_property):
    """A marker in a corner of every class-1 training image, a darker patch in the box the real sign.

    Guided (the penalty, weight 1), the trained network's input gradient outside the chest box is a
    fraction of an unguided one's. What this does NOT show: that it reads the marker less. Here the
    real sign is easy and both networks pass a test with the marker moved to class 0 (recorded as
    a property); with a fainter sign (-25 instead of -50) and weights 100-10,000 the guided network
    read the marker MORE than the plain one (reversed-test accuracy 0.0-0.4): a thresholded marker
    detector is silent outside except at the marker, while a shared convolutional detector of the
    real sign fires on noise everywhere, so a gradient penalty outside the box can favour the marker
    (README, "Box guidance").
    """
    train = _synthetic(tmp_path, 160, marker_on=1, seed=0)
    reversed_test = _synthetic(tmp_path, 80, marker_on=0, seed=1)
    data = ClassificationDataset(train, 32, guide=True)
    energy, accuracy = {}, {}
    for name, weight in (("plain", 0.0), ("guided", 1.0)):
        engine.seed_everything(0)
        model = _tiny_cnn()
        loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(15):
            engine.train_one_epoch(model, opt, loader, torch.device("cpu"), engine.ClassifierTask(guide_weight=weight),
                                   progress=False)
        energy[name] = _outside_gradient_energy(model, data, [i for i, r in enumerate(train) if r.label == 1])
        test = torch.utils.data.DataLoader(ClassificationDataset(reversed_test, 32), batch_size=40)
        probs = engine.predict_probs(model, test, torch.device("cpu"))[:, 1]
        accuracy[name] = float(np.mean((probs >= 0.5) == np.array([r.label for r in reversed_test])))
        record_property(f"reversed_test_accuracy_{name}", accuracy[name])
    print(f"\ninput-gradient energy outside the box (class 1, train): {energy}; reversed-test accuracy: {accuracy}")
    assert energy["guided"] < 0.5 * energy["plain"]
