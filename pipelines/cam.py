"""Class-activation maps: showing them, and the detector's EigenCAM (pytorch-grad-cam).

- Ensemble: Grad-CAM and LayerCAM per member come from pipelines.scoring.classify_with_cams, the
  one implementation `wb cam`, `wb suggest` and `wb suggest show` share (tested equal to
  pytorch-grad-cam's GradCAM and LayerCAM); `scale_map` turns a raw map into a picture-sized
  [0, 1] map the way pytorch-grad-cam does (min-max, then resize).
- Detector: EigenCAM (Muhammad & Yeasin 2020): the first principal component of the backbone's
  feature map; gradient-free, so it suits detectors whose outputs are boxes, not one logit.
Maps come back at the picture's size, float32 in [0, 1].
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from pytorch_grad_cam import EigenCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

if TYPE_CHECKING:
    pass


def fpn_reshape(features: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """FPN levels -> one [N, C*L, H, W] tensor at the finest level's size.

    (The library's fasterrcnn_reshape_transform pools to the coarsest level, which is 1x1 on
    the small inputs we train at.)
    """
    maps = list(features.values())
    size = maps[0].shape[-2:]
    return torch.cat([torch.nn.functional.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps], dim=1)


def _to_size(cam: NDArray[Any], width: int, height: int) -> NDArray[Any]:
    resized = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.asarray(np.clip(resized, 0.0, 1.0))


def overlay(image_rgb: NDArray[Any], cam: NDArray[Any]) -> NDArray[Any]:
    """uint8 [H, W, 3] picture of `cam` [H, W] over `image_rgb` uint8 [H, W, 3]."""
    picture: NDArray[Any] = show_cam_on_image(image_rgb.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=0.6)
    return picture


def scale_map(cam: NDArray[Any], width: int, height: int) -> NDArray[Any]:
    """A raw CAM [h, w] (non-negative) as [height, width] float32 in [0, 1]: min-max scaled, then
    resized bilinearly (pytorch-grad-cam's scale_cam_image does the same)."""
    cam = np.asarray(cam, dtype=np.float32)
    cam = cam - cam.min()
    cam = cam / (1e-7 + cam.max())
    return _to_size(cam, width, height)


def detector_cam(model: nn.Module, layer: nn.Module, input_tensor: torch.Tensor, image_size: tuple[int, int],
                 *, fpn: bool) -> NDArray[Any]:
    """EigenCAM map [H, W] of the detector's backbone for one image [1, 3, S, S] in [0, 1]."""
    model.eval()
    reshape = fpn_reshape if fpn else None
    with EigenCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        # Any targets list stops the library from treating the box dicts as class logits.
        grey = cam(input_tensor=input_tensor, targets=[lambda output: 0])[0]
    return _to_size(grey, *image_size)
