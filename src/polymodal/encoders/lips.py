"""A lip-reading-grade video encoder (after LipNet and Auto-AVSR's visual front-end): a 3-D convolution over
(time, height, width) that sees motion between neighbouring frames, a 2-D CNN on each frame, and a bidirectional
GRU over the frame sequence; every frame is a token. Takes clips of every frame (video option `frames: all`),
padded and masked."""
from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from .base import ENCODERS, AttentionPool, Encoder, masked_mean
from .image import conv_blocks, grid_size
from .masking import TimeMaskConfig, mask_time


class LipConfig(TimeMaskConfig):
    front_channels: int = Field(32, ge=1, description="Channels of the 3-D convolution front-end.")
    front_frames: int = Field(5, ge=1, description="Frames the front-end's kernel spans (odd: centred).")
    channels: list[int] = Field([64, 96], min_length=1, description="The per-frame 2-D conv blocks after it.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before the GRU.")
    pool: Literal["mean", "flatten"] = Field("mean", description="Each frame's vector: the mean of its final grid, "
                                             "or the whole grid flattened (keeps where the lips are).")
    flip: bool = Field(False, description="Training only: each clip mirrored left to right with probability 0.5 "
                       "(a mouth is near symmetric; lip-reading recipes flip).")
    summary: Literal["mean", "attention"] = Field("mean", description="The clip's vector (what classification "
                                                  "uses): the mean of its frames' tokens, or a learnt attention over "
                                                  "them (picks out the frames of one word).")
    subtract_mean: bool = Field(True, description="Remove each pixel's mean over the clip's frames and scale by the "
                                "clip's deviation: what moves is left, the static face, its lighting and position "
                                "go (without it lip_cnn learnt nothing on grid-s1's real lips).")


def grid_cells(size: Any, blocks: int) -> int:
    """Cells of the final grid for frames of `size` (one side or [h, w]): the front-end's stride-2 convolution and
    pooling, then `blocks` conv blocks."""
    h, w = size if isinstance(size, (list, tuple)) else (size, size)
    h, w = grid_size((((int(h) - 1) // 2 + 1) // 2, ((int(w) - 1) // 2 + 1) // 2), blocks)
    return max(h, 1) * max(w, 1)


@ENCODERS.register("lip_cnn")
class LipCNN(Encoder):
    """3-D conv front-end -> per-frame 2-D CNN -> bidirectional GRU; frames are the tokens."""

    Config = LipConfig
    config: LipConfig

    def __init__(self, config: LipConfig, modality: Any, dim: int) -> None:
        super().__init__(config, modality, dim)
        c, k = modality.describe()["channels"], config.front_frames
        self.front = nn.Sequential(
            nn.Conv3d(c, config.front_channels, (k, 5, 5), stride=(1, 2, 2), padding=(k // 2, 2, 2), bias=False),
            nn.BatchNorm3d(config.front_channels), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 2, 2), (1, 2, 2)))
        self.frame = conv_blocks(config.front_channels, config.channels)
        width = config.channels[-1]
        if config.pool == "flatten":
            width *= grid_cells(modality.describe()["size"], len(config.channels))
        self.drop = nn.Dropout(config.dropout)
        self.gru = nn.GRU(width, dim // 2, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * (dim // 2), dim)
        self.summary = AttentionPool(dim) if config.summary == "attention" else None

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        u, n = data.shape[:2]
        if mask is None:
            mask = torch.ones(u, n, dtype=torch.bool, device=data.device)
        x = self.normalise(data, mask)
        if self.training:
            x = mask_time(x, mask, self.config.time_masks, self.config.time_mask_width)
            if self.config.flip:
                mirrored = torch.rand(u, device=x.device) < 0.5
                x = torch.where(mirrored[:, None, None, None, None], x.flip(-1), x)
        x = self.front(x.transpose(1, 2))  # [U, C', T, H', W']
        x = x.transpose(1, 2).flatten(0, 1)  # every frame on its own
        grid = self.frame(x)
        per_frame = (grid.flatten(1) if self.config.pool == "flatten" else grid.mean((2, 3))).view(u, n, -1)
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(per_frame), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=n)
        tokens = self.proj(out)
        return tokens, mask, masked_mean(tokens, mask) if self.summary is None else self.summary(tokens, mask)

    def normalise(self, data: Tensor, mask: Tensor) -> Tensor:
        """[U, N, C, H, W] in [0, 1] -> the network's input; padded frames stay zero."""
        m = mask[:, :, None, None, None].to(data.dtype)
        if not self.config.subtract_mean:
            return (data - 0.5) / 0.25 * m
        frames = m.sum(1, keepdim=True).clamp_min(1)
        residual = (data - (data * m).sum(1, keepdim=True) / frames) * m
        scale = (residual.pow(2).sum((1, 2, 3, 4), keepdim=True) / (frames * data[0, 0].numel())).sqrt()
        return residual / scale.clamp_min(1e-3)
