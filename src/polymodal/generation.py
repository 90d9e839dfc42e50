"""Generating images from text: a polymodal text-to-image model directory, or a full diffusers pipeline directory
(Stable Diffusion and kin, with a model_index.json) behind the same call. Returns PIL images; `image_grid` tiles
them."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from .data import InputSpec, Table, read_inputs
from .data.batching import collate_input
from .errors import PolymodalError
from .model import Parts


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


def generate_from_parts(parts: Parts, prompts: list[str], n: int = 1, steps: int | None = None,
                        guidance: float | None = None, seed: int = 0, sampler: str | None = None,
                        batch_size: int = 16) -> list[Image.Image]:
    """n images per prompt (prompt-major order), seeded: the same call gives the same images."""
    net, cfg = parts.net, parts.task.config
    if not getattr(parts.task, "generates", False):
        raise PolymodalError(f"a {parts.recipe.target.task} model does not generate images")
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
        images.append(net.sample(parts.task, batch, steps or cfg.steps, cfg.guidance if guidance is None else guidance,
                                 sampler or cfg.sampler, generator, shape).cpu())
    return to_pil(torch.cat(images))


def is_pipeline(path: str | Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def generate_with_pipeline(path: str | Path, prompts: list[str], n: int = 1, steps: int = 25, guidance: float = 3.0,
                           seed: int = 0) -> list[Image.Image]:
    """A diffusers pipeline from a local directory (loaded with its own classes; weights as safetensors)."""
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(str(path), use_safetensors=True)
    except (OSError, ValueError, TypeError) as e:
        raise PolymodalError(f"cannot load the diffusers pipeline at {path}: {e}") from None
    pipe.set_progress_bar_config(disable=True)
    images = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator().manual_seed(seed + i)
        out = pipe(prompt, num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=guidance,
                   generator=generator)
        images.extend(out.images)
    return images


def image_grid(images: list[Image.Image], cols: int | None = None) -> Image.Image:
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    for i, img in enumerate(images):
        grid.paste(img.convert("RGB"), ((i % cols) * w, (i // cols) * h))
    return grid
