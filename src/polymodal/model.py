"""The network (encoders + fusion + task head) and the pieces it is built from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .config import Recipe
from .data.dataset import InputSpec
from .encoders import ENCODERS, InputEncoder
from .fusion import FUSIONS
from .modalities import MODALITIES, Modality
from .registry import validate_config
from .tasks import TASKS, Task
from .types import Batch, Encoded, Fused


class MultimodalNet(nn.Module):
    """inputs -> per-input encoders -> fusion -> task head."""

    def __init__(self, encoders: dict[str, InputEncoder], fusion: nn.Module, head: nn.Module,
                 unimodal_heads: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = head
        self.unimodal_heads = nn.ModuleDict(unimodal_heads or {})

    def encode(self, batch: Batch) -> dict[str, Encoded]:
        return {name: enc(batch[name]) for name, enc in self.encoders.items()}

    def fuse(self, encoded: dict[str, Encoded]) -> Fused:
        return self.fusion(encoded)

    def forward(self, batch: Batch) -> Tensor:
        return self.head(self.fuse(self.encode(batch)).pooled)


class EmbeddingNet(MultimodalNet):
    """inputs -> per-input encoders -> per-input projections into one shared, normalised space (no fusion)."""

    def __init__(self, encoders: dict[str, InputEncoder], head: nn.Module, kinds: dict[str, str]) -> None:
        super().__init__(encoders, nn.Identity(), head)
        self.kinds = kinds  # input name -> modality (training augments images)

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """Normalised embeddings of the inputs in the batch (any subset of the model's inputs)."""
        out = {}
        for name, b in batch.items():
            pooled = self.encoders[name](b).pooled
            out[name] = nn.functional.normalize(self.head.proj[name](pooled).float(), dim=-1)
        return out

    def forward(self, batch: Batch) -> Tensor:
        """[B, inputs, E]: each input's embedding, zeros where a row lacks it (or the batch does)."""
        emb = self.embed(batch)
        first = next(iter(emb.values()))
        zeros = first.new_zeros(first.shape)
        return torch.stack([torch.where(batch[n].present[:, None], emb[n], zeros) if n in emb else zeros
                            for n in self.encoders], 1)

    def loss(self, task: Task, batch: Batch, target: Tensor | None) -> Tensor:
        return task.batch_loss(self.embed(batch), batch, target, self.head)


@dataclass
class Parts:
    """Everything a trained model is: its resolved recipe, its inputs (with fitted modalities), task and network."""

    recipe: Recipe
    inputs: list[InputSpec]
    task: Task
    net: MultimodalNet

    @property
    def modalities(self) -> dict[str, Modality]:
        return {s.name: s.modality for s in self.inputs}


def make_modality(name: str, kind: str, options: dict[str, Any]) -> Modality:
    cls = MODALITIES.get(kind, f"inputs.{name}.modality")
    return cls(validate_config(cls.Config, options, f"inputs.{name}.options"))


def make_task(recipe: Recipe) -> Task:
    cls = TASKS.get(recipe.target.task or "classification", "target.task")
    return cls(validate_config(cls.Config, recipe.target.options, "target.options"))


def encoder_type(modality: Modality, encoder: dict) -> str:
    return encoder.get("type") or modality.default_encoder


def build_net(recipe: Recipe, inputs: list[InputSpec], task: Task) -> MultimodalNet:
    """Build the network for fitted modalities and task, from the recipe alone (architectures as data)."""
    dim = recipe.model.dim
    encoders = {}
    for spec, cfg in zip(inputs, recipe.inputs):
        enc_cfg = dict(cfg.encoder)
        name = encoder_type(spec.modality, enc_cfg)
        enc_cfg.pop("type", None)
        cls = ENCODERS.get(name, f"inputs.{spec.name}.encoder.type")
        conf = validate_config(cls.Config, enc_cfg, f"inputs.{spec.name}.encoder")
        encoders[spec.name] = InputEncoder(cls(conf, spec.modality, dim), dim)
    fusion_cfg = dict(recipe.model.fusion)
    method = fusion_cfg.get("method", "concat")
    if not task.fuses:
        torch.manual_seed(recipe.training.seed)
        return EmbeddingNet(encoders, task.embedding_head([s.name for s in inputs], dim),
                            {s.name: s.modality.registry_name for s in inputs})
    fcls = FUSIONS.get(method, "model.fusion.method")
    fconf = validate_config(fcls.Config, fusion_cfg, "model.fusion")
    fusion = fcls(fconf, [s.name for s in inputs], dim)
    torch.manual_seed(recipe.training.seed)
    aux = {s.name: task.head(dim) for s in inputs} if recipe.model.unimodal_heads > 0 else None
    return MultimodalNet(encoders, fusion, task.head(fusion.out_dim), aux)


def validate_components(recipe: Recipe) -> None:
    """Check every component name and its fields before any data is read (modality options need the modality,
    which may be inferred later; those are checked when it is known)."""
    fusion_cfg = dict(recipe.model.fusion)
    fcls = FUSIONS.get(fusion_cfg.get("method", "concat"), "model.fusion.method")
    validate_config(fcls.Config, fusion_cfg, "model.fusion")
    make_task(recipe)
    for cfg in recipe.inputs:
        if cfg.modality:
            mcls = MODALITIES.get(cfg.modality, f"inputs.{cfg.name}.modality")
            validate_config(mcls.Config, cfg.options, f"inputs.{cfg.name}.options")
        if cfg.encoder:
            etype = cfg.encoder.get("type")
            if etype:
                ecls = ENCODERS.get(etype, f"inputs.{cfg.name}.encoder.type")
                validate_config(ecls.Config, {k: v for k, v in cfg.encoder.items() if k != "type"},
                                f"inputs.{cfg.name}.encoder")
