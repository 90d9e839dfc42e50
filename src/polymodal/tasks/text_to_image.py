"""Text-to-image: a conditional diffusion model built from diffusers' parts (UNet2DConditionModel, DDPM/DDIM/DPM-Solver
schedulers), conditioned by cross-attention on a text input's token states. Classifier-free guidance comes from
condition dropout (a dropped caption is the text encoder's learnt "missing" token); EMA weights are what is saved."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field
from torch import Tensor, nn

from ..data import InputSpec, Table, collate_input, read_inputs
from ..errors import PolymodalError
from ..types import Batch, Encoded, ModalityBatch
from .base import TASKS, StepRNG, Task, TaskConfig, TrainingPlan

SAMPLERS = ("ddim", "ddpm", "dpm_solver")


class TextToImageConfig(TaskConfig):
    image: str | None = Field(None, description="The image input to generate (default: the only image input); the "
                              "other input (text) is the condition.")
    block_channels: list[int] = Field([32, 64, 128], min_length=1, description="UNet channel widths per resolution "
                                      "level (each level halves the size).")
    layers_per_block: int = Field(1, ge=1, description="ResNet layers per UNet block.")
    head_dim: int = Field(8, ge=1, description="Width of each cross-attention head.")
    pooled_condition: bool = Field(True, description="Also add the text's pooled vector to the timestep embedding "
                                   "(as Imagen does), so the condition steers every block at every resolution, not "
                                   "only the cross-attention levels.")
    patch: int = Field(1, ge=1, description="Pixel-unshuffle factor: the UNet sees the image as (size/patch)^2 "
                       "cells of patch x patch pixels (2: a quarter of the positions, much faster on CPU).")
    train_timesteps: int = Field(1000, ge=10, description="Diffusion steps of the training noise schedule.")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        "squaredcos_cap_v2", description="Noise schedule (squaredcos_cap_v2: the cosine schedule).")
    prediction: Literal["epsilon", "v_prediction"] = Field(
        "v_prediction", description="What the UNet predicts: v (stable at every noise level, the usual choice with the "
        "cosine schedule) or the noise (epsilon: its image estimate is unusable at the noisiest steps, where the "
        "cosine schedule leaves almost no signal).")
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR-gamma loss weighting (Hang et al. 2023): each "
                                    "noise level's loss weight is capped at SNR = gamma, so the nearly clean "
                                    "steps do not dominate training (5 is the paper's choice); None: plain MSE.")
    condition_dropout: float = Field(0.1, ge=0, lt=1, description="Share of training rows whose caption is dropped "
                                     "(learns the unconditional model that classifier-free guidance needs).")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="Exponential moving average of the weights (saved "
                             "instead of the raw weights); 0: off.")
    sampler: Literal["ddim", "ddpm", "dpm_solver"] = Field(
        "ddpm", description="Default sampler for generation: ddpm (ancestral: fresh noise at each step corrects the "
        "model's errors, so a small model trained briefly draws more right images with it than with the "
        "deterministic ddim), ddim or dpm_solver.")
    steps: int = Field(25, ge=1, description="Default sampling steps.")
    guidance: float = Field(3.0, ge=0, description="Default classifier-free guidance scale (1: none).")


def scheduler(config: TextToImageConfig, kind: str = "ddpm"):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    base = DDPMScheduler(num_train_timesteps=config.train_timesteps, beta_schedule=config.beta_schedule,
                         prediction_type=config.prediction, clip_sample=True)
    classes = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm_solver": DPMSolverMultistepScheduler}
    if kind not in classes:
        raise PolymodalError(f"unknown sampler '{kind}' (choose from: {', '.join(SAMPLERS)})")
    return base if kind == "ddpm" else classes[kind].from_config(base.config)


class Denoiser(nn.Module):
    """A diffusers UNet2DConditionModel over (pixel-unshuffled) images, cross-attending to text token states."""

    def __init__(self, config: TextToImageConfig, channels: int, size: tuple[int, int], dim: int) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        p = config.patch
        step = p * 2 ** (len(config.block_channels) - 1)
        if size[0] % step or size[1] % step:
            raise ValueError(f"image size {size} must divide by patch x 2^(levels-1) = {step}")
        levels = len(config.block_channels)
        inner = channels * p * p
        self.patch, self.channels = p, channels
        self.unet = UNet2DConditionModel(
            sample_size=size[0] // p, in_channels=inner, out_channels=inner,
            block_out_channels=tuple(config.block_channels), layers_per_block=config.layers_per_block,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
            cross_attention_dim=dim, attention_head_dim=config.head_dim,
            norm_num_groups=min(8, *config.block_channels),
            class_embed_type="projection" if config.pooled_condition else None,
            projection_class_embeddings_input_dim=dim if config.pooled_condition else None)
        self.pooled_condition = config.pooled_condition

    def forward(self, x: Tensor, t: Tensor, tokens: Tensor, mask: Tensor, pooled: Tensor | None = None) -> Tensor:
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        out = self.unet(x, t, encoder_hidden_states=tokens, encoder_attention_mask=mask.float(),
                        class_labels=pooled if self.pooled_condition else None).sample
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


class GeneratorNet(nn.Module):
    """A condition input's encoder (text tokens) and a denoiser that generates the image input (text-to-image)."""

    def __init__(self, encoders: dict[str, nn.Module], head: Denoiser, image: str, condition: str) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = head
        self.image, self.condition = image, condition

    def _condition(self, batch: Batch, drop: float = 0.0) -> Encoded:
        cond = batch[self.condition]
        if drop > 0:  # condition dropout: the dropped rows see the learnt "missing" token (classifier-free guidance)
            keep = torch.rand(cond.present.shape, device=cond.present.device) >= drop
            cond = replace(cond, present=cond.present & keep)
        return self.encoders[self.condition](cond)

    def loss(self, task: "TextToImage", batch: Batch, target: Tensor | None) -> Tensor:
        img = batch[self.image]
        x0 = img.data[img.index] * 2 - 1
        c = self._condition(batch, task.config.condition_dropout if self.training else 0.0)
        rows = img.present
        return task.loss_of(self.head, x0[rows], c.tokens[rows], c.mask[rows], c.pooled[rows])

    def forward(self, batch: Batch) -> Tensor:
        """No per-row prediction: generation is `sample`, training is `loss`."""
        return torch.zeros(len(batch[self.image].present), 1)

    @torch.no_grad()
    def sample(self, task: "TextToImage", cond: ModalityBatch, steps: int, guidance: float, sampler: str,
               generator: torch.Generator, shape: tuple[int, int, int]) -> Tensor:
        """Images [B, C, H, W] in [0, 1] for a batch of conditions, by the chosen sampler and guidance scale."""
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


