"""Corruptions per modality, with a severity in [0, 1]: 0 is the identity, 1 the strongest. Each acts on the
decoded value (image tensor, waveform, string, frames, signal), is seeded by the caller's generator, and can be used
for data augmentation as well as robustness curves. Levels follow MultiBench's protocol of ten severities."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import Tensor

Corruption = Callable[[object, float, np.random.Generator], object]
CORRUPTIONS: dict[str, dict[str, Corruption]] = {"image": {}, "audio": {}, "text": {}, "video": {}, "signal": {}}


def corruption(modality: str, name: str):
    def deco(fn: Corruption) -> Corruption:
        def wrapped(raw, severity: float, rng: np.random.Generator):
            if not 0 <= severity <= 1:
                raise ValueError(f"severity must be in [0, 1], got {severity}")
            return raw if severity == 0 else fn(raw, severity, rng)

        wrapped.__name__ = wrapped.__qualname__ = name
        wrapped.__doc__ = fn.__doc__
        CORRUPTIONS[modality][name] = wrapped
        return wrapped

    return deco


def corrupt(modality: str, name: str, raw, severity: float, seed: int = 0):
    """Apply one named corruption (for augmentation from Python)."""
    if name not in CORRUPTIONS.get(modality, {}):
        raise KeyError(f"no corruption '{name}' for {modality} (have: {', '.join(CORRUPTIONS.get(modality, {}))})")
    return CORRUPTIONS[modality][name](raw, severity, np.random.default_rng(seed))


# -- images: uint8 [C, H, W] -----------------------------------------------------------------------------------------
def _u8(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.clip(np.rint(x), 0, 255).astype(np.uint8))


@corruption("image", "gaussian_noise")
def image_gaussian_noise(img: Tensor, s: float, rng) -> Tensor:
    """Additive Gaussian noise, sigma up to 0.5 of the range."""
    return _u8(img.numpy().astype(np.float32) + rng.normal(0, 127.5 * s, img.shape))


@corruption("image", "salt_pepper")
def image_salt_pepper(img: Tensor, s: float, rng) -> Tensor:
    """A fraction (up to 0.5) of pixels set to black or white."""
    out = img.numpy().copy()
    hit = rng.random(out.shape[1:]) < 0.5 * s
    out[:, hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)
    return torch.from_numpy(out)


@corruption("image", "low_contrast")
def image_low_contrast(img: Tensor, s: float, rng) -> Tensor:
    """Blend towards the mean grey level (a flat image at 1)."""
    x = img.numpy().astype(np.float32)
    return _u8(x.mean() + (x - x.mean()) * (1 - s))


@corruption("image", "blur")
def image_blur(img: Tensor, s: float, rng) -> Tensor:
    """Gaussian blur, radius up to a quarter of the image side."""
    arr = img.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    out = np.asarray(pil.filter(ImageFilter.GaussianBlur(s * max(arr.shape[:2]) / 4)))
    return torch.from_numpy((out[..., None] if out.ndim == 2 else out).copy()).permute(2, 0, 1).contiguous()


@corruption("image", "occlusion")
def image_occlusion(img: Tensor, s: float, rng) -> Tensor:
    """A grey square covering a fraction `s` of the area, at a random place."""
    out = img.clone()
    h, w = out.shape[1:]
    side_h, side_w = max(1, round(h * s ** 0.5)), max(1, round(w * s ** 0.5))
    y, x = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
    out[:, y:y + side_h, x:x + side_w] = 128
    return out


@corruption("image", "rotation")
def image_rotation(img: Tensor, s: float, rng) -> Tensor:
    """Rotation by up to 180 degrees (random direction)."""
    arr = img.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    out = np.asarray(pil.rotate(180 * s * rng.choice([-1, 1]), resample=Image.BILINEAR))
    return torch.from_numpy((out[..., None] if out.ndim == 2 else out).copy()).permute(2, 0, 1).contiguous()


@corruption("image", "greyscale")
def image_greyscale(img: Tensor, s: float, rng) -> Tensor:
    """Blend towards the image's luminance (colour removed at 1)."""
    x = img.numpy().astype(np.float32)
    if x.shape[0] == 1:
        return img.clone()
    grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
    return _u8(x * (1 - s) + grey * s)


# -- audio: float32 waveform [T] -------------------------------------------------------------------------------------
@corruption("audio", "white_noise")
def audio_white_noise(wave: np.ndarray, s: float, rng) -> np.ndarray:
    """White noise at an SNR from 30 dB (s -> 0) down to -10 dB (s = 1)."""
    snr_db = 30 - 40 * s
    power = float(np.mean(wave ** 2)) or 1e-8
    return (wave + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), wave.shape)).astype(np.float32)


