"""Tensor fusion (TFN, Zadeh et al. 2017): the outer product of [1; z_m] over inputs, and its low-rank
factorisation (LMF, Liu et al. 2018) with every factor a registered parameter."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..errors import RecipeError
from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, mlp


class TensorConfig(FusionConfig):
    factor_dim: int = Field(16, ge=1, description="Each input is projected to this width before the outer "
                            "product (the tensor has (factor_dim+1)^M entries).")


@FUSIONS.register("tensor")
class TensorFusion(Fusion):
    Config = TensorConfig
    config: TensorConfig

    def __init__(self, config: TensorConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        k = config.factor_dim
        if (k + 1) ** len(names) > 2_000_000:
            raise RecipeError(f"field `model.fusion.factor_dim`: a tensor of ({k}+1)^{len(names)} = "
                              f"{(k + 1) ** len(names):,} entries is too large; lower factor_dim or use 'lowrank'")
        self.proj = nn.ModuleDict({n: nn.Linear(dim, k) for n in names})
        self.mlp = mlp((k + 1) ** len(names), config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        out = None
        for n in self.names:
            z = self.proj[n](inputs[n].pooled)
            z = torch.cat([torch.ones_like(z[:, :1]), z], -1)
            out = z if out is None else (out.unsqueeze(-1) * z.unsqueeze(1)).flatten(1)
        return Fused(self.mlp(out))


class LowRankConfig(FusionConfig):
    rank: int = Field(8, ge=1, description="Rank of the factorised fusion tensor.")


@FUSIONS.register("lowrank")
class LowRankFusion(Fusion):
    Config = LowRankConfig
    config: LowRankConfig

    def __init__(self, config: LowRankConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.factors = nn.ParameterDict(
            {n: nn.Parameter(torch.randn(config.rank, dim + 1, dim) * (dim + 1) ** -0.5) for n in names})
        self.rank_weights = nn.Parameter(torch.full((config.rank,), 1.0 / config.rank))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mlp = mlp(dim, config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        prod = None
        for n in self.names:
            z = inputs[n].pooled
            z = torch.cat([torch.ones_like(z[:, :1]), z], -1)  # [B, D+1]
            f = torch.einsum("bi,rio->rbo", z, self.factors[n])  # [R, B, D]
            prod = f if prod is None else prod * f
        fused = torch.einsum("r,rbo->bo", self.rank_weights, prod) + self.bias
        return Fused(self.mlp(fused))
