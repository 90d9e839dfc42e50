"""Table columns as inputs: a number and a category beside text; missing cells are missing inputs; unseen
categories share the unknown id; the model reloads with the learnt statistics and vocabulary."""
from __future__ import annotations

import numpy as np
import pytest

import polymodal as pm
from polymodal.data import as_table
from polymodal.errors import DataError


def rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        price = float(rng.uniform(0, 100))
        kind = str(rng.choice(["book", "toy", "food"]))
        label = "dear" if price + (40 if kind == "toy" else 0) > 60 else "cheap"
        out.append({"price": price if rng.random() > 0.05 else None, "kind": kind, "note": "an item", "y": label})
    return out


RECIPE = {"inputs": [{"name": "price", "modality": "number"}, {"name": "kind", "modality": "category"},
                     {"name": "note", "modality": "text", "encoder": {"type": "text_bow"}}],
          "target": {"column": "y"}, "model": {"dim": 16},
          "training": {"epochs": 40, "batch_size": 32, "lr": 0.01, "patience": 40, "progress": False}}


def test_numbers_and_categories_learn_and_reload(tmp_path):
    model = pm.fit(RECIPE, train=rows(400, 0), test=rows(150, 1), out=tmp_path / "m")
    assert model.metrics["test"]["accuracy"] > 0.9, model.metrics["test"]
    price = model.parts.modalities["price"]
    assert 40 < price.mean < 60 and 20 < price.std < 40
    assert model.parts.modalities["kind"].vocab == ["book", "food", "toy"]
    sample = {"price": 55.0, "kind": "toy", "note": "an item"}
    reloaded = pm.load(tmp_path / "m")
    assert reloaded.predict(sample) == model.predict(sample)
    assert model.predict({"price": 55.0, "kind": "car", "note": None})["label"] in ("dear", "cheap")  # unseen
    assert model.predict({"kind": "toy"})["label"] in ("dear", "cheap")  # price missing
    assert set(model.explain(sample)["shapley"]) == {"price", "kind", "note"}


def test_a_cell_that_is_not_a_number_names_the_row_and_column(tmp_path):
    bad = rows(40, 2)
    bad[7]["price"] = "cheap-ish"
    with pytest.raises(DataError, match=r"row 8.*price.*not a number"):
        pm.fit(RECIPE, train=as_table(bad), out=tmp_path / "m")
