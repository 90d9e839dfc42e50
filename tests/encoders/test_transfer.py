"""Transfer learning: a classifier starts from a contrastive model's image encoder, frozen or fine-tuned, and its
model directory loads without the source."""
from __future__ import annotations

import shutil

import torch

import polymodal as pm


def _recipe(source, caption_dir, freeze: bool) -> dict:
    return {"data": {"train": str(caption_dir / "train.jsonl"), "test": str(caption_dir / "test.jsonl")},
            "inputs": [{"name": "image", "encoder": {"type": "transfer", "path": str(source), "freeze": freeze}}],
            "target": {"column": "shape"}, "model": {"dim": 16},
            "training": {"epochs": 4, "progress": False, "seed": 0}}


def test_frozen_transfer_keeps_the_source_weights_and_loads_alone(caption_model, caption_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(caption_model.directory, source)
    model = pm.fit(_recipe(source, caption_dir, freeze=True), out=tmp_path / "clf")
    src_state = caption_model.parts.net.encoders["image"].encoder.state_dict()
    new_state = model.parts.net.encoders["image"].encoder.inner.state_dict()
    assert all(torch.equal(src_state[k], new_state[k]) for k in src_state)
    assert model.parts.net.encoders["image"].encoder.adapt.in_features == 32  # source width 32 -> 16
    assert model.metrics["test"]["accuracy"] >= 0.85
    shutil.rmtree(source)
    again = pm.load(tmp_path / "clf")
    assert again.evaluate(caption_dir / "test.jsonl")["accuracy"] == model.metrics["test"]["accuracy"]


def test_fine_tuned_transfer_changes_the_weights(caption_model, caption_dir, tmp_path):
    model = pm.fit(_recipe(caption_model.directory, caption_dir, freeze=False), out=tmp_path / "clf")
    src_state = caption_model.parts.net.encoders["image"].encoder.state_dict()
    new_state = model.parts.net.encoders["image"].encoder.inner.state_dict()
    assert any(not torch.equal(src_state[k], new_state[k]) for k in src_state if src_state[k].is_floating_point())
