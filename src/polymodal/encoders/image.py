"""A small convolutional image encoder trained from scratch: conv-BN-ReLU-maxpool blocks, grid cells as tokens."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .base import ENCODERS, Encoder, EncoderConfig


class ImageCNNConfig(EncoderConfig):
    channels: list[int] = Field([32, 64, 128], min_length=1, description="Output channels of each conv block; each "
                                "block halves the resolution.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the pooled vector.")
    pool: Literal["grid", "mean", "flatten"] = Field(
        "grid", description="The pooled vector from: the final grid averaged down to at most 8 x 8 cells and "
        "flattened (grid: keeps where things are, at a width that stops growing with the image), the mean of the "
        "final grid (where things are is lost), or the whole grid flattened.")


def grid_size(size: tuple[int, int], blocks: int) -> tuple[int, int]:
    """(h, w) after `blocks` conv blocks: each one's ceil-mode pooling halves each side, rounding up."""
    h, w = size
    for _ in range(blocks):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


GRID_SIDE = 8  # pool: grid keeps at most this many cells a side


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
        self.cells = (min(h, GRID_SIDE), min(w, GRID_SIDE)) if config.pool == "grid" else (h, w)
        width = config.channels[-1] * (self.cells[0] * self.cells[1] if config.pool != "mean" else 1)
        self.pool = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, dim))

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        x = (data - 0.5) / 0.25
        feat = self.body(x.contiguous(memory_format=torch.channels_last))  # [U, C, h, w]
        grid = feat.flatten(2).transpose(1, 2)  # [U, h*w, C]
        tokens = self.proj(grid)
        if self.config.pool == "mean":
            pooled = self.pool(grid.mean(1))
        elif tuple(feat.shape[2:]) == self.cells:  # flatten, or a grid small enough already
            pooled = self.pool(grid.flatten(1))
        else:
            pooled = self.pool(F.adaptive_avg_pool2d(feat, self.cells).flatten(2).transpose(1, 2).flatten(1))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device), pooled
