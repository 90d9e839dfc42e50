"""DDP on CPU processes against one process (issue 17): the same recipe on a generated image + text table, trained
by `polymodal fit` with 1 process (all cores) and with `--devices N --strategy ddp` (cores shared out), each as a
user would launch it. Prints training time, rows per second and the test metrics of each, and the largest weight
difference between the models.

    .venv/bin/python benchmarks/ddp_scaling.py [--rows 4000] [--epochs 4] [--devices 2] [--out runs/bench-ddp]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220)}
SHAPES = ("circle", "square", "triangle")


def make_table(folder: Path, rows: int, seed: int = 0) -> None:
    """Pictures of a coloured shape and a sentence naming the colour; the label is (shape, colour) -> 9 classes."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(rows):
        shape, colour = SHAPES[int(rng.integers(3))], list(COLOURS)[int(rng.integers(3))]
        img = Image.new("RGB", (32, 32), (240, 240, 235))
        d = ImageDraw.Draw(img)
        x, y, r = (int(v) for v in rng.integers(9, 23, size=3) // (1, 1, 2))
        box = (x - r - 4, y - r - 4, x + r + 4, y + r + 4)
        if shape == "circle":
            d.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            d.rectangle(box, fill=COLOURS[colour])
        else:
            d.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=COLOURS[colour])
        path = folder / "img" / f"{i}.png"
        img.save(path)
        lines.append({"image": f"img/{i}.png", "text": f"something {colour} over there", "label": f"{colour} {shape}"})
    cut = int(rows * 0.8)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines[:cut]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines[cut:]))


RECIPE = """data: {train: train.jsonl, test: test.jsonl}
inputs:
  - {name: image, modality: image, options: {size: 32}, encoder: {type: image_cnn, channels: [16, 32]}}
  - {name: text, modality: text, encoder: {type: text_bow}}
target: {column: label}
model: {dim: 64, fusion: {method: concat, dropout: 0.0}}
training: {epochs: EPOCHS, batch_size: 64, lr: 0.003, modality_dropout: 0.2, progress: false, seed: 0, patience: 50}
"""


def run(folder: Path, out: str, extra: list[str], threads: int) -> dict:
    exe = str(Path(sys.executable).parent / "polymodal")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    proc = subprocess.run([exe, "fit", "recipe.yaml", "--out", out, "-q", "--set", f"training.threads={threads}",
                           *extra], cwd=folder, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    metrics = json.loads((folder / out / "metrics.json").read_text())
    return {"wall_seconds": round(wall, 1), "train_seconds": metrics["training"]["seconds"],
            "test_accuracy": metrics["test"]["accuracy"], "test_loss": metrics["test"]["loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-ddp")
    args = ap.parse_args()
    folder = Path(args.out).resolve()
    if not (folder / "train.jsonl").is_file():
        make_table(folder, args.rows)
    (folder / "recipe.yaml").write_text(RECIPE.replace("EPOCHS", str(args.epochs)))
    cores = os.cpu_count() or 1
    one = run(folder, "one", [], cores)
    many = run(folder, "ddp", ["--accelerator", "cpu", "--devices", str(args.devices), "--strategy", "ddp"],
               max(1, cores // args.devices))
    from safetensors.torch import load_file

    a, b = load_file(str(folder / "one" / "model.safetensors")), load_file(str(folder / "ddp" / "model.safetensors"))
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    train_rows = int(args.rows * 0.8 * 0.9) * args.epochs
    for name, r in (("1 process", one), (f"{args.devices} processes (ddp)", many)):
        r["rows_per_second"] = round(train_rows / r["train_seconds"], 1)
        print(json.dumps({"run": name, "cores": cores, **r}))
    print(json.dumps({"speedup": round(one["train_seconds"] / many["train_seconds"], 2),
                      "max_weight_difference": diff}))


if __name__ == "__main__":
    main()
