"""Encoders: one input's distinct values -> tokens, mask and a pooled vector; the wrapper maps them back to rows
and stands in a learnt "missing" embedding for rows without the input."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from ..modalities.base import Modality
from ..registry import Registry
from ..types import Encoded, ModalityBatch


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Encoder(nn.Module):
    """forward(data [U, ...], mask [U, T] | None) -> (tokens [U, T, dim], mask [U, T], pooled [U, dim])."""

    Config: ClassVar[type[EncoderConfig]] = EncoderConfig
    registry_name: ClassVar[str] = ""

    def __init__(self, config: EncoderConfig, modality: Modality, dim: int) -> None:
        super().__init__()
        self.config, self.dim = config, dim

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def save_files(self, directory: Path, prefix: str) -> None:
        """Files besides the weights that rebuilding needs (a pretrained model's config)."""

    @classmethod
    def modality_options(cls, kind: str, options: dict[str, Any], encoder: dict[str, Any]) -> dict[str, Any]:
        """The input's modality options this encoder needs (a pretrained model's tokenizer, image size, sample
        rate), from the recipe's options and encoder fields; raise RecipeError for a modality it cannot take."""
        return options

    @classmethod
    def for_loading(cls, config: dict, directory: Path, prefix: str) -> dict:
        """Rewrite a saved encoder config so the encoder rebuilds from the model directory alone."""
        return config


ENCODERS: Registry[Encoder] = Registry("encoder")


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


class InputEncoder(nn.Module):
    """Runs an encoder on an input's distinct values, expands to rows, and fills absent rows with a learnt
    missing embedding (one token, unmasked), so every fusion sees valid vectors and the `present` flags."""

    def __init__(self, encoder: Encoder, dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.missing = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.missing, std=0.02)

    def forward(self, batch: ModalityBatch) -> Encoded:
        tokens, mask, pooled = self.encoder(batch.data, batch.mask)
        return self.expand(tokens, mask, pooled, batch)

    def expand(self, tokens: Tensor, mask: Tensor, pooled: Tensor, batch: ModalityBatch) -> Encoded:
        idx, present = batch.index, batch.present
        tokens, mask, pooled = tokens[idx], mask[idx], pooled[idx]
        p = present[:, None]
        first = torch.zeros(mask.shape[1], dtype=torch.bool, device=mask.device)
        first[0] = True
        pooled = torch.where(p, pooled, self.missing.to(pooled.dtype))
        mask = torch.where(p, mask, first)
        missing_tokens = self.missing.to(tokens.dtype) * first[:, None].to(tokens.dtype)
        tokens = torch.where(p[..., None], tokens, missing_tokens)
        return Encoded(tokens, mask, pooled, present)


class FeatureCache:
    """What a frozen network gives each distinct value, kept for the process: every value (keyed by a hash of its
    content) is computed once, then served from here every epoch and in evaluation."""

    def __init__(self) -> None:
        self.store: dict[bytes, Any] = {}

    def __len__(self) -> int:
        return len(self.store)

    def clear(self) -> None:
        self.store.clear()

    @staticmethod
    def key(value: Tensor | np.ndarray) -> bytes:
        array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
        return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()

    def get(self, keys: list[bytes], compute: Callable[[list[int]], Iterable[Any]]) -> list[Any]:
        """The stored value of each key; `compute(positions)` gives the values of the keys not stored yet."""
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        if todo:
            for i, value in zip(todo, compute(todo)):
                self.store[keys[i]] = value
        return [self.store[k] for k in keys]


def build_encoder(name: str, config: dict[str, Any], modality: Modality, dim: int) -> Encoder:
    cls = ENCODERS.get(name)
    return cls(cls.Config.model_validate(config), modality, dim)
