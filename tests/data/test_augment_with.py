"""Augmentation restricted to named corruptions, and per-clip log-mel standardisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.data import Collator
from polymodal.data.dataset import InputSpec, read_inputs
from polymodal.data.table import Table
from polymodal.errors import RecipeError
from polymodal.model import make_modality


def test_per_clip_standardisation_gives_each_band_zero_mean_unit_variance():
    audio = make_modality("a", "audio", {"normalize": "per_clip", "sample_rate": 8000})
    rng = np.random.default_rng(0)
    wave = (np.sin(np.arange(8000) * 0.3) * np.linspace(0, 1, 8000) + rng.normal(0, 0.1, 8000)).astype(np.float32)
    mel = audio.features(wave).numpy()
    assert np.abs(mel.mean(0)).max() < 1e-4 and np.abs(mel.std(0) - 1).max() < 1e-3
    louder = audio.features(wave * 10).numpy()
    assert np.abs(louder - mel).max() < 1e-3  # loudness (a constant in the log domain) is gone (no band at the floor)


def test_augment_with_draws_only_the_named_corruptions(tmp_path):
    rows = [{"a": [[float(i + j)] for j in range(20)], "b": "some words here"} for i in range(6)]
    specs = [InputSpec("a", "a", make_modality("a", "signal", {})), InputSpec("b", "b", make_modality("b", "text", {}))]
    data = read_inputs(Table(rows, tmp_path, "t"), specs, None, None, require_target=False, show_progress=False,
                       keep_raw=True)
    for spec in specs:
        spec.modality.fit([data.items[spec.name][i] for i in range(len(data.items[spec.name]))])
    collate = Collator(data, {s.name: s.modality for s in specs}, None, augment=1.0, augment_with=["white_noise"])
    batch, _ = collate(list(range(6)))
    clean, _ = Collator(data, {s.name: s.modality for s in specs}, None)(list(range(6)))
    assert not np.allclose(batch["a"].data.numpy(), clean["a"].data.numpy())  # the signal got its white noise
    assert (batch["b"].data == clean["b"].data).all()  # text has no white_noise: untouched
    assert batch["a"].augmented.tolist() == [True] * 6 and batch["b"].augmented.tolist() == [False] * 6
    assert clean["a"].augmented is None  # no augmentation: nothing to mark


def test_the_batch_marks_exactly_the_rows_augmentation_corrupted(tmp_path):
    rows = [{"a": [[float(i + j)] for j in range(20)]} for i in range(12)] + [{"a": [[5.0]] * 20}]  # 13 values
    specs = [InputSpec("a", "a", make_modality("a", "signal", {}))]
    data = read_inputs(Table(rows, tmp_path, "t"), specs, None, None, require_target=False, show_progress=False,
                       keep_raw=True)
    specs[0].modality.fit(list(data.items["a"]))
    order = [3, 0, 12, 7, 3, 9, 1, 11, 5]  # a value twice: both its rows carry the same corrupted value
    batch, _ = Collator(data, {"a": specs[0].modality}, None, augment=0.5, seed=1)(order)
    clean, _ = Collator(data, {"a": specs[0].modality}, None)(order)
    x, y = batch["a"].data[batch["a"].index], clean["a"].data[clean["a"].index]
    changed = [not torch.equal(x[r], y[r]) for r in range(len(order))]
    assert batch["a"].augmented.tolist() == changed and 0 < sum(changed) < len(order)
    assert changed[0] == changed[4]
    assert batch["a"].to("cpu").augmented.tolist() == changed


def test_an_unknown_corruption_is_a_named_recipe_error(tmp_path):
    rows = [{"x": [[1.0], [2.0]], "label": str(i % 2)} for i in range(8)]
    rec = {"inputs": [{"name": "x", "modality": "signal"}], "target": {"column": "label"},
           "training": {"epochs": 1, "augment": 0.5, "augment_with": ["blur"], "progress": False}}
    with pytest.raises(RecipeError, match=r"training.augment_with.*blur.*these inputs have: random_drop"):
        pm.fit(rec, train=rows, out=tmp_path / "m")
