"""Encoders of table columns: a small MLP over a standardised number, an embedding of a category."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import ENCODERS, Encoder, EncoderConfig


def one_token(vec: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return vec[:, None], torch.ones(len(vec), 1, dtype=torch.bool, device=vec.device), vec


@ENCODERS.register("number_mlp")
class NumberMLP(Encoder):
    """A number -> Linear -> GELU -> Linear (one token)."""

    def __init__(self, config: EncoderConfig, modality: Any, dim: int) -> None:
        super().__init__(config, modality, dim)
        self.net = nn.Sequential(nn.Linear(modality.describe()["features"], dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        return one_token(self.net(data))


@ENCODERS.register("category_embedding")
class CategoryEmbedding(Encoder):
    """A category id -> a learnt vector (id 0: unseen in training) (one token)."""

    def __init__(self, config: EncoderConfig, modality: Any, dim: int) -> None:
        super().__init__(config, modality, dim)
        self.embed = nn.Embedding(modality.describe()["vocab_size"], dim)

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        return one_token(self.embed(data))
