"""Attention bottlenecks (MBT, Nagrani et al. 2021): each input runs its own transformer layers over its tokens
plus a few shared bottleneck tokens; cross-modal information flows only through the bottleneck, which is averaged
over the inputs present in each row after every layer."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..encoders.base import masked_mean
from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, attention_layer, mlp


class BottleneckConfig(FusionConfig):
    layers: int = Field(2, ge=1, description="Fusion layers.")
    heads: int = Field(4, ge=1, description="Attention heads (must divide the model dim).")
    bottleneck_tokens: int = Field(4, ge=1, description="Shared bottleneck tokens.")


@FUSIONS.register("bottleneck")
class BottleneckFusion(Fusion):
    attends_tokens = True
    Config = BottleneckConfig
    config: BottleneckConfig

    def __init__(self, config: BottleneckConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.bottleneck = nn.Parameter(torch.randn(1, config.bottleneck_tokens, dim) * 0.02)
        self.layers = nn.ModuleList([
            nn.ModuleDict({n: attention_layer(dim, config.heads, config.dropout) for n in names})
            for _ in range(config.layers)])
        self.mlp = mlp(2 * dim, config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        b = next(iter(inputs.values())).pooled.shape[0]
        nb = self.bottleneck.shape[1]
        z = self.bottleneck.expand(b, -1, -1)
        tokens = {n: inputs[n].tokens for n in self.names}
        present = torch.stack([inputs[n].present for n in self.names], 1).float()  # [B, M]
        weight = present / present.sum(1, keepdim=True).clamp_min(1.0)
        ones = torch.ones(b, nb, dtype=torch.bool, device=z.device)
        for layer in self.layers:
            updates = []
            for n in self.names:
                out = layer[n](torch.cat([tokens[n], z], 1),
                               src_key_padding_mask=~torch.cat([inputs[n].mask, ones], 1))
                tokens[n], zn = out[:, :-nb], out[:, -nb:]
                updates.append(zn)
            z_new = (torch.stack(updates, 1) * weight[:, :, None, None]).sum(1)
            # rows with no input present keep the previous bottleneck
            z = torch.where(present.sum(1)[:, None, None] > 0, z_new, z)
        per_input = torch.stack([masked_mean(tokens[n], inputs[n].mask) for n in self.names], 1)
        summary = (per_input * weight[..., None]).sum(1)
        return Fused(self.mlp(torch.cat([summary, z.mean(1)], -1)))
