"""Images: a path, bytes, a PIL image or an array; converted to RGB or greyscale and resized to a fixed size."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageFilter, UnidentifiedImageError
from pydantic import Field
from torch import Tensor

from .. import render
from ..errors import BadInput
from .base import MODALITIES, Drawn, Modality, ModalityConfig, resolve
from .corruptions import corruption, to_u8


class ImageConfig(ModalityConfig):
    size: int | tuple[int, int] = Field(64, description="Output size: one side for a square, or [height, width].")
    channels: Literal[1, 3] = Field(3, description="3 converts every image to RGB, 1 to greyscale.")
    resize: Literal["stretch", "pad", "crop"] = Field(
        "stretch", description="stretch to the size; pad to keep the aspect ratio; centre-crop to keep it.")


NPY_MAGIC = b"\x93NUMPY"
_PIXELS_HEADER = re.compile(rb"\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d+), (\d+), (\d+)\), \}")


def read_pixels(data: bytes) -> np.ndarray:
    """An .npy file's array; uint8 [H, W, C] pixels (what `polymodal shard --image-size` stores) without parsing the
    header as Python (numpy's reader runs ast.literal_eval: most of the time for a small image)."""
    if len(data) > 10 and data[6] == 1:
        length = int.from_bytes(data[8:10], "little")
        m = _PIXELS_HEADER.match(data, 10)
        if m and m.end() <= 10 + length:
            h, w, c = (int(g) for g in m.groups())
            if len(data) == 10 + length + h * w * c:
                return np.frombuffer(data, np.uint8, h * w * c, 10 + length).reshape(h, w, c)
    return np.load(io.BytesIO(data), allow_pickle=False)


PHOTO_SIDE = 128  # the median shorter side, in pixels, from which colour images are taken for photos


def image_facts(value: Any, base_dir: Path) -> tuple[int, int, bool] | None:
    """(height, width, in colour) of one image, from its file's header (no pixels decoded) or its array's shape;
    None when it cannot be read (reading it for training will say why)."""
    grey = ("1", "L", "LA", "I", "I;16", "F")
    try:
        if isinstance(value, Image.Image):
            return value.height, value.width, value.mode not in grey
        if isinstance(value, (np.ndarray, list)):
            arr = np.asarray(value)
            if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
                arr = arr.transpose(1, 2, 0)
            return int(arr.shape[0]), int(arr.shape[1]), arr.ndim == 3 and arr.shape[-1] >= 3
        if isinstance(value, (bytes, bytearray)) and value[:6] == NPY_MAGIC:
            arr = read_pixels(value)
            return int(arr.shape[0]), int(arr.shape[1]), arr.shape[-1] >= 3
        if isinstance(value, (str, Path)):
            value = resolve(value, base_dir)
        with Image.open(io.BytesIO(value) if isinstance(value, (bytes, bytearray)) else value) as img:
            return img.height, img.width, img.mode not in grey
    except (OSError, ValueError, TypeError, AttributeError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def looks_like_photos(values: list[Any], base_dir: Path, sample: int = 32) -> bool:
    """Whether a column's images are photos (what ImageNet backbones were trained on): most of the first `sample`
    readable ones in colour, and their median shorter side at least PHOTO_SIDE pixels. Small or greyscale images
    (digits, rendered shapes, sensor plots) are not."""
    facts = [f for f in (image_facts(v, base_dir) for v in values[:sample]) if f is not None]
    if not facts:
        return False
    sides = sorted(min(h, w) for h, w, _ in facts)
    return 2 * sum(colour for _, _, colour in facts) > len(facts) and sides[len(sides) // 2] >= PHOTO_SIDE


def to_pil(value: Any, base_dir: Path) -> Image.Image:
    """Open an image from a path, bytes, PIL image or array; BadInput says why it cannot."""
    try:
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, (bytes, bytearray)) and value[:6] == NPY_MAGIC:  # pixels kept decoded (shards)
            value = read_pixels(value)
        if isinstance(value, (bytes, bytearray)):
            try:
                img = Image.open(io.BytesIO(value))
            except UnidentifiedImageError:
                raise BadInput(f"cannot read image bytes: not an image format PIL knows ({len(value)} bytes)") \
                    from None
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
    except Image.DecompressionBombError as e:
        raise BadInput(f"image too large: {e}") from None
    except (UnidentifiedImageError, OSError, ValueError, TypeError) as e:
        raise BadInput(f"cannot read image: {e}") from None


def fit_size(img: Image.Image, size: tuple[int, int], policy: str) -> Image.Image:
    h, w = size
    if img.size == (w, h):  # every policy leaves an image of the size as it is
        return img
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
    suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
    groupable = True
    config: ImageConfig

    @property
    def hw(self) -> tuple[int, int]:
        s = self.config.size
        return (s, s) if isinstance(s, int) else tuple(s)

    def decode(self, value: Any, base_dir: Path) -> Tensor:
        if isinstance(value, (bytes, bytearray)) and value[:6] == NPY_MAGIC and self.config.channels == 3:
            arr = read_pixels(value)
            if arr.dtype == np.uint8 and arr.shape == (*self.hw, 3):  # RGB pixels of the size: nothing to convert
                return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
            value = arr
        img = to_pil(value, base_dir)
        mode = "RGB" if self.config.channels == 3 else "L"
        if img.mode != mode:
            img = img.convert(mode)
        img = fit_size(img, self.hw, self.config.resize)
        arr = np.asarray(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()  # uint8 [C, H, W]

    def placeholder(self) -> Tensor:
        return torch.zeros(self.config.channels, *self.hw, dtype=torch.uint8)

    def collate(self, items: list[Tensor]) -> tuple[Tensor, None]:
        return torch.stack(items).float().div_(255.0), None

    def attribution_baseline(self, x: Tensor) -> Tensor:
        """Each channel's mean over the image."""
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()

    def draw_attribution(self, name: str, value: Tensor, attr: Tensor, mask: Tensor | None, out: Path) -> Drawn:
        return Drawn(figure=render.image_figure(value, attr, out / f"attr_{name}.png", f"{name}: |IG|"))

    def describe(self) -> dict:
        return {"channels": self.config.channels, "size": self.hw}


# -- corruptions -----------------------------------------------------------------------------------
@corruption(ImageModality, "gaussian_noise")
def image_gaussian_noise(img: Tensor, s: float, rng) -> Tensor:
    """Additive Gaussian noise, sigma up to 0.5 of the range."""
    return to_u8(img.numpy().astype(np.float32) + rng.normal(0, 127.5 * s, img.shape))


@corruption(ImageModality, "salt_pepper")
def image_salt_pepper(img: Tensor, s: float, rng) -> Tensor:
    """A fraction (up to 0.5) of pixels set to black or white."""
    out = img.numpy().copy()
    hit = rng.random(out.shape[1:]) < 0.5 * s
    out[:, hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)
    return torch.from_numpy(out)


@corruption(ImageModality, "low_contrast")
def image_low_contrast(img: Tensor, s: float, rng) -> Tensor:
    """Blend towards the mean grey level (a flat image at 1)."""
    x = img.numpy().astype(np.float32)
    return to_u8(x.mean() + (x - x.mean()) * (1 - s))


@corruption(ImageModality, "blur")
def image_blur(img: Tensor, s: float, rng) -> Tensor:
    """Gaussian blur, radius up to a quarter of the image side."""
    arr = img.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    out = np.asarray(pil.filter(ImageFilter.GaussianBlur(s * max(arr.shape[:2]) / 4)))
    return torch.from_numpy((out[..., None] if out.ndim == 2 else out).copy()).permute(2, 0, 1).contiguous()


@corruption(ImageModality, "occlusion")
def image_occlusion(img: Tensor, s: float, rng) -> Tensor:
    """A grey square covering a fraction `s` of the area, at a random place."""
    out = img.clone()
    h, w = out.shape[1:]
    side_h, side_w = max(1, round(h * s ** 0.5)), max(1, round(w * s ** 0.5))
    y, x = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
    out[:, y:y + side_h, x:x + side_w] = 128
    return out


@corruption(ImageModality, "rotation")
def image_rotation(img: Tensor, s: float, rng) -> Tensor:
    """Rotation by up to 180 degrees (random direction)."""
    arr = img.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    out = np.asarray(pil.rotate(180 * s * rng.choice([-1, 1]), resample=Image.BILINEAR))
    return torch.from_numpy((out[..., None] if out.ndim == 2 else out).copy()).permute(2, 0, 1).contiguous()


@corruption(ImageModality, "greyscale")
def image_greyscale(img: Tensor, s: float, rng) -> Tensor:
    """Blend towards the image's luminance (colour removed at 1)."""
    x = img.numpy().astype(np.float32)
    if x.shape[0] == 1:
        return img.clone()
    grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
    return to_u8(x * (1 - s) + grey * s)
