"""Cross-modal attention (MulT, Tsai et al. 2019): for every ordered pair of inputs, the target's tokens attend to
the source's tokens; each target's attended tokens are pooled and all are concatenated."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from ..encoders.base import masked_mean
from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, mlp


class CrossAttentionConfig(FusionConfig):
    heads: int = Field(4, ge=1, description="Attention heads (must divide the model dim).")


class CrossBlock(nn.Module):
    """Pre-norm cross-attention + feed-forward; returns the updated target tokens and head-averaged weights."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.nq, self.nkv, self.nff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, q: Tensor, kv: Tensor, kv_mask: Tensor) -> tuple[Tensor, Tensor]:
        kvn = self.nkv(kv)
        a, w = self.attn(self.nq(q), kvn, kvn, key_padding_mask=~kv_mask, need_weights=True)
        x = q + a
        return x + self.ff(self.nff(x)), w


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(Fusion):
    attends_tokens = True
    Config = CrossAttentionConfig
    config: CrossAttentionConfig

    def __init__(self, config: CrossAttentionConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.pairs = [(t, s) for t in names for s in names if s != t] or [(names[0], names[0])]
        self.blocks = nn.ModuleDict({f"{t}__{s}": CrossBlock(dim, config.heads, config.dropout) for t, s in self.pairs})
        self.mlp = mlp(dim * len(self.pairs), config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        pooled, maps = [], {}
        for t, s in self.pairs:
            x, w = self.blocks[f"{t}__{s}"](inputs[t].tokens, inputs[s].tokens, inputs[s].mask)
            pooled.append(masked_mean(x, inputs[t].mask))
            maps[f"{t}<-{s}"] = w
        return Fused(self.mlp(torch.cat(pooled, -1)), attention=maps)
