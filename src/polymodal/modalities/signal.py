"""Signals: T x F arrays (physiological sensors, precomputed features such as MFCC) from .npy, .csv or inline
lists; normalised per feature with statistics learnt from the training set."""
from __future__ import annotations

import csv
import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from .. import render
from ..errors import BadInput, PolymodalError
from .audio import pad_sequences
from .base import MODALITIES, Drawn, Modality, ModalityConfig, resolve
from .corruptions import corruption, drop_span, zero_steps


class SignalConfig(ModalityConfig):
    max_length: int = Field(2048, ge=1, description="Longer signals keep their first max_length steps.")
    normalize: bool = Field(True, description="Standardise each feature with training mean and std.")
    relative_to: list[int] | None = Field(None, min_length=1, description="Feature columns of a reference point "
                                          "(the x, y, z of a skeleton's hip joint) subtracted, at every step, from "
                                          "each block of that many features: positions relative to the body, not "
                                          "to where the person stood.")
    xyz: bool = Field(False, description="The features are consecutive (x, y, z) triples (an accelerometer's and a "
                      "gyroscope's axes, a skeleton's joints). Gives the signal the `rotation` corruption "
                      "(augmentation with `training.augment_with: [rotation]`): every triple of a value turned by one "
                      "random rotation, as if the sensor were worn, or the camera placed, at another angle.")
    max_rotation: float = Field(45.0, gt=0, le=180, description="With xyz: the `rotation` corruption's largest "
                                "turn about each axis, in degrees, at severity 1 (each axis's angle is drawn "
                                "uniformly up to severity x this).")
    deltas: bool = Field(False, description="Append each feature's change from the step before (velocities of a "
                         "skeleton's joints), after relative_to: twice the features, read by the encoder beside the "
                         "positions. With xyz the differences are triples too, turned with their positions.")


