"""A small convolutional image encoder trained from scratch: conv-BN-ReLU-maxpool blocks, grid cells as tokens."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from .base import ENCODERS, Encoder, EncoderConfig


class ImageCNNConfig(EncoderConfig):
    channels: list[int] = Field([32, 64, 128], min_length=1, description="Output channels of each conv block; each "
                                "block halves the resolution.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the pooled vector.")
    pool: Literal["mean", "flatten"] = Field("mean", description="Pooled vector from the mean of the final grid, or "
                                             "from the whole grid flattened (keeps where things are).")


def grid_size(size: tuple[int, int], blocks: int) -> tuple[int, int]:
    """(h, w) after `blocks` conv blocks: each one's ceil-mode pooling halves each side, rounding up."""
    h, w = size
    for _ in range(blocks):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def conv_blocks(in_ch: int, channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(in_ch, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2, ceil_mode=True)]
        in_ch = out
    return nn.Sequential(*layers)


@ENCODERS.register("image_cnn")
class ImageCNN(Encoder):
    Config = ImageCNNConfig
    config: ImageCNNConfig

    def __init__(self, config: ImageCNNConfig, modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        info = modality.describe()
        self.body = conv_blocks(info["channels"], config.channels).to(memory_format=torch.channels_last)
        self.proj = nn.Linear(config.channels[-1], dim)
        h, w = grid_size(info["size"], len(config.channels))
        width = config.channels[-1] * (h * w if config.pool == "flatten" else 1)
        self.pool = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, dim))

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        x = (data - 0.5) / 0.25
        feat = self.body(x.contiguous(memory_format=torch.channels_last))  # [U, C, h, w]
        grid = feat.flatten(2).transpose(1, 2)  # [U, h*w, C]
        tokens = self.proj(grid)
        pooled = self.pool(grid.flatten(1) if self.config.pool == "flatten" else grid.mean(1))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device), pooled
