"""A model's parts (resolved recipe, fitted inputs, task, network) and how they are built from a recipe: the
encoders here, the rest by the task (`Task.build_net`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .config import Recipe
from .data.dataset import InputSpec
from .encoders import ENCODERS, InputEncoder
from .errors import PolymodalError, RecipeError
from .fusion import FUSIONS
from .modalities import MODALITIES, Modality
from .registry import validate_config
from .tasks import TASKS, Task


@dataclass
class Parts:
    """Everything a trained model is: its resolved recipe, its inputs (with fitted modalities), task and network."""

    recipe: Recipe
    inputs: list[InputSpec]
    task: Task
    net: nn.Module

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


class EnsembleNet(nn.Module):
    """Networks trained apart (training.ensemble: other seeds) as one: the task combines their outputs (the mean of
    their probabilities). Explanations look inside a single network: explain a member's model instead."""

    def __init__(self, members: list[nn.Module], task: Task) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.combine = task.combine

    @property
    def encoders(self) -> nn.ModuleDict:
        return self.members[0].encoders

    def forward(self, batch: Any) -> Any:
        return self.combine([m(batch) for m in self.members])

    def encode(self, batch: Any) -> Any:
        raise PolymodalError("an ensemble (training.ensemble) has no single fused representation to explain; "
                             "train one member (training.ensemble: 1) to explain it")

    fuse = encode


def build_net(recipe: Recipe, inputs: list[InputSpec], task: Task) -> nn.Module:
    """Build the network for fitted modalities and task, from the recipe alone (architectures as data): an encoder
    per input the task encodes, then what the task puts on top of them; `training.ensemble` such networks as one."""
    if recipe.training.ensemble > 1:
        return ensemble_net([build_one(recipe, inputs, task) for _ in range(recipe.training.ensemble)], task)
    return build_one(recipe, inputs, task)


def ensemble_net(members: list[nn.Module], task: Task) -> nn.Module:
    """The members as one network: the task's own (text: per-step probabilities averaged before the search), or
    an `EnsembleNet` whose outputs the task combines."""
    return task.ensemble_net(members) or EnsembleNet(members, task)


def build_one(recipe: Recipe, inputs: list[InputSpec], task: Task) -> nn.Module:
    kinds = {s.name: s.modality.registry_name for s in inputs}
    encoded = set(task.encoded_inputs(kinds))
    encoders = {}
    for spec, cfg in zip(inputs, recipe.inputs):
        if spec.name not in encoded:
            continue
        enc_cfg = dict(cfg.encoder)
        name = encoder_type(spec.modality, enc_cfg)
        enc_cfg.pop("type", None)
        cls = ENCODERS.get(name, f"inputs.{spec.name}.encoder.type")
        conf = validate_config(cls.Config, enc_cfg, f"inputs.{spec.name}.encoder")
        try:  # torch checks some shapes with assert (attention heads that do not divide the width)
            encoders[spec.name] = InputEncoder(cls(conf, spec.modality, recipe.model.dim), recipe.model.dim)
        except AssertionError as e:
            raise RecipeError(f"field `inputs.{spec.name}.encoder`: {e}") from None
    try:
        return task.build_net(encoders, kinds, {s.name: s.modality for s in inputs}, recipe)
    except AssertionError as e:
        raise RecipeError(f"field `model`: {e} (model.dim {recipe.model.dim})") from None


def validate_components(recipe: Recipe) -> None:
    """Check every component name and its fields before any data is read (modality options need the modality,
    which may be inferred later; those are checked when it is known)."""
    fusion_cfg = dict(recipe.model.fusion)
    fcls = FUSIONS.get(fusion_cfg.get("method", "concat"), "model.fusion.method")
    fconf = validate_config(fcls.Config, fusion_cfg, "model.fusion")
    heads = getattr(fconf, "heads", None)
    if heads and recipe.model.dim % heads:
        raise RecipeError(f"field `model.fusion.heads`: {heads} attention heads do not divide model.dim "
                          f"{recipe.model.dim}")
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
