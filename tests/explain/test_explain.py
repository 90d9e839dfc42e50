"""Explanations that can be trusted: Shapley shares find the input that carries the label; EMAP separates XOR
from additive data; attributions depend on the trained weights; heatmaps find a planted patch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import polymodal as pm
from tests.conftest import image_text_recipe


@pytest.fixture(scope="module")
def robust_noise_text_model(image_only_signal):
    """Trained with inputs hidden often, so 'image missing' is in distribution and text alone gives the prior."""
    return pm.fit(image_text_recipe(dropout=0.4), train=image_only_signal[:320], validation=image_only_signal[320:400])


def test_shapley_share_of_the_informative_input(robust_noise_text_model, image_only_signal, tmp_path):
    model = robust_noise_text_model
    result = model.explain(image_only_signal[400:], global_=True, out=tmp_path)
    assert result["shapley_share"]["img"] > 0.9, result["shapley_share"]
    one = model.explain(image_only_signal[400:], index=3, out=tmp_path / "one")
    assert one["shapley_share"]["img"] > 0.9
    total = sum(one["shapley"].values())
    assert total == pytest.approx(one["prediction"]["probabilities"][one["prediction"]["label"]] - 0.5, abs=0.2)
    html = (tmp_path / "one" / "report.html").read_text()
    assert "data:image/png;base64," in html and "txt: words" in html
    assert (tmp_path / "one" / "attr_img.png").is_file()
    assert json.loads((tmp_path / "explanation.json").read_text())["rows"] == 80


def test_emap_gap_is_large_for_xor_and_small_for_additive_labels(xor_rows):
    xor = pm.fit(image_text_recipe("product", 0.0), train=xor_rows[:320], validation=xor_rows[320:400])
    e = xor.explain(xor_rows[400:], global_=True)["emap"]
    assert e["full"] > 0.9 and e["additive"] < 0.7 and e["gap"] > 0.3, e
    additive_rows = []
    for r in xor_rows:  # 4 classes = (colour, word): a sum of one effect from each input
        red = (r["label"] == "yes") != r["txt"].startswith("alpha")
        additive_rows.append({**r, "label": f"{'red' if red else 'blue'}-{r['txt'].split()[0]}"})
    add = pm.fit(image_text_recipe("concat", 0.0), train=additive_rows[:320], validation=additive_rows[320:400])
    e = add.explain(additive_rows[400:], global_=True)["emap"]
    assert e["full"] > 0.9 and abs(e["gap"]) < 0.1, e


def _planted(tmp_path, n: int = 240):
    """16x16 grey noise; the label is whether a 3x3 patch at a fixed corner is bright or dark."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = rng.integers(80, 176, (16, 16)).astype(np.uint8)
        label = int(rng.integers(2))
        img[2:5, 11:14] = 250 if label else 5
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        rows.append({"img": str(tmp_path / f"{i}.png"), "label": str(label)})
    return rows


def test_heatmap_mass_concentrates_on_the_planted_patch(tmp_path):
    rows = _planted(tmp_path)
    recipe = {"inputs": [{"name": "img", "modality": "image", "options": {"size": 16, "channels": 1},
                          "encoder": {"channels": [8, 16]}}],
              "target": {"column": "label"}, "model": {"dim": 16, "fusion": {"method": "concat", "hidden": 16}},
              "training": {"epochs": 15, "batch_size": 32, "lr": 0.005, "progress": False}}
    model = pm.fit(recipe, train=rows[:200], test=rows[200:])
    assert model.metrics["test"]["accuracy"] > 0.95
    masses = []
    for i in range(5):
        from polymodal.data import Collator
        from polymodal.explain.gradients import integrated_gradients

        read = model._read(rows[200 + i:201 + i], "none")
        batch, _ = Collator(read, model.parts.modalities, None)(range(1))
        pred = int(model.parts.net(batch).argmax())
        heat = integrated_gradients(model.parts, batch, pred)["img"].abs().sum(0)
        patch = heat[1:6, 10:15].sum() / heat.sum()  # the patch and a 1-pixel margin: 25 of 256 pixels
        masses.append(float(patch))
    assert np.mean(masses) > 0.4, masses


