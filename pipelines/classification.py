"""The study's ensemble classifier: several ImageNet backbones joined by one of two heads.

- `fc1`: each member has its own 2-class layer; the members' class probabilities (2 per member,
  6 for three members) go through one linear layer to the 2 output logits ("1 FC (6)").
- `fc2`: each member projects its pooled features to 128 numbers; the projections are summed,
  then FC 128 -> 64 -> 2.
Input: [N, 3, S, S] ImageNet-normalised; output: logits [N, 2] (index 1 = PNEUMONIA).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import torch
from torch import nn

from pipelines.models import build_feature_extractor, get_layer
from pipelines.registry import HEADS, get_spec


class Ensemble(nn.Module):
    def __init__(self, members: Sequence[str], head: str = "fc2", weights: str = "none", *,
                 allow_fallback: bool = False, freeze: float = 0.0):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"Unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if not members:
            raise ValueError("An ensemble needs at least one member")
        specs = [get_spec(m) for m in members]
        self.member_names = list(members)
        self.head = head
        self.members = nn.ModuleList(build_feature_extractor(m, weights, allow_fallback=allow_fallback) for m in members)
        self.combine: nn.Module
        if head == "fc1":
            self.member_heads = nn.ModuleList(nn.Linear(s.feature_dim, 2) for s in specs)
            self.combine = nn.Linear(2 * len(specs), 2)
        else:
            self.member_heads = nn.ModuleList(nn.Linear(s.feature_dim, 128) for s in specs)
            self.combine = nn.Sequential(nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 2))
        self._frozen: list[nn.Module] = []
        if freeze > 0:
            self.freeze_leading(freeze)

    def freeze_leading(self, fraction: float) -> None:
        """Freeze the first `fraction` of each member's parameters (the early, generic layers).

        Frozen modules also keep their BatchNorm statistics (they stay in eval mode).
        """
        for member in self.members:
            params = list(member.parameters())
            frozen = {id(p) for p in params[: int(round(fraction * len(params)))]}
            for p in params:
                if id(p) in frozen:
                    p.requires_grad_(False)
            for module in member.modules():
                own = list(module.parameters(recurse=False))
                if own and all(id(p) in frozen for p in own):
                    self._frozen.append(module)

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [head(member(x)) for member, head in zip(self.members, self.member_heads, strict=True)]
        joined = torch.cat([o.softmax(dim=1) for o in outs], dim=1) if self.head == "fc1" else torch.stack(outs).sum(dim=0)
        logits: torch.Tensor = self.combine(joined)
        return logits

    def cam_layers(self, fine: bool = False) -> dict[str, nn.Module]:
        """Member name -> the layer Grad-CAM hooks (its last convolutional block), or with `fine`
        the stride-16 block LayerCAM reads (pipelines.registry.BackboneSpec.fine_cam_layer)."""
        return {
            f"{i}:{name}": get_layer(member, get_spec(name).fine_cam_layer if fine else get_spec(name).cam_layer)
            for i, (name, member) in enumerate(zip(self.member_names, self.members, strict=True))
        }
