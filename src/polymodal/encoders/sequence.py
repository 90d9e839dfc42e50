"""A 1-D convolutional encoder over time for audio features, raw waveforms and signals."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from .base import ENCODERS, Encoder, masked_mean
from .masking import TimeMaskConfig, mask_features, mask_time


class Conv1dConfig(TimeMaskConfig):
    channels: list[int] = Field([64, 128, 128], min_length=1, description="Channels of each block; each block halves "
                                "the time resolution.")
    kernel: int = Field(5, ge=1, description="Kernel size over time.")
    dropout: float = Field(0.1, ge=0, lt=1)
    gru: bool = Field(False, description="A bidirectional GRU over the conv blocks' steps: each token sees the whole "
                      "clip (the order of a gesture's strokes), not only the blocks' receptive field.")
    feature_masks: int = Field(0, ge=0, description="Training only: this many bands of features (log-mel bins, signal "
                               "channels) per clip are set to the mean (SpecAugment's frequency masking). 0: off.")
    feature_mask_width: int = Field(8, ge=1, description="The widest band, in features.")


@ENCODERS.register("conv1d")
class Conv1dEncoder(Encoder):
    Config = Conv1dConfig
    config: Conv1dConfig

    def __init__(self, config: Conv1dConfig, modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        info = modality.describe()
        in_ch = info["features"]
        self.front = None
        if info.get("waveform"):  # ~25 ms windows, 10 ms hop at the modality's rate, learnt like a filterbank
            sr = info["sample_rate"]
            self.front = nn.Sequential(nn.Conv1d(1, 64, sr // 40, stride=sr // 100), nn.GELU())
            self.front_stride, self.front_kernel = sr // 100, sr // 40
            in_ch = 64
        blocks = []
        for out in config.channels:
            blocks.append(nn.Sequential(nn.Conv1d(in_ch, out, config.kernel, padding=config.kernel // 2, bias=False),
                                        nn.BatchNorm1d(out), nn.ReLU(inplace=True)))
            in_ch = out
        self.blocks = nn.ModuleList(blocks)
        self.gru = nn.GRU(in_ch, in_ch // 2, batch_first=True, bidirectional=True) if config.gru else None
        self.proj = nn.Linear(2 * (in_ch // 2) if config.gru else in_ch, dim)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if self.training:
            data = mask_features(mask_time(data, mask, self.config.time_masks, self.config.time_mask_width),
                                 self.config.feature_masks, self.config.feature_mask_width)
        x = data.transpose(1, 2)  # [U, F, T]
        if mask is None:
            mask = torch.ones(data.shape[:2], dtype=torch.bool, device=data.device)
        if self.front is not None:
            if x.shape[-1] < self.front_kernel:
                x = F.pad(x, (0, self.front_kernel - x.shape[-1]))
                mask = F.pad(mask, (0, self.front_kernel - mask.shape[-1]))
            x = self.front(x)
            m = F.max_pool1d(mask[:, None].float(), self.front_kernel, self.front_stride)[:, 0]
            mask = m[:, : x.shape[-1]] > 0
        for block in self.blocks:
            x = block(x) * mask[:, None]
            x = F.max_pool1d(x, 2, ceil_mode=True)
            mask = F.max_pool1d(mask[:, None].float(), 2, ceil_mode=True)[:, 0] > 0
        x = x.transpose(1, 2)  # [U, T', C]
        if self.gru is not None:
            lengths = mask.sum(1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            x = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        tokens = self.proj(self.drop(x))
        return tokens, mask, masked_mean(tokens, mask)
