"""Builds the ImageNet backbones of the registry (`pipelines.registry`, timm-style) for the detector
and the ensemble.

Each registry entry names a torchvision classification model, its weights enum, the width of its
pooled features and the layer Grad-CAM should look at. `weights` policy everywhere:
`imagenet` (torchvision's weights API: $TORCH_HOME cache, else download), `none` (random init),
or a path to a state_dict saved from the same torchvision model.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from pipelines.registry import BackboneSpec, get_spec
from pipelines.registry import UnknownBackbone as UnknownBackbone  # raised by the builders here; callers catch it


class WeightsUnavailable(RuntimeError):
    """Pretrained weights cannot be had (no cache, no network, bad file)."""


class WeightsFallback(UserWarning):
    """Warned when `allow_fallback` let a backbone start from random weights instead."""


def _fall_back(name: str, reason: str) -> None:
    warnings.warn(f"{name}: {reason}; starting from random weights", WeightsFallback, stacklevel=3)


def weights_enum(spec: BackboneSpec) -> torchvision.models.WeightsEnum:
    enum_name, member = spec.weights.split(".")
    weights: torchvision.models.WeightsEnum = getattr(torchvision.models, enum_name)[member]
    return weights


def _cache_file(weights: torchvision.models.WeightsEnum) -> Path:
    url: str = weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_state_dict(name: str, policy: str, *, allow_fallback: bool = False) -> dict[str, Any] | None:
    """The pretrained state_dict for backbone `name` under `policy`; None means random init.

    Raises WeightsUnavailable with a one-line message when ImageNet weights cannot be had and
    `allow_fallback` is False; with it, returns None (random init).
    """
    spec = get_spec(name)
    if policy == "none":
        return None
    if policy != "imagenet":
        path = Path(policy).expanduser()
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            return state
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
            if allow_fallback:
                _fall_back(name, f"cannot read weights file {path} ({type(exc).__name__})")
                return None
            raise WeightsUnavailable(f"Cannot read weights file {path}: {type(exc).__name__}") from None
    weights = weights_enum(spec)
    cached = _cache_file(weights)
    try:
        if cached.is_file():
            state = torch.load(cached, map_location="cpu", weights_only=True)
            return state
        # torch.hub announces the download on stdout, which belongs to `--json` output.
        with contextlib.redirect_stdout(sys.stderr):
            state = weights.get_state_dict(progress=False, check_hash=True)
            return state
    except Exception as exc:  # noqa: BLE001 - offline, proxy, bad hash: one message for all
        if allow_fallback:
            _fall_back(name, f"ImageNet weights are not cached in {cached.parent} and could not be downloaded "
                             f"({type(exc).__name__})")
            return None
        raise WeightsUnavailable(
            f"ImageNet weights for {name} are not cached in {cached.parent} and could not be downloaded "
            f"({type(exc).__name__}); pass `--weights none`, or set TORCH_HOME to a folder holding hub/checkpoints/{cached.name}"
        ) from None


def build_classification_model(name: str, policy: str = "none", *, allow_fallback: bool = False) -> nn.Module:
    """The torchvision ImageNet model `name` with the chosen weights (1000-class head kept)."""
    spec = get_spec(name)
    state = load_state_dict(name, policy, allow_fallback=allow_fallback)
    kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
    model: nn.Module = getattr(torchvision.models, spec.builder)(weights=None, **kwargs)
    if state is not None:
        model.load_state_dict(state)
    if isinstance(model, torchvision.models.Inception3):
        # The auxiliary head only helps 299 px training from scratch; the study used the main output.
        model.aux_logits = False
        model.AuxLogits = None
        # ImageNet inception weights expect its own input scaling (torchvision sets this with weights).
        model.transform_input = state is not None
    return model


def build_feature_extractor(name: str, policy: str = "none", *, allow_fallback: bool = False) -> nn.Module:
    """Backbone `name` returning pooled features [N, spec.feature_dim] (classifier removed)."""
    spec = get_spec(name)
    model = build_classification_model(name, policy, allow_fallback=allow_fallback)
    setattr(model, spec.head_attr, nn.Identity())
    return model


def get_layer(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)
