"""Gated multimodal unit (GMU, Arevalo et al. 2017): tanh features per input, mixed by sigmoid gates computed
from all inputs together."""
from __future__ import annotations

import torch
from torch import nn

from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, mlp


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    def __init__(self, config: FusionConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.feat = nn.ModuleDict({n: nn.Linear(dim, dim) for n in names})
        self.gate = nn.Linear(dim * len(names), dim * len(names))
        self.mlp = mlp(dim, config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        zs = [inputs[n].pooled for n in self.names]
        h = torch.stack([torch.tanh(self.feat[n](z)) for n, z in zip(self.names, zs)], 1)  # [B, M, D]
        g = torch.sigmoid(self.gate(torch.cat(zs, -1))).view_as(h)
        present = torch.stack([inputs[n].present for n in self.names], 1).unsqueeze(-1)
        g = g * present  # an absent input contributes nothing
        return Fused(self.mlp((g * h).sum(1)), attention={"gates": g.mean(-1)})
