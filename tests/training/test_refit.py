"""`training.refit`: after the choices made on validation, the model is trained again on training + validation rows
for the chosen epochs (the soup's epochs averaged again) and that model is kept."""
from __future__ import annotations

import numpy as np
import pytest

import polymodal as pm
from polymodal.errors import RecipeError


def toy_rows(n: int = 240) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = [{"txt": " ".join(rng.choice(["red", "blue", "green", "dark", "light"], 3)) + f" n{i % 5}"}
            for i in range(n)]
    for r in rows:
        r["y"] = "warm" if ("red" in r["txt"]) != ("dark" in r["txt"]) else "cold"
    return rows


def recipe(**training) -> dict:
    return {"inputs": [{"name": "txt", "modality": "text", "encoder": {"type": "text_bow"}}],
            "target": {"column": "y"}, "data": {"validation_fraction": 0.25},
            "training": {"epochs": 8, "patience": 3, "batch_size": 16, "progress": False, "refit": True, **training}}


def test_refit_trains_on_every_row_for_the_chosen_epochs_and_keeps_that_model(tmp_path):
    rows = toy_rows()
    model = pm.fit(recipe(), train=rows[:200], test=rows[200:], out=tmp_path / "m")
    t = model.metrics["training"]
    assert t["train_rows"] == 150 and t["validation_rows"] == 50
    assert t["refit"]["rows"] == 200 and t["refit"]["epochs"] == t["best_epoch"] + 1
    assert "averaged_epochs" not in t["refit"]
    log = (tmp_path / "m" / "train.log").read_text()
    assert f"refit: {t['best_epoch'] + 1} epochs on the training and validation rows (200 rows)" in log
    reloaded = pm.load(tmp_path / "m")  # the saved weights are the refit model's: its test score is reproduced
    assert reloaded.evaluate(rows[200:])["accuracy"] == model.metrics["test"]["accuracy"]
    plain = pm.fit(recipe(refit=False), train=rows[:200], test=rows[200:], out=tmp_path / "p")
    assert plain.metrics["validation"] == model.metrics["validation"]  # validation scores the first model
    assert plain.predict(rows[200:205]) != model.predict(rows[200:205])  # ... and the kept model is another one


def test_refit_averages_the_epochs_the_soup_chose(tmp_path):
    rows = toy_rows()
    model = pm.fit(recipe(soup=4, patience=8), train=rows[:200], test=rows[200:], out=tmp_path / "m")
    t = model.metrics["training"]
    if len(t["soup"]["epochs"]) > 1:
        assert t["refit"]["averaged_epochs"] == sorted(t["soup"]["epochs"])
        # trained up to the soup's last epoch, which may come after the best one
        assert t["refit"]["epochs"] == max(t["best_epoch"], *t["soup"]["epochs"]) + 1
    else:
        pytest.fail(f"the soup kept one epoch ({t['soup']}): the fixture no longer exercises averaging")


def test_refit_needs_validation_carved_from_train(tmp_path):
    rows = toy_rows(80)
    with pytest.raises(RecipeError, match="training.refit"):
        pm.fit(recipe(), train=rows[:60], validation=rows[60:], out=tmp_path / "m")


def test_refit_is_skipped_when_the_time_limit_is_spent(tmp_path):
    rows = toy_rows(120)
    model = pm.fit(recipe(time_limit=0.01), train=rows, out=tmp_path / "m")
    assert "time limit is spent" in model.metrics["training"]["refit"]["skipped"]
    assert "training.refit skipped" in (tmp_path / "m" / "train.log").read_text()
