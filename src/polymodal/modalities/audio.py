"""Audio: wav/flac/ogg via soundfile, other formats via PyAV; mono, resampled, cropped; log-mel features
(transformers.audio_utils) or the raw waveform."""
from __future__ import annotations

import io
from math import gcd
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from .. import render
from ..errors import BadInput
from .base import MODALITIES, Drawn, Modality, ModalityConfig, resolve
from .corruptions import chunks, corruption, drop_span

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".au"}


class AudioConfig(ModalityConfig):
    sample_rate: int = Field(16000, ge=1000, description="Audio is resampled to this rate (Hz).")
    max_seconds: float = Field(10.0, gt=0, description="Longer clips are cropped to their first max_seconds.")
    features: Literal["logmel", "waveform"] = Field("logmel", description="What the encoder receives.")
    n_mels: int = Field(64, ge=8, description="Mel bands of the log-mel features.")
    frame_ms: float = Field(25.0, gt=0, description="Analysis window length (ms).")
    hop_ms: float = Field(10.0, gt=0, description="Hop between frames (ms).")
    normalize: Literal["global", "per_clip"] = Field(
        "global", description="Log-mel standardisation: global (one mean and std from the training clips) or "
        "per_clip (each clip's bands to zero mean, unit variance: speech stays readable when noise raises the floor; "
        "on grid-s1 CTC it cut the WER at 10 dB SNR from 99.9% to 62% and raised the clean WER from 3.7% to 9.2%).")


