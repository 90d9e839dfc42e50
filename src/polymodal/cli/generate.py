"""Generating images: a polymodal text-to-image model directory, or a diffusers pipeline directory."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import PolymodalError
from .app import app


@app.command()
def generate(
    model: str = typer.Argument(..., help="Text-to-image model directory, or a diffusers pipeline directory."),
    prompts: list[str] = typer.Argument(..., help="One or more text prompts."),
    n: int = typer.Option(4, "-n", help="Images per prompt."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's, 25)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale (default: the "
                                             "model's, 3)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same images."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="ddim, ddpm or dpm_solver (polymodal models)."),
    out: Path = typer.Option(Path("generated.png"), "--out", "-o", help="Grid image to write (PNG)."),
    images_dir: Optional[Path] = typer.Option(None, "--images-dir", help="Also write each image here."),
) -> None:
    """Generate images from text: a grid PNG (one row per prompt)."""
    from ..generation import generate_with_pipeline, image_grid, is_pipeline

    if n < 1:
        raise PolymodalError("-n must be at least 1")
    if is_pipeline(model):
        images = generate_with_pipeline(model, prompts, n, steps or 25, 3.0 if guidance is None else guidance, seed)
    else:
        from ..api import load

        images = load(model).generate(prompts, n, steps, guidance, seed, sampler)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    image_grid(images, cols=n).save(tmp)
    tmp.replace(out)
    if images_dir is not None:
        images_dir.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            img.save(images_dir / f"{i // n:03d}_{i % n}.png")
    typer.echo(f"{len(images)} images ({len(prompts)} prompts x {n}) written to {out}", err=True)
