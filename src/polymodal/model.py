"""The network (encoders + fusion + task head) and the pieces it is built from."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from .config import Recipe
from .data.dataset import InputSpec
from .encoders import ENCODERS, InputEncoder
from .fusion import FUSIONS
from .fusion.base import FusionConfig, mlp
from .modalities import MODALITIES, Modality
from .registry import validate_config
from .tasks import TASKS, Task
from .types import Batch, Encoded, Fused, ModalityBatch


class MultimodalNet(nn.Module):
    """inputs -> per-input encoders -> fusion -> task head."""

    def __init__(self, encoders: dict[str, InputEncoder], fusion: nn.Module, head: nn.Module,
                 unimodal_heads: dict[str, nn.Module] | None = None, alone_by_head: bool = False) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = head
        self.unimodal_heads = nn.ModuleDict(unimodal_heads or {})
        self.alone_by_head = alone_by_head and bool(unimodal_heads)

    def encode(self, batch: Batch) -> dict[str, Encoded]:
        return {name: enc(batch[name]) for name, enc in self.encoders.items()}

    def fuse(self, encoded: dict[str, Encoded]) -> Fused:
        return self.fusion(encoded)

    def forward(self, batch: Batch) -> Tensor:
        encoded = self.encode(batch)
        out = self.head(self.fuse(encoded).pooled)
        if self.alone_by_head and len(encoded) > 1:  # rows with one input present: that input's own head
            present = torch.stack([e.present for e in encoded.values()], 1)
            alone = present.sum(1) == 1
            for i, (name, enc) in enumerate(encoded.items()):
                rows = alone & present[:, i]
                if bool(rows.any()):
                    out = torch.where(rows[:, None], self.unimodal_heads[name](enc.pooled).to(out.dtype), out)
        return out


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


class GeneratorNet(MultimodalNet):
    """A condition input's encoder (text tokens) and a denoiser that generates the image input (text-to-image)."""

    def __init__(self, encoders: dict[str, InputEncoder], head: nn.Module, image: str, condition: str) -> None:
        super().__init__(encoders, nn.Identity(), head)
        self.image, self.condition = image, condition

    def _condition(self, batch: Batch, drop: float = 0.0) -> Encoded:
        cond = batch[self.condition]
        if drop > 0:  # condition dropout: the dropped rows see the learnt "missing" token (classifier-free guidance)
            keep = torch.rand(cond.present.shape, device=cond.present.device) >= drop
            cond = replace(cond, present=cond.present & keep)
        return self.encoders[self.condition](cond)

    def loss(self, task: Task, batch: Batch, target: Tensor | None) -> Tensor:
        img = batch[self.image]
        x0 = img.data[img.index] * 2 - 1
        c = self._condition(batch, task.config.condition_dropout if self.training else 0.0)
        rows = img.present
        return task.loss_of(self.head, x0[rows], c.tokens[rows], c.mask[rows], c.pooled[rows])

    def forward(self, batch: Batch) -> Tensor:
        """No per-row prediction: generation is `sample`, training is `loss`."""
        return torch.zeros(len(batch[self.image].present), 1)

    @torch.no_grad()
    def sample(self, task: Task, cond: ModalityBatch, steps: int, guidance: float, sampler: str,
               generator: torch.Generator, shape: tuple[int, int, int]) -> Tensor:
        """Images [B, C, H, W] in [0, 1] for a batch of conditions, by the chosen sampler and guidance scale."""
        from .tasks.text_to_image import scheduler

        sched = scheduler(task.config, sampler)
        sched.set_timesteps(steps)
        enc = self.encoders[self.condition]
        c = enc(cond)
        tokens, mask, pooled = c.tokens, c.mask, c.pooled
        guided = guidance != 1.0
        if guided:
            u = enc(replace(cond, present=torch.zeros_like(cond.present)))
            tokens, mask = torch.cat([tokens, u.tokens]), torch.cat([mask, u.mask])
            pooled = torch.cat([pooled, u.pooled])
        n = len(cond.present)
        device = tokens.device
        x = torch.randn((n, *shape), generator=generator, device=generator.device).to(device)
        x = x * sched.init_noise_sigma
        for t in sched.timesteps:
            inp = sched.scale_model_input(torch.cat([x, x]) if guided else x, t)
            eps = self.head(inp, t.to(device).expand(inp.shape[0]), tokens, mask, pooled)
            if guided:
                e_c, e_u = eps.chunk(2)
                eps = e_u + guidance * (e_c - e_u)
            x = sched.step(eps, t, x, generator=generator).prev_sample  # seeded noise for stochastic samplers
        return ((x + 1) / 2).clamp(0, 1)


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


def unimodal_head(task: Task, dim: int, fusion: FusionConfig, kind: str) -> nn.Module:
    """An input's auxiliary head: linear, or the stack a unimodal model has (the fusion's post-layer, the head)."""
    if kind == "linear":
        return task.head(dim)
    return nn.Sequential(mlp(dim, fusion.hidden, fusion.dropout), task.head(fusion.hidden))


def build_net(recipe: Recipe, inputs: list[InputSpec], task: Task) -> MultimodalNet:
    """Build the network for fitted modalities and task, from the recipe alone (architectures as data)."""
    dim = recipe.model.dim
    encoders = {}
    generated = None
    if getattr(task, "generates", False):
        generated, condition = task.roles({s.name: s.modality.registry_name for s in inputs})
    for spec, cfg in zip(inputs, recipe.inputs):
        if spec.name == generated:
            continue
        enc_cfg = dict(cfg.encoder)
        name = encoder_type(spec.modality, enc_cfg)
        enc_cfg.pop("type", None)
        cls = ENCODERS.get(name, f"inputs.{spec.name}.encoder.type")
        conf = validate_config(cls.Config, enc_cfg, f"inputs.{spec.name}.encoder")
        encoders[spec.name] = InputEncoder(cls(conf, spec.modality, dim), dim)
    fusion_cfg = dict(recipe.model.fusion)
    method = fusion_cfg.get("method", "concat")
    if generated is not None:
        from .tasks.text_to_image import Denoiser

        torch.manual_seed(recipe.training.seed)
        info = next(s for s in inputs if s.name == generated).modality.describe()
        head = Denoiser(task.config, info["channels"], tuple(info["size"]), dim)
        return GeneratorNet(encoders, head, generated, condition)
    if not task.fuses:
        torch.manual_seed(recipe.training.seed)
        return EmbeddingNet(encoders, task.embedding_head([s.name for s in inputs], dim),
                            {s.name: s.modality.registry_name for s in inputs})
    fcls = FUSIONS.get(method, "model.fusion.method")
    fconf = validate_config(fcls.Config, fusion_cfg, "model.fusion")
    fusion = fcls(fconf, [s.name for s in inputs], dim)
    torch.manual_seed(recipe.training.seed)
    aux = {s.name: unimodal_head(task, dim, fconf, recipe.model.unimodal_head) for s in inputs} \
        if recipe.model.unimodal_heads > 0 else None
    return MultimodalNet(encoders, fusion, task.head(fusion.out_dim), aux, recipe.model.alone == "head")


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
