"""Transfer learning from a trained polymodal model: one input's encoder (its architecture, weights and the input's
modality state: vocabulary, normalisation) taken from another model directory, typically a contrastive one, frozen or
fine-tuned. The new model directory keeps a copy of everything, so it loads without the source."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field
from torch import Tensor, nn

from ..errors import RecipeError
from .base import ENCODERS, Encoder, EncoderConfig


class TransferConfig(EncoderConfig):
    path: str = Field(..., description="A polymodal model directory (e.g. a contrastive model) to take the encoder "
                      "from.")
    input: str | None = Field(None, description="Which of its inputs (default: the input of the same name, or its "
                              "only input of this modality).")
    freeze: bool = Field(False, description="Keep the transferred weights fixed (only the new parts train).")
    source: dict[str, Any] | None = Field(None, description="Internal: the source encoder's config, filled from the "
                                          "source model.")
    source_dim: int | None = Field(None, description="Internal: the source model's width.")
    from_config: bool = Field(False, description="Internal: build without reading the source's weights (the model "
                              "directory's weights are loaded after).")


def source_config(path: str) -> dict:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise RecipeError(f"transfer encoder: {path} is not a polymodal model directory (no config.json)")
    return json.loads(cfg.read_text())


def resolve_transfer(cfg: dict) -> None:
    """Fill an input's recipe entry from the source model: its modality, options and encoder config."""
    enc = cfg["encoder"]
    src = source_config(enc["path"])
    inputs = {i["name"]: i for i in src["recipe"]["inputs"]}
    name = enc.get("input")
    if name is None:
        same = [n for n, i in inputs.items() if n == cfg["name"]] or \
            [n for n, i in inputs.items() if cfg.get("modality") in (None, i["modality"])]
        if len(same) != 1:
            raise RecipeError(f"field `inputs.{cfg['name']}.encoder.input`: name the input of {enc['path']} to take "
                              f"(it has: {', '.join(inputs)})")
        name = same[0]
    if name not in inputs:
        raise RecipeError(f"field `inputs.{cfg['name']}.encoder.input`: {enc['path']} has no input '{name}' "
                          f"(it has: {', '.join(inputs)})")
    source = inputs[name]
    if cfg.get("modality") not in (None, source["modality"]):
        raise RecipeError(f"inputs.{cfg['name']}: a {cfg['modality']} input cannot take the {source['modality']} "
                          f"encoder of {enc['path']}")
    cfg["modality"], cfg["options"] = source["modality"], source["options"]
    cfg["encoder"] = {**enc, "input": name, "source": source["encoder"], "source_dim": src["recipe"]["model"]["dim"]}


def load_source_modality(modality, encoder: dict) -> None:
    """Give a modality the source model's fitted state (vocabulary, statistics) instead of fitting it anew."""
    src = source_config(encoder["path"])
    modality.load_state(src["inputs"][encoder["input"]]["state"])
    modality.load_files(Path(encoder["path"]), f"{encoder['input']}.")


@ENCODERS.register("transfer")
class TransferEncoder(Encoder):
    Config = TransferConfig
    config: TransferConfig

    def __init__(self, config: TransferConfig, modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        if config.source is None or config.source_dim is None or config.input is None:
            raise RecipeError(f"transfer encoder from {config.path}: the recipe was not resolved (fit and load fill "
                              "`source`, `source_dim` and `input` from the source model)")
        inner_cfg = dict(config.source)
        etype = inner_cfg.pop("type")
        cls = ENCODERS.get(etype)
        if not config.from_config:
            inner_cfg = cls.for_loading(inner_cfg, Path(config.path), f"{config.input}.")
            inner_cfg.pop("type", None)
        self.inner = cls(cls.Config.model_validate(inner_cfg), modality, config.source_dim)
        if not config.from_config:
            self._load_weights()
        self.adapt = nn.Identity() if config.source_dim == dim else nn.Linear(config.source_dim, dim)
        if config.freeze:
            for p in self.inner.parameters():
                p.requires_grad_(False)

    def _load_weights(self) -> None:
        from safetensors.torch import load_file

        weights = Path(self.config.path) / "model.safetensors"
        prefix = f"encoders.{self.config.input}.encoder."
        state = {k[len(prefix):]: v for k, v in load_file(str(weights)).items() if k.startswith(prefix)}
        missing, unexpected = self.inner.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RecipeError(f"{weights}: the '{self.config.input}' encoder's weights do not match its config "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")

    def train(self, mode: bool = True) -> "TransferEncoder":
        super().train(mode)
        if self.config.freeze:
            self.inner.eval()
        return self

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if self.config.freeze and self.inner.training:  # frozen: no dropout, no batch-norm statistics updates
            self.inner.eval()  # (Lightning may restore submodules' modes without calling train())
        tokens, tmask, pooled = self.inner(data, mask)
        return self.adapt(tokens), tmask, self.adapt(pooled)

    def save_files(self, directory: Path, prefix: str) -> None:
        self.inner.save_files(directory, prefix)

    @classmethod
    def for_loading(cls, config: dict, directory: Path, prefix: str) -> dict:
        inner = dict(config["source"])
        etype = inner.get("type")
        inner = {"type": etype, **ENCODERS.get(etype).for_loading(inner, directory, prefix)}
        return {**config, "source": inner, "from_config": True}
