"""A video encoder: the image CNN on each frame, then a transformer over time; frames are the tokens."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from .base import ENCODERS, Encoder, EncoderConfig, masked_mean
from .image import conv_blocks


class VideoCNNConfig(EncoderConfig):
    channels: list[int] = Field([32, 64, 64], min_length=1, description="Per-frame conv block channels.")
    temporal_layers: int = Field(1, ge=0, description="Transformer layers over the frame sequence.")
    heads: int = Field(4, ge=1)


@ENCODERS.register("video_cnn")
class VideoCNN(Encoder):
    Config = VideoCNNConfig
    config: VideoCNNConfig

    def __init__(self, config: VideoCNNConfig, modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        info = modality.describe()
        self.frames = conv_blocks(info["channels"], config.channels).to(memory_format=torch.channels_last)
        self.proj = nn.Linear(config.channels[-1], dim)
        self.pos = nn.Parameter(torch.randn(info["n_frames"], dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, config.heads, 2 * dim, 0.1, batch_first=True, norm_first=True)
        self.temporal = (nn.TransformerEncoder(layer, config.temporal_layers, enable_nested_tensor=False)
                         if config.temporal_layers else nn.Identity())

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        u, n = data.shape[:2]
        x = ((data.flatten(0, 1) - 0.5) / 0.25).contiguous(memory_format=torch.channels_last)
        per_frame = self.frames(x).mean((2, 3)).view(u, n, -1)
        tokens = self.proj(per_frame) + self.pos[:n]
        if mask is None:  # every clip has all its frames
            tokens = self.temporal(tokens)
            return tokens, torch.ones(u, n, dtype=torch.bool, device=data.device), tokens.mean(1)
        if isinstance(self.temporal, nn.TransformerEncoder):
            tokens = self.temporal(tokens, src_key_padding_mask=~mask)
        return tokens, mask, masked_mean(tokens, mask)