def to_pil(images: Tensor) -> list[Image.Image]:
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


@TASKS.register("text_to_image")
class TextToImage(Task):
    Config = TextToImageConfig
    config: TextToImageConfig
    monitor, monitor_mode = "loss", "min"

    @classmethod
    def check_target(cls, column: str | None) -> None:
        """No target: the image input is what is generated."""

    @classmethod
    def resolve_training(cls, training: dict[str, Any]) -> None:
        training["group_by"] = None
        training["modality_dropout"] = 0.0

    def training_plan(self, cfg: Any, inputs: int) -> TrainingPlan:
        # a diffusion loss is too noisy to stop or pick an epoch on: train the planned epochs, keep the EMA weights
        return TrainingPlan(ema_decay=self.config.ema_decay, early_stopping=False, keep_best=False)

    def fit(self, targets: list[Any]) -> None:
        pass

    def encoded_inputs(self, kinds: dict[str, str]) -> list[str]:
        return [self.roles(kinds)[1]]

    def build_net(self, encoders: dict[str, nn.Module], kinds: dict[str, str], modalities: dict[str, Any],
                  recipe: Any) -> GeneratorNet:
        image, condition = self.roles(kinds)
        torch.manual_seed(recipe.training.seed)
        info = modalities[image].describe()
        head = Denoiser(self.config, info["channels"], tuple(info["size"]), recipe.model.dim)
        return GeneratorNet(encoders, head, image, condition)

    @classmethod
    def architecture(cls, recipe: dict) -> dict:
        opts = recipe["target"]["options"]
        return {"denoiser": {k: opts.get(k) for k in ("block_channels", "layers_per_block", "patch")}}

    def training_loss(self, net: GeneratorNet, inputs: dict, target: Tensor | None, unimodal_weight: float,
                      rng: StepRNG) -> tuple[Tensor, dict[str, tuple[Tensor, int]]]:
        loss = net.loss(self, inputs, target)
        return loss, {"train_loss": (loss, len(next(iter(inputs.values())).present))}

    def evaluate(self, run: Any, *, classifier: str | Path | None = None, contrastive: str | Path | None = None,
                 steps: int | None = None, guidance: float | None = None, limit: int | None = None,
                 sampler: str | None = None, out: str | Path | None = None, progress: Any = None) -> dict:
        """The denoising loss; with `classifier` (a model trained on real images), `contrastive` (a joint
        embedding model) or `out`, also generates for the table's captions (first `limit` rows) and scores them
        (attribute accuracy, Fréchet distance, CLIP-style score; a grid PNG in `out`)."""
        result = run.denoising_loss(run.read("none"))
        if classifier is not None or contrastive is not None or out is not None:
            result["generation"] = run.generation(classifier=classifier, contrastive=contrastive, steps=steps,
                                                  guidance=guidance, limit=limit, progress=progress,
                                                  out=None if out is None else Path(out), sampler=sampler)
        return result

    def generate(self, parts: Any, prompts: list[str], n: int = 1, steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, sampler: str | None = None,
                 batch_size: int = 16) -> list[Image.Image]:
        """n images per prompt (prompt-major order), seeded: the same call gives the same images."""
        net, cfg = parts.net, self.config
        cond = next(s for s in parts.inputs if s.name == net.condition)
        table = Table([{cond.column: p} for p in prompts for _ in range(n)], Path.cwd(), "<prompts>")
        read = read_inputs(table, [InputSpec(cond.name, cond.column, cond.modality)], None, None,
                           require_target=False, show_progress=False)
        info = next(s for s in parts.inputs if s.name == net.image).modality.describe()
        shape = (info["channels"], *info["size"])
        device = next(net.parameters()).device
        generator = torch.Generator(device="cpu").manual_seed(seed)
        net.eval()
        images = []
        ids = read.ids[cond.name]
        for start in range(0, len(ids), batch_size):
            batch = collate_input(cond.modality, ids[start:start + batch_size], read.items[cond.name]).to(device)
            images.append(net.sample(self, batch, steps or cfg.steps, cfg.guidance if guidance is None else guidance,
                                     sampler or cfg.sampler, generator, shape).cpu())
        return to_pil(torch.cat(images))

    def roles(self, kinds: dict[str, str]) -> tuple[str, str]:
        """(image input, text condition input) among the inputs."""
        images = [n for n, k in kinds.items() if k == "image"]
        image = self.config.image or (images[0] if len(images) == 1 else None)
        if image is None or kinds.get(image) != "image":
            raise ValueError("name the image input to generate with target.options.image "
                             f"(inputs: {', '.join(f'{n} ({k})' for n, k in kinds.items())})")
        others = [n for n in kinds if n != image]
        if len(others) != 1:
            raise ValueError(f"text_to_image takes one image input and one condition input, got {', '.join(kinds)}")
        return image, others[0]

    def loss_of(self, denoiser: Denoiser, x0: Tensor, tokens: Tensor, mask: Tensor, pooled: Tensor,
                generator: torch.Generator | None = None) -> Tensor:
        """The denoising loss on clean images x0 in [-1, 1]."""
        sched = self._train_scheduler()
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        t = torch.randint(0, self.config.train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noisy = sched.add_noise(x0, noise, t)
        target = noise if self.config.prediction == "epsilon" else sched.get_velocity(x0, noise, t)
        out = denoiser(noisy, t, tokens, mask, pooled).float()
        if self.config.snr_gamma is None:
            return F.mse_loss(out, target.float())
        per_row = (out - target.float()).pow(2).flatten(1).mean(1)
        return (per_row * self.snr_weight(t)).mean()

    def snr_weight(self, t: Tensor) -> Tensor:
        """min(SNR, gamma) over the SNR weighting the prediction target already carries: SNR for epsilon, SNR + 1
        for v (in terms of the error on the clean image)."""
        alpha_bar = self._train_scheduler().alphas_cumprod.to(t.device)[t].float()
        snr = (alpha_bar / (1 - alpha_bar)).clamp_min(1e-12)
        capped = snr.clamp(max=self.config.snr_gamma)
        return capped / (snr if self.config.prediction == "epsilon" else snr + 1)

    def _train_scheduler(self):
        if getattr(self, "_sched", None) is None:
            self._sched = scheduler(self.config)
        return self._sched

    def decode(self, out: Tensor) -> list[dict]:
        raise PolymodalError("a text-to-image model generates rather than predicts: use `polymodal generate` or "
                             "model.generate()")

    def explained_value(self, out: Tensor, reference: Tensor) -> Tensor:
        raise PolymodalError("explanations are for predictive tasks, not text-to-image")
