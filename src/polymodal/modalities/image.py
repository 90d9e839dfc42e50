"""Images: a path, bytes, a PIL image or an array; converted to RGB or greyscale and resized to a fixed size."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import Field
from torch import Tensor

from ..errors import BadInput
from .base import MODALITIES, Modality, ModalityConfig, resolve


class ImageConfig(ModalityConfig):
    size: int | tuple[int, int] = Field(64, description="Output size: one side for a square, or [height, width].")
    channels: Literal[1, 3] = Field(3, description="3 converts every image to RGB, 1 to greyscale.")
    resize: Literal["stretch", "pad", "crop"] = Field(
        "stretch", description="stretch to the size; pad to keep the aspect ratio; centre-crop to keep it.")


def to_pil(value: Any, base_dir: Path) -> Image.Image:
    """Open an image from a path, bytes, PIL image or array; BadInput says why it cannot."""
    try:
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, (bytes, bytearray)):
            img = Image.open(io.BytesIO(value))
        elif isinstance(value, (str, Path)):
            path = resolve(value, base_dir)
            if not path.is_file():
                raise BadInput(f"image file not found: {path}")
            img = Image.open(path)
        elif isinstance(value, (np.ndarray, list)):
            arr = np.asarray(value)
            if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
                arr = arr.transpose(1, 2, 0)
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if arr.dtype != np.uint8:
                arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr)
        else:
            raise BadInput(f"expected an image path, bytes or array, got {type(value).__name__}")
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, TypeError) as e:
        raise BadInput(f"cannot read image: {e}") from None


def fit_size(img: Image.Image, size: tuple[int, int], policy: str) -> Image.Image:
    h, w = size
    if policy == "stretch":
        return img.resize((w, h), Image.BILINEAR)
    scale = (min if policy == "pad" else max)(w / img.width, h / img.height)
    nw, nh = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    img = img.resize((nw, nh), Image.BILINEAR)
    if policy == "crop":
        left, top = (nw - w) // 2, (nh - h) // 2
        return img.crop((left, top, left + w, top + h))
    canvas = Image.new(img.mode, (w, h))
    canvas.paste(img, ((w - nw) // 2, (h - nh) // 2))
    return canvas


@MODALITIES.register("image")
class ImageModality(Modality):
    Config = ImageConfig
    default_encoder = "image_cnn"
    config: ImageConfig

    @property
    def hw(self) -> tuple[int, int]:
        s = self.config.size
        return (s, s) if isinstance(s, int) else tuple(s)

    def decode(self, value: Any, base_dir: Path) -> Tensor:
        img = to_pil(value, base_dir).convert("RGB" if self.config.channels == 3 else "L")
        img = fit_size(img, self.hw, self.config.resize)
        arr = np.asarray(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()  # uint8 [C, H, W]

    def placeholder(self) -> Tensor:
        return torch.zeros(self.config.channels, *self.hw, dtype=torch.uint8)

    def collate(self, items: list[Tensor]) -> tuple[Tensor, None]:
        return torch.stack(items).float().div_(255.0), None

    def describe(self) -> dict:
        return {"channels": self.config.channels, "size": self.hw}
