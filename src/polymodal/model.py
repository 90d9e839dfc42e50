"""A model's parts (resolved recipe, fitted inputs, task, network) and how they are built from a recipe: the
encoders here, the rest by the task (`Task.build_net`)."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import Recipe
from .data.dataset import InputSpec
from .encoders import ENCODERS, InputEncoder
from .errors import PolymodalError, RecipeError
from .fusion import FUSIONS
from .modalities import MODALITIES, Modality
from .registry import validate_config
from .tasks import TASKS, Task
from .types import ROW_RULES, member_inputs, reading_members, restrict_batch


@dataclass
class Parts:
    """Everything a trained model is: its resolved recipe, its inputs (with fitted modalities), task and network.
    A model joined from others (`polymodal ensemble`) keeps them as `members`: its network is theirs combined."""

    recipe: Recipe
    inputs: list[InputSpec]
    task: Task
    net: nn.Module
    members: list[Member] | None = None

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
    """Networks trained apart as one: the task combines their outputs (the mean of their probabilities). Members
    of `training.ensemble` share one recipe; members joined by `polymodal ensemble` may read different inputs (and
    `views[m]` may hold member m to some of its inputs); each row is combined over the members that see one of
    their inputs in it (`rows: all`), or over those that match it best (`rows: closest`, `widest`, `first`:
    `reading_members`). Explanations look inside a single network: explain a member's model instead."""

    def __init__(self, members: list[nn.Module], task: Task) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.combine = task.combine
        self.views: list[tuple[str, ...] | None] = [None] * len(members)
        self.rows = "all"

    @property
    def encoders(self) -> nn.ModuleDict:
        return self.members[0].encoders

    def forward(self, batch: Any) -> Any:
        outs = [m(restrict_batch(batch, v)) for m, v in zip(self.members, self.views)]
        sees = reading_members(batch, member_inputs(list(self.members), self.views), self.rows)
        if bool(sees.all()):
            return self.combine(outs)
        combined = self.combine(outs).clone()
        for pattern in torch.unique(sees, dim=0):  # rows a member does not see: combined without it
            rows = (sees == pattern).all(1)
            combined[rows] = self.combine([o[rows] for o, seen in zip(outs, pattern.tolist()) if seen])
        return combined

    def encode(self, batch: Any) -> Any:
        raise PolymodalError("an ensemble (training.ensemble, training.fallback or polymodal ensemble) has no single "
                             "fused representation to explain: explain one of its models (MODEL/members/K of a "
                             "joined model; members/0 is a fallback model's model of every input), or train one "
                             "(training.ensemble: 1)")

    fuse = encode


@dataclass
class Member:
    """A trained model joined into an ensemble: its parts, the inputs it reads there (None: all of its own) and
    the metrics it was saved with."""

    parts: Parts
    reads: tuple[str, ...] | None = None
    metrics: dict = field(default_factory=dict)
    source: str = ""  # where it was loaded from (for messages)


