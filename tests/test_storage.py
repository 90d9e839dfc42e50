"""The model directory: reload gives identical predictions, needs no training data, never unpickles; saving is
atomic; any input may be missing at prediction time."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import polymodal as pm
from polymodal.errors import PolymodalError
from polymodal.storage import save_parts


@pytest.fixture(scope="module")
def trained(xor_rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    recipe = {"inputs": [{"name": "img", "modality": "image", "options": {"size": 16},
                          "encoder": {"channels": [8, 16]}}, {"name": "txt"}],
              "target": {"column": "label"},
              "model": {"dim": 16, "fusion": {"method": "cross_attention", "hidden": 32}},
              "training": {"epochs": 3, "batch_size": 32, "progress": False}}
    return pm.fit(recipe, train=xor_rows[:200], test=xor_rows[400:], out=out), out


def test_reload_gives_identical_predictions_from_the_directory_alone(trained, xor_rows, tmp_path):
    model, out = trained
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("checkpoints", "logs", "train.log"))
    loaded = pm.load(moved)
    rows = xor_rows[400:440]
    a, b = model.predict(rows), loaded.predict(rows)
    for x, y in zip(a, b):
        assert x["label"] == y["label"]
        assert all(abs(x["probabilities"][k] - y["probabilities"][k]) < 1e-6 for k in x["probabilities"])
    assert loaded.metrics["test"]["accuracy"] == model.metrics["test"]["accuracy"]
    assert sorted(p.name for p in moved.iterdir()) == ["config.json", "metrics.json", "model.safetensors",
                                                       "txt.tokenizer.json"]
    config = json.loads((moved / "config.json").read_text())
    assert config["task"]["state"]["classes"] == ["no", "yes"]
    assert config["recipe"]["inputs"][1]["modality"] == "text"  # inferred, then recorded


def test_weights_file_is_safetensors_and_loading_never_unpickles(trained, monkeypatch, xor_rows):
    _, out = trained
    raw = (out / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["format"] == "polymodal-model"
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during load")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert pm.load(out).predict(xor_rows[0])["label"] in ("yes", "no")


def test_predict_with_each_input_missing_in_turn(trained, xor_rows):
    model, _ = trained
    row = xor_rows[401]
    for drop in ("img", "txt"):
        sample = {k: v for k, v in row.items() if k not in (drop, "label")}
        pred = model.predict(sample)
        assert pred["label"] in ("yes", "no") and abs(sum(pred["probabilities"].values()) - 1) < 1e-4
    nothing = model.predict({"img": None, "txt": None})
    assert nothing["label"] in ("yes", "no")
    full = model.predict({"img": row["img"], "txt": row["txt"]})
    assert full["probabilities"] != model.predict({"img": row["img"]})["probabilities"]


def test_interrupted_save_leaves_the_previous_model_intact(trained, xor_rows, tmp_path, monkeypatch):
    model, out = trained
    target = tmp_path / "m"
    shutil.copytree(out, target)
    before = (target / "model.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("polymodal.storage.save_file", boom)
    with torch.no_grad():
        for p in model.parts.net.parameters():
            p.add_(1.0)
    try:
        with pytest.raises(OSError):
            save_parts(model.parts, target)
    finally:
        with torch.no_grad():
            for p in model.parts.net.parameters():
                p.sub_(1.0)
    assert (target / "model.safetensors").read_bytes() == before
    assert pm.load(target).predict(xor_rows[0])["label"] == model.predict(xor_rows[0])["label"]


def test_loading_a_non_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(PolymodalError, match="not a polymodal model directory"):
        pm.load(tmp_path)


def test_predict_ignores_an_empty_target_column(trained, xor_rows):
    model, _ = trained
    rows = [{**xor_rows[0], "label": None}, {**xor_rows[1], "label": ""}]
    assert len(model.predict(rows)) == 2