def test_attributions_depend_on_the_trained_weights(tmp_path):
    rows = _planted(tmp_path, 200)
    recipe = {"inputs": [{"name": "img", "modality": "image", "options": {"size": 16, "channels": 1},
                          "encoder": {"channels": [8, 16]}}],
              "target": {"column": "label"}, "model": {"dim": 16, "fusion": {"method": "concat", "hidden": 16}},
              "training": {"epochs": 10, "batch_size": 32, "lr": 0.005, "progress": False}}
    model = pm.fit(recipe, train=rows[:160])
    from polymodal.data import Collator
    from polymodal.explain.gradients import integrated_gradients
    from polymodal.model import build_net

    read = model._read(rows[170:171], "none")
    batch, _ = Collator(read, model.parts.modalities, None)(range(1))
    trained = integrated_gradients(model.parts, batch, 0)["img"].abs().flatten()
    torch.manual_seed(123)
    random_parts = type(model.parts)(model.parts.recipe, model.parts.inputs, model.parts.task,
                                     build_net(model.parts.recipe.model_copy(update={"training": model.parts.recipe
                                               .training.model_copy(update={"seed": 123})}), model.parts.inputs,
                                               model.parts.task).eval())
    random = integrated_gradients(random_parts, batch, 0)["img"].abs().flatten()
    def ranks(x):
        return x.argsort().argsort().float()

    spearman = float(torch.corrcoef(torch.stack([ranks(trained), ranks(random)]))[0, 1])
    patch = torch.zeros(16, 16, dtype=torch.bool)
    patch[1:6, 10:15] = True

    def mass(a):
        return float(a.view(16, 16)[patch].sum() / a.sum())

    # Adebayo et al.'s randomisation check: the map must depend on what the model learnt, not only on the input
    assert spearman < 0.6, spearman
    assert mass(trained) > 2 * mass(random), (mass(trained), mass(random))


def test_cli_explain_row_and_global(noise_text_model, image_only_signal, tmp_path):
    import subprocess
    import sys

    from tests.conftest import write_jsonl

    noise_text_model.save(tmp_path / "m")
    write_jsonl(tmp_path / "t.jsonl", image_only_signal[400:430])
    r = subprocess.run([sys.executable, "-m", "polymodal", "explain", str(tmp_path / "m"), "--data",
                        str(tmp_path / "t.jsonl"), "--index", "2", "--out", str(tmp_path / "e"), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # this model (default modality dropout, no remedy) leaves the noise text ~13% of this row (measured 0.865);
    # the robust model is held to 0.9 in test_shapley_share_of_the_informative_input
    assert json.loads(r.stdout)["shapley_share"]["img"] > 0.8
    r = subprocess.run([sys.executable, "-m", "polymodal", "explain", str(tmp_path / "m"), "--data",
                        str(tmp_path / "t.jsonl"), "--global", "--out", str(tmp_path / "g")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "EMAP" in r.stdout and (tmp_path / "g" / "representation.png").is_file()
    r = subprocess.run([sys.executable, "-m", "polymodal", "explain", str(tmp_path / "m"), "--data",
                        str(tmp_path / "t.jsonl"), "--index", "99"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "out of range" in r.stderr


def test_shapley_values_add_up_exactly_to_the_full_minus_the_empty_prediction(robust_noise_text_model,
                                                                              image_only_signal):
    """Efficiency, per row: the inputs' Shapley values sum to v(all inputs) - v(no input), to float precision."""
    from polymodal.evaluation.evaluate import run_outputs
    from polymodal.evaluation.reliance import without
    from polymodal.explain.shapley import shapley

    model = robust_noise_text_model
    read = model._read(image_only_signal[400:440], "none")
    parts = model.parts
    phi = shapley(parts, read)
    full, _ = run_outputs(parts, read)
    empty, _ = run_outputs(parts, without(read, list(read.ids)))
    expected = parts.task.explained_value(full, full) - parts.task.explained_value(empty, full)
    torch.testing.assert_close(sum(phi.values()), expected, rtol=0, atol=1e-6)
    assert float(expected.abs().max()) > 0.1  # not the trivial 0 = 0