def join_parts(members: list[Member], task_state: dict | None = None, rows: str = "all") -> Parts:
    """Trained models as one: the union of their inputs (an input of one name must be read the same way by every
    member that has it: one batch feeds them all), the first member's task (their outputs must mean the same:
    classes, vocabulary, target scale) with `task_state` (the ensemble's own choices: a search, a threshold), and a
    network that combines theirs, each member held to `reads`. A member trained as an ensemble joins as its
    networks. `rows`: which members read each row (`reading_members`: all, closest, widest, first)."""
    if rows not in ROW_RULES:
        raise PolymodalError(f"rows: '{rows}' is not a rule for an ensemble's rows (one of {', '.join(ROW_RULES)})")
    if len(members) < 2:
        raise PolymodalError(f"an ensemble joins two models or more (got {len(members)})")
    first = members[0]
    names = [m.source or f"member {k}" for k, m in enumerate(members)]
    inputs: dict[str, tuple[InputSpec, Any, str]] = {}
    nets: list[nn.Module] = []
    views: list[tuple[str, ...] | None] = []
    for k, member in enumerate(members):
        parts = member.parts
        if parts.members:
            raise PolymodalError(f"{names[k]}: a joined ensemble cannot join another; join its members instead")
        if parts.task.registry_name != first.parts.task.registry_name:
            raise PolymodalError(f"{names[k]} is a {parts.task.registry_name} model and {names[0]} a "
                                 f"{first.parts.task.registry_name} one: an ensemble's members share one task")
        if parts.task.outputs_key() != first.parts.task.outputs_key():
            raise PolymodalError(f"{names[k]} and {names[0]} give outputs that do not mean the same "
                                 f"({parts.task.registry_name}: other classes, vocabulary or target scale): "
                                 "train the members on the same training table")
        own = [s.name for s in parts.inputs]
        if member.reads is not None:
            unknown = sorted(set(member.reads) - set(own))
            if unknown or not member.reads:
                raise PolymodalError(f"{names[k]}: reads {', '.join(unknown) or 'nothing'}, which it has no input for "
                                     f"(its inputs: {', '.join(own)})")
        for spec, cfg in zip(parts.inputs, parts.recipe.inputs):
            how = {"column": spec.column, "modality": spec.modality.registry_name, "options": cfg.options,
                   "state": spec.modality.state()}
            if spec.name in inputs and json.dumps(inputs[spec.name][1], sort_keys=True, default=str) != \
                    json.dumps(how, sort_keys=True, default=str):
                raise PolymodalError(
                    f"input '{spec.name}' is read one way by {inputs[spec.name][2]} and another by {names[k]} (its "
                    "column, modality, options or what it learnt from training data differ): members share one "
                    "batch, so an input of one name must be read the same way by all")
            inputs.setdefault(spec.name, (spec, how, names[k]))
        member_nets = list(parts.net.members) if hasattr(parts.net, "members") else [parts.net]
        nets += member_nets
        views += [member.reads] * len(member_nets)
    task = copy.deepcopy(first.parts.task)  # the ensemble's choices must not change the first member's
    if task_state is not None:
        task.load_state(task_state)
    recipe = first.parts.recipe.model_copy(deep=True)
    configs: dict[str, Any] = {}
    for m in members:  # each input as its first member has it (its encoder: that member's)
        for c in m.parts.recipe.inputs:
            configs.setdefault(c.name, c)
    recipe.inputs = [configs[name].model_copy(deep=True) for name in inputs]
    recipe.training.ensemble = 1
    try:
        net = ensemble_net(nets, task, views, rows)
    except PolymodalError as e:
        raise PolymodalError(f"these models cannot be joined: {e}") from None
    net.eval()
    return Parts(recipe, [spec for spec, _, _ in inputs.values()], task, net, list(members))


def build_net(recipe: Recipe, inputs: list[InputSpec], task: Task) -> nn.Module:
    """Build the network for fitted modalities and task, from the recipe alone (architectures as data): an encoder
    per input the task encodes, then what the task puts on top of them; `training.ensemble` such networks as one."""
    if recipe.training.ensemble > 1:
        return ensemble_net([build_one(recipe, inputs, task) for _ in range(recipe.training.ensemble)], task)
    return build_one(recipe, inputs, task)


def ensemble_net(members: list[nn.Module], task: Task, views: list[tuple[str, ...] | None] | None = None,
                 rows: str = "all") -> nn.Module:
    """The members as one network: the task's own (text: per-step probabilities averaged before the search), or
    an `EnsembleNet` whose outputs the task combines; `views[m]`: the inputs member m reads (None: all of its);
    `rows`: which members read a row (all, closest, widest, first: `reading_members`)."""
    net = task.ensemble_net(members) or EnsembleNet(members, task)
    if views is not None:
        net.views = [None if v is None else tuple(v) for v in views]
    net.rows = rows
    return net


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