def _read_soundfile(source: Any, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Only the first max_seconds are read: an hour-long file costs what its first seconds cost."""
    import soundfile as sf

    with sf.SoundFile(source) as f:
        frames = -1 if max_seconds is None else int(max_seconds * f.samplerate) + 1
        return _mono(f.read(frames, dtype="float32", always_2d=True)), f.samplerate


def load_audio(value: Any, base_dir: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Return (mono float32 waveform, sample rate) from a path, bytes or (array, rate); with max_seconds, only the
    start of a file is decoded."""

    if isinstance(value, (tuple, list)) and len(value) == 2 and np.ndim(value[0]) >= 1:
        return _mono(np.asarray(value[0], dtype=np.float32)), int(value[1])
    if isinstance(value, (bytes, bytearray)):
        try:
            return _read_soundfile(io.BytesIO(value), max_seconds)
        except Exception as e:  # noqa: BLE001 - soundfile raises several types
            raise BadInput(f"cannot decode audio bytes: {e}") from None
    if not isinstance(value, (str, Path)):
        raise BadInput(f"expected an audio path or bytes, got {type(value).__name__}")
    path = resolve(value, base_dir)
    if not path.is_file():
        raise BadInput(f"audio file not found: {path}")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            return _read_soundfile(str(path), max_seconds)
        except Exception as e:  # noqa: BLE001
            raise BadInput(f"cannot decode audio file {path}: {e}") from None
    return _load_av(path, max_seconds)


def _load_av(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise BadInput(f"no audio stream in {path}")
            chunks, sr, kept = [], stream.rate, 0
            for frame in container.decode(stream):
                if max_seconds is not None and kept > max_seconds * sr:
                    break
                arr = frame.to_ndarray().astype(np.float32)
                if frame.format.is_planar:
                    arr = arr.T
                else:
                    arr = arr.reshape(-1, len(frame.layout.channels))
                if np.issubdtype(frame.to_ndarray().dtype, np.integer):
                    arr /= float(np.iinfo(frame.to_ndarray().dtype).max)
                chunks.append(arr)
                kept += len(arr)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises many error types
        raise BadInput(f"cannot decode audio file {path}: {e}") from None
    if not chunks:
        raise BadInput(f"no audio samples in {path}")
    return _mono(np.concatenate(chunks)), sr


def _mono(data: np.ndarray) -> np.ndarray:
    return (data.mean(axis=1) if data.ndim == 2 else data).astype(np.float32)


def resample(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return wave
    from scipy.signal import resample_poly

    g = gcd(sr, target)
    return resample_poly(wave, target // g, sr // g).astype(np.float32)


@MODALITIES.register("audio")
class AudioModality(Modality):
    Config = AudioConfig
    default_encoder = "conv1d"
    suffixes = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".aiff", ".aif", ".au")
    groupable = True
    config: AudioConfig

    def __init__(self, config: AudioConfig) -> None:
        super().__init__(config)
        self.mean, self.std = 0.0, 1.0
        self._mel = None

    def decode(self, value: Any, base_dir: Path) -> np.ndarray:
        """The mono waveform at the configured rate, cropped (what corruptions act on)."""
        wave, sr = load_audio(value, base_dir, self.config.max_seconds)
        if wave.size == 0:
            raise BadInput("empty audio")
        if not np.isfinite(wave).all():
            raise BadInput("audio has NaN or infinite samples")
        return resample(wave, sr, self.config.sample_rate)[: int(self.config.max_seconds * self.config.sample_rate)]

    def features(self, wave: np.ndarray) -> Tensor:
        if self.config.features == "waveform":
            return torch.from_numpy(wave.copy())[:, None]  # [T, 1]
        mel = self.logmel(wave)  # [T, n_mels]
        if self.config.normalize == "per_clip":
            mel = (mel - mel.mean(0)) / np.maximum(mel.std(0), 1e-5)
        return torch.from_numpy(mel.astype(np.float32))

    def logmel(self, wave: np.ndarray) -> np.ndarray:
        """log10 mel power spectrogram [T, n_mels]: Hann-windowed frames (centred, reflect-padded), one batched FFT.
        The same numbers as transformers' `spectrogram` (which loops over frames in Python), several times faster."""
        from transformers.audio_utils import mel_filter_bank, window_function

        c = self.config
        frame = int(c.sample_rate * c.frame_ms / 1000)
        hop = max(1, int(c.sample_rate * c.hop_ms / 1000))
        n_fft = 1 << (frame - 1).bit_length()
        if self._mel is None:
            self._mel = mel_filter_bank(n_fft // 2 + 1, c.n_mels, 20.0, c.sample_rate / 2, c.sample_rate, norm="slaney",
                                        mel_scale="slaney")
            self._window = window_function(frame, "hann", frame_length=n_fft)
        if wave.size < n_fft:
            wave = np.pad(wave, (0, n_fft - wave.size))
        padded = np.pad(wave, n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
        spec = np.abs(np.fft.rfft((frames * self._window).astype(np.float32), axis=-1)) ** 2
        mel = np.maximum(1e-10, spec @ self._mel)
        return np.log10(mel).astype(np.float32)  # [T, n_mels]

    def placeholder(self) -> Tensor:
        if self.config.features == "waveform":  # 100 ms of silence: long enough for any front-end's receptive field
            return torch.zeros(self.config.sample_rate // 10, 1)
        return torch.zeros(1, self.describe()["features"])

    def fit(self, items: list[Tensor]) -> None:
        if self.config.features == "logmel" and items:
            sample = torch.cat([x for x in items[:2000]])
            self.mean, self.std = float(sample.mean()), float(sample.std().clamp_min(1e-5))

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def collate(self, items: list[Tensor]) -> tuple[Tensor, Tensor]:
        return pad_sequences(items, (self.mean, self.std), min_length=16)

    def draw_attribution(self, name: str, value: Tensor, attr: Tensor, mask: Tensor | None, out: Path) -> Drawn:
        """Saliency over time, over the log-mel spectrogram (or the waveform)."""
        length = int(mask.sum()) if mask is not None else value.shape[0]
        return Drawn(figure=render.sequence_figure(value[:length], attr[:length], out / f"attr_{name}.png",
                                                   f"{name}: saliency over time", not self.describe().get("waveform")))

    def describe(self) -> dict:
        return {"features": 1 if self.config.features == "waveform" else self.config.n_mels,
                "waveform": self.config.features == "waveform", "sample_rate": self.config.sample_rate}


def pad_sequences(items: list[Tensor], norm: tuple[float, float] | tuple[Tensor, Tensor],
                  min_length: int = 1) -> tuple[Tensor, Tensor]:
    """Pad [T_i, F] items to [U, T, F] with a [U, T] mask; normalise by (mean, std)."""
    length = max(min_length, max(x.shape[0] for x in items))
    data = torch.zeros(len(items), length, items[0].shape[1])
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    mean, std = norm
    for i, x in enumerate(items):
        data[i, : x.shape[0]] = (x - mean) / std
        mask[i, : x.shape[0]] = True
    return data, mask


# -- corruptions -----------------------------------------------------------------------------------
@corruption(AudioModality, "white_noise")
def audio_white_noise(wave: np.ndarray, s: float, rng) -> np.ndarray:
    """White noise at an SNR from 30 dB (s -> 0) down to -10 dB (s = 1)."""
    return add_white_noise(wave, 30 - 40 * s, rng)


def add_white_noise(wave: np.ndarray, snr_db: float, rng) -> np.ndarray:
    """The waveform plus Gaussian white noise at `snr_db` dB below (or above) the clip's mean power."""
    power = float(np.mean(wave ** 2)) or 1e-8
    return (wave + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), wave.shape)).astype(np.float32)


@corruption(AudioModality, "random_dropout")
def audio_random_dropout(wave: np.ndarray, s: float, rng) -> np.ndarray:
    """A fraction `s` of 20 ms chunks (at 16 kHz; 320 samples) silenced at random."""
    out, size = wave.copy(), 320
    for c in np.flatnonzero(rng.random(chunks(out.size, size)) < s):
        out[c * size:(c + 1) * size] = 0
    return out


@corruption(AudioModality, "structured_dropout")
def audio_structured_dropout(wave: np.ndarray, s: float, rng) -> np.ndarray:
    """One contiguous stretch of a fraction `s` of the clip silenced."""
    return drop_span(wave, s, rng)
