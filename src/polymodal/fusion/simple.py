"""Fusion by concatenation and by element-wise product of the pooled vectors."""
from __future__ import annotations

import torch

from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, mlp


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """Concatenate pooled vectors, then an MLP (interactions come from the MLP)."""

    def __init__(self, config: FusionConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.mlp = mlp(dim * len(names), config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        return Fused(self.mlp(torch.cat([inputs[n].pooled for n in self.names], -1)))


@FUSIONS.register("product")
class ProductFusion(Fusion):
    """Element-wise product of the squashed pooled vectors (multiplicative interactions, as in VQA baselines).
    Each encoder's pooled vector is already a learnt projection, so no further one is stacked on it."""

    def __init__(self, config: FusionConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.mlp = mlp(dim, config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        out = None
        for n in self.names:
            z = torch.tanh(inputs[n].pooled)
            out = z if out is None else out * z
        return Fused(self.mlp(out))
