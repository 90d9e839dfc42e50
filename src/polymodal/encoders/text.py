"""Text encoders trained from scratch over the learnt vocabulary: bag-of-words and a small transformer."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from .base import ENCODERS, Encoder, EncoderConfig, masked_mean


class BagOfWordsConfig(EncoderConfig):
    reduce: Literal["sum", "mean"] = Field("sum", description="Sum (a count vector times an embedding matrix) or "
                                           "mean of the word embeddings.")


@ENCODERS.register("text_bow")
class BagOfWords(Encoder):
    """A bag of words (summed word embeddings) then an MLP: fast, and enough for short templated text."""

    Config = BagOfWordsConfig
    config: BagOfWordsConfig

    def __init__(self, config: BagOfWordsConfig, modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        self.embed = nn.Embedding(modality.describe()["vocab_size"], dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)  # small: Adam moves each word's vector quickly
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        tokens = self.embed(data)
        bag = (tokens * mask[..., None]).sum(1) if self.config.reduce == "sum" else masked_mean(tokens, mask)
        return tokens, mask, self.mlp(bag + self.bias)


class TextTransformerConfig(EncoderConfig):
    layers: int = Field(2, ge=1, description="Transformer layers.")
    heads: int = Field(4, ge=1, description="Attention heads (must divide the model dim).")
    dropout: float = Field(0.1, ge=0, lt=1)


@ENCODERS.register("text_transformer")
class TextTransformer(Encoder):
    Config = TextTransformerConfig
    config: TextTransformerConfig

    def __init__(self, config: TextTransformerConfig, modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        info = modality.describe()
        self.embed = nn.Embedding(info["vocab_size"], dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos = nn.Parameter(torch.randn(info["max_length"], dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, config.heads, 2 * dim, config.dropout, batch_first=True,
                                           norm_first=True)
        self.body = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        x = self.embed(data) + self.pos[: data.shape[1]]
        return self.encode_embeddings(x, mask)

    def encode_embeddings(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        tokens = self.norm(self.body(x, src_key_padding_mask=~mask))
        return tokens, mask, masked_mean(tokens, mask)
