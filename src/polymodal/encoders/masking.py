"""Masking of time spans and feature bands in training (SpecAugment, Park et al. 2019): a temporal augmentation for
audio features, signals and video that encoders apply to their normalised input while they train. A masked value
becomes 0, the input's mean after normalisation. Draws come from torch's random stream, as dropout's do."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from .base import EncoderConfig


class TimeMaskConfig(EncoderConfig):
    time_masks: int = Field(0, ge=0, description="Training only: this many spans of time steps per clip are set to "
                            "the input's mean (SpecAugment's time masking; temporal augmentation for signals and "
                            "video). 0: off.")
    time_mask_width: float = Field(0.05, gt=0, le=1, description="The longest span, as a fraction of the clip's "
                                   "length (each span's width is drawn from 0 up to it).")


def span_mask(lengths: Tensor, size: int, count: int, width: Tensor) -> Tensor:
    """[U, size] True inside `count` random spans per row; row u's spans have widths drawn in [0, width[u]] and lie
    within its first lengths[u] positions."""
    u = lengths.shape[0]
    draw = torch.rand(u, count, 2, device=lengths.device)
    widths = (draw[..., 0] * (width[:, None].float() + 1)).floor().clamp(max=lengths[:, None].float())
    starts = (draw[..., 1] * (lengths[:, None].float() - widths + 1)).floor()
    pos = torch.arange(size, device=lengths.device, dtype=torch.float32)[None, None]
    inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
    return inside.any(1)


def mask_time(x: Tensor, mask: Tensor | None, count: int, width: float) -> Tensor:
    """x [U, T, ...] with `count` spans of up to `width` x each clip's length (its valid steps under `mask`)
    set to 0."""
    if count <= 0:
        return x
    u, t = x.shape[:2]
    lengths = mask.sum(1) if mask is not None else torch.full((u,), t, device=x.device)
    hidden = span_mask(lengths, t, count, (lengths.float() * width).floor())
    return x.masked_fill(hidden.view(u, t, *([1] * (x.dim() - 2))), 0.0)


def mask_features(x: Tensor, count: int, width: int) -> Tensor:
    """x [U, T, F] with `count` bands of up to `width` features (the same band at every step of a clip) set to 0."""
    if count <= 0 or width <= 0:
        return x
    u, _, f = x.shape
    hidden = span_mask(torch.full((u,), f, device=x.device), f, count, torch.full((u,), width, device=x.device))
    return x.masked_fill(hidden[:, None, :], 0.0)
