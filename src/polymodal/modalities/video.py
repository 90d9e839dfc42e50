"""Video: mp4/webm/avi/mkv via PyAV (or a .npy array of frames); N frames sampled uniformly, each resized."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from .. import render
from ..errors import BadInput
from .base import MODALITIES, Drawn, Modality, ModalityConfig, resolve
from .corruptions import corruption, zero_steps
from .image import fit_size, image_gaussian_noise


class VideoConfig(ModalityConfig):
    frames: Literal["uniform", "all", "depth_motion_maps"] = Field(
        "uniform", description="uniform: n_frames spread over the clip (its gist); all: every frame up to "
        "max_frames (evenly thinned beyond), padded and masked per batch (motion: lips, gestures); "
        "depth_motion_maps: a depth video (brightness is distance) summarised as one 3-channel frame, how much "
        "each place moved over the whole clip seen from the front, the side and the top (each map cropped to "
        "where anything moved, then resized; Chen et al.'s DMMs): a still image that an image network reads.")
    depth_bins: int = Field(64, ge=4, le=256, description="With depth_motion_maps: distance levels of the side and "
                            "top views.")
    motion_threshold: int = Field(10, ge=0, le=255, description="With depth_motion_maps: a front-view change of at "
                                  "most this much (of 255) between frames counts as sensor noise, not motion.")
    n_frames: int = Field(8, ge=1, description="With frames: uniform, the frames sampled over the clip.")
    max_frames: int = Field(75, ge=1, description="With frames: all, the most frames kept per clip.")
    size: int | tuple[int, int] = Field(64, description="Each frame's size: one side for a square, or [height, "
                                       "width] (a mouth crop is wider than it is high).")
    channels: Literal[1, 3] = Field(3, description="3 for RGB frames, 1 for greyscale.")
    resize: Literal["stretch", "pad", "crop"] = Field("stretch", description="As for images.")
    max_decode_frames: int = Field(10_000, ge=1, description="A clip with more frames than this is refused "
                                   "(a bad input) rather than decoded whole.")

    @field_validator("size")
    @classmethod
    def _sides(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        if min((v, v) if isinstance(v, int) else v) < 8:
            raise ValueError(f"each side must be at least 8 pixels, got {v}")
        return v

    @model_validator(mode="after")
    def _maps_are_three_channels(self) -> "VideoConfig":
        if self.frames == "depth_motion_maps" and self.channels != 3:
            raise ValueError("frames: depth_motion_maps makes 3 channels (front, side, top): channels must be 3")
        return self

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)


def depth_motion_maps(depth: np.ndarray, hw: tuple[int, int], bins: int = 64, threshold: int = 10) -> np.ndarray:
    """[T, H, W] uint8 depth frames (0: no reading) -> [3, h, w] uint8: the summed frame-to-frame change seen from the
    front (the frames themselves), the side (height x distance) and the top (distance x width), each cropped to its
    moving part, scaled to its own maximum and resized to `hw`."""
    out = []
    for m in motion_energy(depth, bins, threshold):
        moved = np.argwhere(m > 0)
        if len(moved):
            (y0, x0), (y1, x1) = moved.min(0), moved.max(0) + 1
            m = m[y0:y1, x0:x1]
        m = m / m.max() if m.max() > 0 else m
        img = Image.fromarray((m * 255).round().astype(np.uint8)).resize((hw[1], hw[0]), Image.BILINEAR)
        out.append(np.asarray(img, dtype=np.uint8))
    return np.stack(out)


def motion_energy(depth: np.ndarray, bins: int, threshold: int) -> list[np.ndarray]:
    """The three uncropped maps of `depth_motion_maps`: front [H, W], side [H, bins], top [bins, W]."""
    d = depth.astype(np.int16)
    t, h, w = d.shape
    front = np.abs(np.diff(d, axis=0))
    front = np.where(front > threshold, front, 0).sum(0).astype(np.float32) if t > 1 else np.zeros((h, w), np.float32)
    side = np.zeros((t, h, bins), np.float32)
    top = np.zeros((t, bins, w), np.float32)
    ts, ys, xs = np.nonzero(d)
    level = d[ts, ys, xs] * bins // 256
    side[ts, ys, level] = 1
    top[ts, bins - 1 - level, xs] = 1  # near (bright) at the bottom, as seen from above the camera
    return [front, np.abs(np.diff(side, axis=0)).sum(0), np.abs(np.diff(top, axis=0)).sum(0)]


def uniform_indices(total: int, n: int) -> np.ndarray:
    """n frame indices spread evenly over total frames (repeating frames when the clip is shorter)."""
    return np.minimum(((np.arange(n) + 0.5) * total / n).astype(int), total - 1)


@MODALITIES.register("video")
class VideoModality(Modality):
    Config = VideoConfig
    default_encoder = "video_cnn"
    suffixes = (".mp4", ".webm", ".avi", ".mkv", ".mov")
    groupable = True
    config: VideoConfig

    def _frame(self, img: Image.Image) -> np.ndarray:
        grey = self.config.channels == 1 or self.config.frames == "depth_motion_maps"
        img = fit_size(img.convert("L" if grey else "RGB"), self.config.hw, self.config.resize)
        arr = np.asarray(img, dtype=np.uint8)
        return arr[:, :, None] if arr.ndim == 2 else arr

    def decode(self, value: Any, base_dir: Path) -> Tensor:
        if isinstance(value, (str, Path)):
            path = resolve(value, base_dir)
            if not path.is_file():
                raise BadInput(f"video file not found: {path}")
            frames = self._read_npy(np.load(path, allow_pickle=False)) if path.suffix == ".npy" else self._decode(path)
        elif isinstance(value, (bytes, bytearray)):
            frames = self._decode(io.BytesIO(value), "video bytes")
        elif isinstance(value, (np.ndarray, list)):
            frames = self._read_npy(np.asarray(value))
        else:
            raise BadInput(f"expected a video path, bytes or an array of frames, got {type(value).__name__}")
        if not frames:
            raise BadInput("video has no frames")
        if self.config.frames == "depth_motion_maps":
            c = self.config
            maps = depth_motion_maps(np.stack(frames)[..., 0], c.hw, c.depth_bins, c.motion_threshold)
            return torch.from_numpy(maps[None]).contiguous()  # uint8 [1, 3, H, W]: one still frame
        if self.config.frames == "all":
            picked = frames if len(frames) <= self.config.max_frames else \
                [frames[i] for i in uniform_indices(len(frames), self.config.max_frames)]
        else:
            picked = [frames[i] for i in uniform_indices(len(frames), self.config.n_frames)]
        return torch.from_numpy(np.stack(picked)).permute(0, 3, 1, 2).contiguous()  # uint8 [N, C, H, W]

    def _read_npy(self, arr: np.ndarray) -> list[np.ndarray]:
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4:
            raise BadInput(f"a video array must be [frames, H, W(, C)], got shape {arr.shape}")
        if len(arr) > self.config.max_decode_frames:
            raise BadInput(f"a video array of {len(arr)} frames, over max_decode_frames "
                           f"{self.config.max_decode_frames}")
        if arr.size == 0:
            raise BadInput(f"a video array with no pixels: shape {arr.shape}")
        if arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(0, 2, 3, 1)
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return [self._frame(Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f)) for f in arr]

    def _decode(self, source: Path | io.BytesIO, what: str | None = None) -> list[np.ndarray]:
        import av

        what = what or f"video file {source}"
        try:
            with av.open(source if isinstance(source, io.BytesIO) else str(source)) as container:
                if not container.streams.video:
                    raise BadInput(f"no video stream in {what}")
                cap = self.config.max_decode_frames
                if container.streams.video[0].frames > cap:
                    raise BadInput(f"{what} has {container.streams.video[0].frames} frames, over max_decode_frames "
                                   f"{cap}")
                frames = []
                for f in container.decode(video=0):
                    if len(frames) == cap:
                        raise BadInput(f"{what} has over {cap} frames (max_decode_frames)")
                    frames.append(self._frame(f.to_image()))
                return frames
        except BadInput:
            raise
        except Exception as e:  # noqa: BLE001 - PyAV raises many error types
            raise BadInput(f"cannot decode {what}: {e}") from None

    def placeholder(self) -> Tensor:
        c = self.config
        n = c.n_frames if c.frames == "uniform" else 1
        return torch.zeros(n, c.channels, *c.hw, dtype=torch.uint8)

    def collate(self, items: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """[U, T, C, H, W] in [0, 1]; with frames: all, padded to the batch's longest clip, and the frame mask."""
        if self.config.frames != "all":  # uniform frames, or one frame of depth motion maps
            return torch.stack(items).float().div_(255.0), None
        longest = max(len(v) for v in items)
        data = torch.zeros(len(items), longest, *items[0].shape[1:])
        mask = torch.zeros(len(items), longest, dtype=torch.bool)
        for i, v in enumerate(items):
            data[i, :len(v)] = v.float().div_(255.0)
            mask[i, :len(v)] = True
        return data, mask

    def attribution_baseline(self, x: Tensor) -> Tensor:
        """Each channel's mean over the frames and the image."""
        return x.mean(dim=(1, 3, 4), keepdim=True).expand_as(x).contiguous()

    def draw_attribution(self, name: str, value: Tensor, attr: Tensor, mask: Tensor | None, out: Path) -> Drawn:
        return Drawn(figure=render.video_figure(value, attr, out / f"attr_{name}.png", f"{name}: per-frame |IG|"))

    def describe(self) -> dict:
        c = self.config
        return {"channels": c.channels, "size": c.hw,
                "n_frames": {"all": c.max_frames, "uniform": c.n_frames}.get(c.frames, 1)}


# -- corruptions -----------------------------------------------------------------------------------
@corruption(VideoModality, "frame_drop")
def video_frame_drop(frames: Tensor, s: float, rng) -> Tensor:
    """A fraction `s` of frames replaced by black frames."""
    return zero_steps(frames, s, rng)


@corruption(VideoModality, "frame_noise")
def video_frame_noise(frames: Tensor, s: float, rng) -> Tensor:
    """Gaussian noise on every frame, as for images."""
    return torch.stack([image_gaussian_noise(f, s, rng) for f in frames])


@corruption(VideoModality, "temporal_jitter")
def video_temporal_jitter(frames: Tensor, s: float, rng) -> Tensor:
    """Each frame replaced by one up to s * N frames away."""
    n = frames.shape[0]
    shift = rng.integers(-int(np.ceil(s * n)), int(np.ceil(s * n)) + 1, n)
    return frames[np.clip(np.arange(n) + shift, 0, n - 1)].clone()
