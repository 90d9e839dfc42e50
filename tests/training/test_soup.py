"""`training.soup`: the best epochs' weights kept, then a greedy soup of them chosen on validation."""
from __future__ import annotations

import numpy as np
import torch

import polymodal as pm
from polymodal.training.module import average_states


def test_average_states_averages_floating_weights_and_keeps_counters():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    out = average_states([a, b])
    assert out["w"].tolist() == [2.0, 4.0] and int(out["n"]) == 3 and out["n"].dtype == torch.int64


def test_fit_makes_a_greedy_soup_of_the_best_epochs_and_saves_it(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"txt": " ".join(rng.choice(["red", "blue", "green", "dark", "light"], 3)) + f" n{i % 5}"}
            for i in range(240)]
    for r in rows:
        r["y"] = "warm" if ("red" in r["txt"]) != ("dark" in r["txt"]) else "cold"
    recipe = {"inputs": [{"name": "txt", "modality": "text", "encoder": {"type": "text_bow"}}],
              "target": {"column": "y"}, "data": {"validation_fraction": 0.25},
              "training": {"epochs": 8, "patience": 8, "batch_size": 16, "progress": False, "soup": 4}}
    model = pm.fit(recipe, train=rows[:200], test=rows[200:], out=tmp_path / "m")
    soup = model.metrics["training"]["soup"]
    assert len(soup["tried"]) == 4 and soup["epochs"][0] == soup["tried"][0] == model.metrics["training"]["best_epoch"]
    assert set(soup["epochs"]) <= set(soup["tried"])
    assert soup["validation_accuracy"] >= soup["best_epoch_accuracy"]
    assert soup["validation_accuracy"] == model.metrics["validation"]["accuracy"]  # the network holds the soup
    assert "greedy soup of epochs" in (tmp_path / "m" / "train.log").read_text()
    reloaded = pm.load(tmp_path / "m")
    for row in rows[200:210]:
        assert reloaded.predict({"txt": row["txt"]})["probabilities"] == model.predict({"txt": row["txt"]})[
            "probabilities"]
