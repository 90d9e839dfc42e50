"""Early fusion: one transformer over every input's tokens (plus an input-type embedding and a [CLS] token)."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, attention_layer, mlp


class EarlyConfig(FusionConfig):
    layers: int = Field(2, ge=1, description="Transformer layers over the joint token sequence.")
    heads: int = Field(4, ge=1, description="Attention heads (must divide the model dim).")


@FUSIONS.register("early")
class EarlyFusion(Fusion):
    attends_tokens = True
    Config = EarlyConfig
    config: EarlyConfig

    def __init__(self, config: EarlyConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.type_embed = nn.Parameter(torch.randn(len(names), dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.body = nn.TransformerEncoder(attention_layer(dim, config.heads, config.dropout), config.layers,
                                          enable_nested_tensor=False)
        self.mlp = mlp(dim, config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        b = next(iter(inputs.values())).pooled.shape[0]
        tokens = [self.cls.expand(b, -1, -1)] + [inputs[n].tokens + self.type_embed[i]
                                                 for i, n in enumerate(self.names)]
        mask = [torch.ones(b, 1, dtype=torch.bool, device=self.cls.device)] + [inputs[n].mask for n in self.names]
        out = self.body(torch.cat(tokens, 1), src_key_padding_mask=~torch.cat(mask, 1))
        return Fused(self.mlp(out[:, 0]))
