"""A small image + audio model (an avdigits stand-in: the shape in the picture and the pitch of the tone both say
the class), trained once per session and saved as a model directory for the server tests."""
from __future__ import annotations

from pathlib import Path

import pytest

import polymodal as pm
from tests.conftest import draw_shape, write_jsonl, write_tone

SHAPES = {"circle": 300.0, "square": 600.0, "triangle": 1200.0}


def av_rows(d: Path, n: int = 36, seed: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        shape = list(SHAPES)[i % 3]
        draw_shape(d / f"img{seed}_{i}.png", shape, "blue", 16, seed=seed * 1000 + i)
        write_tone(d / f"tone{seed}_{i}.wav", SHAPES[shape], 0.25, seed=seed * 1000 + i)
        rows.append({"id": f"r{i}", "image": f"img{seed}_{i}.png", "audio": f"tone{seed}_{i}.wav", "label": shape})
    return rows


AV_RECIPE = {
    "inputs": [{"name": "image", "modality": "image", "options": {"size": 16}, "encoder": {"channels": [8, 16]}},
               {"name": "audio", "modality": "audio", "options": {"sample_rate": 8000, "n_mels": 16},
                "encoder": {"channels": [16, 16]}}],
    "target": {"column": "label"},
    "model": {"dim": 16, "fusion": {"method": "concat", "hidden": 32}},
    "training": {"epochs": 6, "batch_size": 12, "lr": 0.01, "progress": False, "group_by": None},
}


@pytest.fixture(scope="session")
def av_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("av")
    write_jsonl(d / "train.jsonl", av_rows(d))
    write_jsonl(d / "test.jsonl", av_rows(d, 9, seed=1))
    return d


@pytest.fixture(scope="session")
def av_model(av_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("av_model") / "avdigits"
    pm.fit({**AV_RECIPE, "data": {"train": str(av_dir / "train.jsonl"), "test": str(av_dir / "test.jsonl")}},
           out=out)
    return out
