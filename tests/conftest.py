"""Synthetic data made by the tests: PIL shapes, numpy tones, PyAV videos, numpy signals. Everything seeded."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image, ImageDraw

import polymodal as pm

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def _one_core_per_worker() -> None:
    """Under pytest-xdist (`make test` runs a worker per core), each worker and what it starts runs on a core of its
    own: torch's threads in two workers on two shared cores slow each other more than they gain."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
        torch.set_num_threads(1)


_one_core_per_worker()

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def draw_shape(path: Path, shape: str, colour: str, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (245, 240, 235))
    d = ImageDraw.Draw(img)
    r = int(rng.integers(size // 4, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    box = [cx - r, cy - r, cx + r, cy + r]
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    img.save(path)
    return path


def write_tone(path: Path, freq: float, seconds: float = 0.5, sr: int = 8000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(path, wave.astype(np.float32), sr)
    return path


def write_video(path: Path, colour: str, frames: int = 6, size: int = 32) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            arr = np.full((size, size, 3), 240, np.uint8)
            x = int(i * (size - 8) / max(1, frames - 1))
            arr[10:18, x:x + 8] = COLOURS[colour]
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def xor_rows(tmp_path_factory) -> list[dict]:
    """Label = (image is red) XOR (text says 'alpha'): no single input predicts it."""
    d = tmp_path_factory.mktemp("xor")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(480):
        a, b = int(rng.integers(2)), int(rng.integers(2))
        path = draw_shape(d / f"{i}.png", str(rng.choice(["circle", "square"])), "red" if a else "blue", 16, seed=i)
        text = f"{'alpha' if b else 'beta'} {rng.choice(['one', 'two', 'three'])}"
        rows.append({"img": str(path), "txt": text, "label": "yes" if a ^ b else "no"})
    return rows


@pytest.fixture(scope="session")
def five_modality_dir(tmp_path_factory) -> Path:
    """A tiny table with text, image, audio, video and signal columns; some cells missing; label = colour."""
    d = tmp_path_factory.mktemp("five")
    rng = np.random.default_rng(2)
    rows = []
    for i in range(24):
        colour = ["red", "blue"][i % 2]
        draw_shape(d / f"img{i}.png", "circle", colour, 16, seed=i)
        write_tone(d / f"a{i}.wav", 300 if colour == "red" else 900, 0.3, seed=i)
        np.save(d / f"s{i}.npy", rng.standard_normal((20 + i, 3)).astype(np.float32) + (i % 2))
        rows.append({"text": f"a {colour} thing", "image": f"img{i}.png", "audio": f"a{i}.wav",
                     "video": f"v{i % 2}.mp4", "signal": f"s{i}.npy", "label": colour})
    write_video(d / "v0.mp4", "red")
    write_video(d / "v1.mp4", "blue")
    for i, col in zip(range(3, 24, 5), ["text", "image", "audio", "video", "signal"]):
        rows[i][col] = None  # each modality missing somewhere
    write_jsonl(d / "train.jsonl", rows)
    return d


FIVE_RECIPE = {
    "inputs": [
        {"name": "text", "modality": "text", "encoder": {"type": "text_transformer", "layers": 1, "heads": 2}},
        {"name": "image", "modality": "image", "options": {"size": 16}, "encoder": {"channels": [8, 16]}},
        {"name": "audio", "modality": "audio", "options": {"sample_rate": 8000, "n_mels": 16},
         "encoder": {"channels": [16, 16]}},
        {"name": "video", "modality": "video", "options": {"n_frames": 4, "size": 16},
         "encoder": {"channels": [8, 8], "heads": 2}},
        {"name": "signal", "modality": "signal", "encoder": {"channels": [16]}},
    ],
    "target": {"column": "label"},
    "model": {"dim": 16, "fusion": {"method": "concat", "hidden": 32}},
    "training": {"epochs": 1, "batch_size": 8, "progress": False, "group_by": None},
}


def image_text_recipe(fusion: str = "concat", dropout: float = 0.1) -> dict:
    return {"inputs": [{"name": "img", "modality": "image", "options": {"size": 16}, "encoder": {"channels": [8, 16]}},
                       {"name": "txt", "modality": "text", "encoder": {"type": "text_bow"}}],
            "target": {"column": "label"},
            "model": {"dim": 32, "fusion": {"method": fusion, "hidden": 64, "dropout": 0.0}},
            "training": {"epochs": 20, "batch_size": 32, "lr": 0.005, "patience": 20, "progress": False,
                         "group_by": None, "modality_dropout": dropout}}


@pytest.fixture(scope="module")
def image_only_signal(xor_rows):
    """The label is the image's colour; the text is noise."""
    rng = np.random.default_rng(5)
    rows = []
    for r in xor_rows:
        red = "yes" if ((r["label"] == "yes") != r["txt"].startswith("alpha")) else "no"  # undo the XOR
        rows.append({"img": r["img"], "txt": f"{rng.choice(['alpha', 'beta'])} {rng.choice(['one', 'two'])}",
                     "label": red})
    return rows


@pytest.fixture(scope="module")
def noise_text_model(image_only_signal):
    return pm.fit(image_text_recipe(), train=image_only_signal[:320], validation=image_only_signal[320:400])


SHAPES = ("circle", "square", "triangle")


def caption_rows(directory: Path, n: int, seed: int = 0, size: int = 32) -> list[dict]:
    """Image + caption pairs ("a red circle") with the shape as label; one image file per row."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        shape, colour = SHAPES[int(rng.integers(3))], list(COLOURS)[int(rng.integers(3))]
        path = draw_shape(directory / f"s{seed}_{i}.png", shape, colour, size=size, seed=seed * 100_000 + i)
        rows.append({"id": f"r{i}", "image": path.name, "caption": f"a {colour} {shape}", "shape": shape})
    return rows


@pytest.fixture(scope="session")
def caption_dir(tmp_path_factory) -> Path:
    """train.jsonl / test.jsonl of shape pictures and their captions."""
    d = tmp_path_factory.mktemp("captions")
    write_jsonl(d / "train.jsonl", caption_rows(d, 180, seed=1))
    write_jsonl(d / "test.jsonl", caption_rows(d, 60, seed=2))
    return d


CAPTION_RECIPE = {
    "inputs": [{"name": "caption", "modality": "text", "encoder": {"type": "text_bow"}},
               # mean-pooled: captions name shapes and colours, not places (with the default grid pooling a frozen
               # transfer of this encoder to shape classification scored 0.72, against 0.85+ mean-pooled)
               {"name": "image", "modality": "image", "options": {"size": 32},
                "encoder": {"type": "image_cnn", "pool": "mean"}}],
    "target": {"column": "shape", "task": "contrastive"},
    "model": {"dim": 32},
    "training": {"epochs": 12, "batch_size": 32, "lr": 0.003, "progress": False, "seed": 0},
}


@pytest.fixture(scope="session")
def caption_model(caption_dir, tmp_path_factory):
    """A contrastive caption/image model trained on caption_dir."""
    import copy

    recipe = copy.deepcopy(CAPTION_RECIPE)
    recipe["data"] = {"train": str(caption_dir / "train.jsonl"), "test": str(caption_dir / "test.jsonl")}
    return pm.fit(recipe, out=tmp_path_factory.mktemp("clip") / "model")
