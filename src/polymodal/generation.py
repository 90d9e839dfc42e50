"""Generating images with a full diffusers pipeline directory (Stable Diffusion and kin, with a model_index.json);
a polymodal text-to-image model generates through its task (`Model.generate`). `image_grid` tiles images."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from .errors import PolymodalError


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
