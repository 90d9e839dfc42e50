"""Late (decision-level) fusion: each input predicts on its own; outputs are averaged with learnt weights over
the inputs present in each row. Additive by construction: it cannot model cross-modal interactions."""
from __future__ import annotations

import torch
from torch import nn

from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, mlp


@FUSIONS.register("late")
class LateFusion(Fusion):
    models_interactions = False

    def __init__(self, config: FusionConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.branches = nn.ModuleDict({n: mlp(dim, config.hidden, config.dropout) for n in names})
        self.weights = nn.Parameter(torch.zeros(len(names)))

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        outs = torch.stack([self.branches[n](inputs[n].pooled) for n in self.names], 1)  # [B, M, D]
        present = torch.stack([inputs[n].present for n in self.names], 1)  # [B, M]
        # absent inputs get no weight; a row with no input at all gets the plain average
        w = torch.softmax(self.weights.expand_as(present).masked_fill(~present, -1e4), 1)
        # the task head is linear, so averaging representations = averaging per-input decisions
        return Fused((w.unsqueeze(-1) * outs).sum(1), attention={"input_weights": w})