def load_array(value: Any, base_dir: Path) -> np.ndarray:
    if isinstance(value, (str, Path)):
        path = resolve(value, base_dir)
        if not path.is_file():
            raise BadInput(f"signal file not found: {path}")
        try:
            if path.suffix == ".npy":
                return np.load(path, allow_pickle=False)
            if path.suffix in (".csv", ".tsv", ".txt"):
                import pandas as pd

                frame = pd.read_csv(path, sep=None, engine="python", header="infer")
                if not all(isinstance(c, str) and not _is_number(c) for c in frame.columns):
                    frame = pd.read_csv(path, sep=None, engine="python", header=None)
                return frame.to_numpy(dtype=np.float32)
        except (ValueError, OSError, EOFError, csv.Error) as e:
            raise BadInput(f"cannot read signal file {path}: {e or type(e).__name__}") from None
        raise BadInput(f"unsupported signal file type '{path.suffix}' (use .npy or .csv): {path}")
    if isinstance(value, (bytes, bytearray)):  # the content of a .npy file
        try:
            return np.load(io.BytesIO(value), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise BadInput(f"cannot read signal bytes (expected a .npy file's content): {e}") from None
    try:
        return np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise BadInput(f"cannot read signal values: {e}") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


@MODALITIES.register("signal")
class SignalModality(Modality):
    Config = SignalConfig
    default_encoder = "conv1d"
    suffixes = (".npy", ".csv", ".tsv")
    list_values = True
    config: SignalConfig

    def __init__(self, config: SignalConfig) -> None:
        super().__init__(config)
        self.n_features: int | None = None
        self.mean: list[float] | None = None
        self.std: list[float] | None = None
        if not config.xyz:  # rotation means something only where the features are (x, y, z) triples
            self.corruptions = {k: v for k, v in type(self).corruptions.items() if k != "rotation"}
        elif config.max_rotation != MAX_ROTATION_DEGREES:
            self.corruptions = {**type(self).corruptions,
                                "rotation": functools.partial(signal_rotation, degrees=config.max_rotation)}

    def decode(self, value: Any, base_dir: Path) -> Tensor:
        arr = load_array(value, base_dir)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise BadInput(f"a signal must be a non-empty [T, F] array, got shape {tuple(arr.shape)}")
        if not np.isfinite(arr).all():
            raise BadInput("signal has NaN or infinite values")
        raw = None if self.n_features is None else self.n_features // (2 if self.config.deltas else 1)
        if raw is not None and arr.shape[1] != raw:
            raise BadInput(f"signal has {arr.shape[1]} features, the model expects {raw}")
        arr = arr[: self.config.max_length].astype(np.float32)
        ref = self.config.relative_to
        if ref is not None:
            if arr.shape[1] % len(ref) or max(ref) >= arr.shape[1]:
                raise BadInput(f"relative_to {ref}: the signal's {arr.shape[1]} features are not blocks of "
                               f"{len(ref)} holding those columns")
            arr = (arr.reshape(len(arr), -1, len(ref)) - arr[:, ref][:, None, :]).reshape(len(arr), -1)
        if self.config.deltas:
            arr = np.concatenate([arr, np.diff(arr, axis=0, prepend=arr[:1])], axis=1)
        return torch.from_numpy(arr.copy())

    def placeholder(self) -> Tensor:
        return torch.zeros(1, self.n_features or 1)

    def fit(self, items: list[Tensor]) -> None:
        widths = {x.shape[1] for x in items}
        if len(widths) > 1:
            raise BadInput(f"signals have different feature counts in training: {sorted(widths)}")
        self.n_features = widths.pop() if widths else 1
        if self.config.xyz and self.n_features % 3:
            raise BadInput(f"option xyz: the signal has {self.n_features} features, not a whole number of "
                           f"(x, y, z) triples")
        if self.config.normalize and items:
            allv = torch.cat(items)
            self.mean = allv.mean(0).tolist()
            self.std = allv.std(0).clamp_min(1e-6).tolist() if allv.shape[0] > 1 else [1.0] * self.n_features

    def state(self) -> dict:
        return {"n_features": self.n_features, "mean": self.mean, "std": self.std}

    def load_state(self, state: dict) -> None:
        self.n_features, self.mean, self.std = state["n_features"], state["mean"], state["std"]

    def collate(self, items: list[Tensor]) -> tuple[Tensor, Tensor]:
        norm = (torch.tensor(self.mean), torch.tensor(self.std)) if self.mean else (0.0, 1.0)
        return pad_sequences(items, norm, min_length=16)

    def draw_attribution(self, name: str, value: Tensor, attr: Tensor, mask: Tensor | None, out: Path) -> Drawn:
        """Saliency over time, over the signal's features."""
        length = int(mask.sum()) if mask is not None else value.shape[0]
        return Drawn(figure=render.sequence_figure(value[:length], attr[:length], out / f"attr_{name}.png",
                                                   f"{name}: saliency over time", False))

    def describe(self) -> dict:
        return {"features": self.n_features or 1, "waveform": False}


# -- corruptions -----------------------------------------------------------------------------------
@corruption(SignalModality, "white_noise")
def signal_white_noise(x: Tensor, s: float, rng) -> Tensor:
    """Gaussian noise with a standard deviation of up to 2x each feature's own."""
    std = x.std(0, keepdim=True).clamp_min(1e-6).numpy() if x.shape[0] > 1 else np.ones((1, x.shape[1]))
    return x + torch.from_numpy(rng.normal(0, 2 * s, x.shape) * std).float()


@corruption(SignalModality, "random_drop")
def signal_random_drop(x: Tensor, s: float, rng) -> Tensor:
    """A fraction `s` of time steps zeroed."""
    return zero_steps(x, s, rng)


@corruption(SignalModality, "structured_drop")
def signal_structured_drop(x: Tensor, s: float, rng) -> Tensor:
    """One contiguous stretch of a fraction `s` of the steps zeroed."""
    return drop_span(x, s, rng)


# each axis turned by up to this many degrees at severity 1
MAX_ROTATION_DEGREES = 45.0


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """The 3 x 3 rotation about x, then y, then z by `angles` (radians)."""
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@corruption(SignalModality, "rotation")
def signal_rotation(x: Tensor, s: float, rng, degrees: float = MAX_ROTATION_DEGREES) -> Tensor:
    """Every (x, y, z) triple turned by one random rotation: up to 45 degrees (the option `max_rotation`) about each
    axis at severity 1 (signals with the option `xyz`)."""
    if x.shape[1] % 3:
        raise PolymodalError(f"rotation needs (x, y, z) triples; the signal has {x.shape[1]} features")
    angles = np.deg2rad(degrees * s) * rng.uniform(-1, 1, 3)
    r = torch.from_numpy(rotation_matrix(angles)).to(x.dtype)
    return (x.reshape(len(x), -1, 3) @ r.T).reshape(x.shape)
