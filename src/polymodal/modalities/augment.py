"""Image augmentations for training batches, written with torch ops (they run where the batch is: CPU or GPU):
random resized crop, horizontal flip, brightness/contrast jitter, on images and on every frame of a video clip
alike. Unlike corruptions, they keep the meaning."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor


class ImageAugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crop: float = Field(1.0, gt=0, le=1, description="Smallest area kept by a random resized crop (1: no crop).")
    flip: bool = Field(False, description="Random horizontal flips.")
    jitter: float = Field(0.0, ge=0, le=1, description="Random brightness and contrast change, up to this fraction "
                          "(hue is left alone: colour words stay true).")

    def active(self) -> bool:
        return self.crop < 1 or self.flip or self.jitter > 0


def random_resized_crop(x: Tensor, min_area: float, generator: torch.Generator) -> Tensor:
    """Each image [N, C, H, W] cropped to a random box of area in [min_area, 1] (aspect ratio 3/4..4/3) and resized
    back to its size."""
    n = x.shape[0]
    rand = torch.rand(n, 4, generator=generator, device=x.device)
    area = min_area + (1 - min_area) * rand[:, 0]
    log_ratio = (rand[:, 1] * 2 - 1) * 0.2877  # log(4/3)
    ratio = log_ratio.exp()
    sx = (area * ratio).sqrt().clamp(max=1.0)
    sy = (area / ratio).sqrt().clamp(max=1.0)
    cx = (rand[:, 2] * 2 - 1) * (1 - sx)
    cy = (rand[:, 3] * 2 - 1) * (1 - sy)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def jitter(x: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Brightness and contrast scaled by factors in [1 - amount, 1 + amount]; values stay in [0, 1]."""
    n = x.shape[0]
    f = 1 + (torch.rand(n, 2, generator=generator, device=x.device) * 2 - 1) * amount
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[:, 0, None, None, None] + mean
    return (x * f[:, 1, None, None, None]).clamp(0, 1)


def augment_image_tensor(x: Tensor, config: Any, generator: torch.Generator) -> Tensor:
    if config.crop < 1:
        x = random_resized_crop(x, config.crop, generator)
    if config.flip:
        x = random_flip(x, generator)
    if config.jitter > 0:
        x = jitter(x, config.jitter, generator)
    return x


def augment_clips(x: Tensor, config: Any, generator: torch.Generator) -> Tensor:
    """Video clips [N, T, C, H, W]: each clip's frames cropped, flipped and jittered alike (one draw per clip), so
    the motion between frames is kept."""
    start = generator.get_state()
    frames = []
    for i in range(x.shape[1]):  # the same draws for every frame: the generator replayed from the same state
        generator.set_state(start)
        frames.append(augment_image_tensor(x[:, i], config, generator))
    return torch.stack(frames, 1)  # the generator stands after one clip-level draw, as for one image


def augment_images(inputs: dict, kinds: dict[str, str], config: Any, generator: torch.Generator,
                   skip: frozenset[str] | set[str] = frozenset()) -> dict:
    """Augment every image input of a batch, and every video input clip by clip, with the configured augmentations
    (inputs named in `skip` stay as they are)."""
    if not config.active():
        return inputs
    out = {}
    for n, b in inputs.items():
        if n in skip or kinds.get(n) not in ("image", "video"):
            out[n] = b
        elif kinds[n] == "image":
            out[n] = replace(b, data=augment_image_tensor(b.data, config, generator))
        else:
            out[n] = replace(b, data=augment_clips(b.data, config, generator))
    return out