def _chunks(n: int, size: int) -> int:
    return max(1, -(-n // size))


@corruption("audio", "random_dropout")
def audio_random_dropout(wave: np.ndarray, s: float, rng) -> np.ndarray:
    """A fraction `s` of 20 ms chunks (at 16 kHz; 320 samples) silenced at random."""
    out, size = wave.copy(), 320
    for c in np.flatnonzero(rng.random(_chunks(out.size, size)) < s):
        out[c * size:(c + 1) * size] = 0
    return out


@corruption("audio", "structured_dropout")
def audio_structured_dropout(wave: np.ndarray, s: float, rng) -> np.ndarray:
    """One contiguous stretch of a fraction `s` of the clip silenced."""
    return _drop_span(wave, s, rng)


def _zero_steps(x: Tensor, s: float, rng) -> Tensor:
    """Each step (frame, time step) along the first axis zeroed with probability s."""
    out = x.clone()
    out[torch.from_numpy(rng.random(x.shape[0]) < s)] = 0
    return out


def _drop_span(x, s: float, rng):
    out = x.copy() if isinstance(x, np.ndarray) else x.clone()
    n = out.shape[0]
    span = int(round(n * s))
    start = int(rng.integers(0, n - span + 1))
    out[start:start + span] = 0
    return out


# -- text: str -------------------------------------------------------------------------------------------------------
QWERTY = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
_POS = {ch: (r, c) for r, row in enumerate(QWERTY) for c, ch in enumerate(row)}


def _neighbours(ch: str) -> str:
    if ch.lower() not in _POS:
        return ch
    r, c = _POS[ch.lower()]
    near = [QWERTY[rr][cc] for rr in (r - 1, r, r + 1) for cc in (c - 1, c, c + 1)
            if 0 <= rr < 3 and 0 <= cc < len(QWERTY[rr]) and (rr, cc) != (r, c)]
    return "".join(near)


def _per_word(text: str, s: float, rng, edit) -> str:
    words = text.split(" ")
    return " ".join(edit(w) if len(w) > 1 and rng.random() < s else w for w in words)


@corruption("text", "swap")
def text_swap(text: str, s: float, rng) -> str:
    """In a fraction `s` of words, two adjacent characters swapped."""
    def edit(w):
        i = int(rng.integers(0, len(w) - 1))
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]
    return _per_word(text, s, rng, edit)


@corruption("text", "typo")
def text_typo(text: str, s: float, rng) -> str:
    """In a fraction `s` of words, one character replaced by a QWERTY neighbour."""
    def edit(w):
        i = int(rng.integers(0, len(w)))
        near = _neighbours(w[i])
        return w[:i] + near[int(rng.integers(0, len(near)))] + w[i + 1:] if near != w[i] else w
    return _per_word(text, s, rng, edit)


@corruption("text", "omission")
def text_omission(text: str, s: float, rng) -> str:
    """In a fraction `s` of words, one character deleted."""
    def edit(w):
        i = int(rng.integers(0, len(w)))
        return w[:i] + w[i + 1:]
    return _per_word(text, s, rng, edit)


@corruption("text", "word_dropout")
def text_word_dropout(text: str, s: float, rng) -> str:
    """A fraction `s` of words removed."""
    return " ".join(w for w in text.split(" ") if rng.random() >= s)


# -- video: uint8 [N, C, H, W] ---------------------------------------------------------------------------------------
@corruption("video", "frame_drop")
def video_frame_drop(frames: Tensor, s: float, rng) -> Tensor:
    """A fraction `s` of frames replaced by black frames."""
    return _zero_steps(frames, s, rng)


@corruption("video", "frame_noise")
def video_frame_noise(frames: Tensor, s: float, rng) -> Tensor:
    """Gaussian noise on every frame, as for images."""
    return torch.stack([image_gaussian_noise(f, s, rng) for f in frames])


@corruption("video", "temporal_jitter")
def video_temporal_jitter(frames: Tensor, s: float, rng) -> Tensor:
    """Each frame replaced by one up to s * N frames away."""
    n = frames.shape[0]
    shift = rng.integers(-int(np.ceil(s * n)), int(np.ceil(s * n)) + 1, n)
    return frames[np.clip(np.arange(n) + shift, 0, n - 1)].clone()


# -- signal: float [T, F] --------------------------------------------------------------------------------------------
@corruption("signal", "white_noise")
def signal_white_noise(x: Tensor, s: float, rng) -> Tensor:
    """Gaussian noise with a standard deviation of up to 2x each feature's own."""
    std = x.std(0, keepdim=True).clamp_min(1e-6).numpy() if x.shape[0] > 1 else np.ones((1, x.shape[1]))
    return x + torch.from_numpy(rng.normal(0, 2 * s, x.shape) * std).float()


@corruption("signal", "random_drop")
def signal_random_drop(x: Tensor, s: float, rng) -> Tensor:
    """A fraction `s` of time steps zeroed."""
    return _zero_steps(x, s, rng)


@corruption("signal", "structured_drop")
def signal_structured_drop(x: Tensor, s: float, rng) -> Tensor:
    """One contiguous stretch of a fraction `s` of the steps zeroed."""
    return _drop_span(x, s, rng)
