"""The Python API: pm.fit on a DataFrame with label/inputs/fusion; regression and multilabel tasks."""
from __future__ import annotations

import numpy as np
import pandas as pd

import polymodal as pm


def test_fit_dataframe_with_inputs_and_fusion(xor_rows, tmp_path):
    df = pd.DataFrame(xor_rows)
    model = pm.fit(df.iloc[:320], label="label", inputs={"txt": "text", "img": "image"}, fusion="tensor",
                   epochs=25, lr=0.005, batch_size=32, progress=False, test=df.iloc[400:],
                   overrides=["inputs.img.options.size=16", "inputs.img.encoder.channels=[8, 16]",
                              "inputs.txt.encoder.type=text_bow", "model.dim=32", "training.patience=25"])
    assert model.metrics["test"]["accuracy"] > 0.9
    assert model.evaluate(df.iloc[400:])["accuracy"] == model.metrics["test"]["accuracy"]
    model.save(tmp_path / "saved")
    assert pm.load(tmp_path / "saved").info()["fusion"]["method"] == "tensor"


def test_regression_from_signals_learns_a_linear_target():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(300):
        x = rng.standard_normal((12, 2)).astype(float)
        rows.append({"sig": x.tolist(), "y": float(x[:, 0].mean() * 3 + 1 + 0.05 * rng.standard_normal())})
    model = pm.fit(rows[:240], label="y", inputs=["sig"], epochs=30, progress=False, test=rows[240:],
                   overrides=["inputs.sig.encoder.channels=[16]", "model.dim=16", "training.patience=30"])
    assert model.parts.recipe.target.task == "regression" and model.inputs == {"sig": "signal"}
    assert model.metrics["test"]["r2"] > 0.8, model.metrics["test"]
    assert isinstance(model.predict({"sig": rows[0]["sig"]})["value"], float)


def test_multilabel_from_text():
    words = ["red", "green", "blue"]
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(300):
        labels = [w for w in words if rng.random() < 0.5]
        filler = rng.choice(["a", "the", "some"])
        rows.append({"t": " ".join([filler] + labels) or filler, "tags": labels or ["none"]})
    model = pm.fit(rows[:240], label="tags", inputs={"t": "text"}, epochs=20, batch_size=16, progress=False,
                   test=rows[240:],
                   overrides=["inputs.t.encoder.type=text_bow", "model.dim=16", "training.patience=20"])
    assert model.parts.recipe.target.task == "multilabel"
    assert model.metrics["test"]["f1_macro"] > 0.9, model.metrics["test"]
    assert set(model.predict({"t": "the red blue"})["labels"]) == {"red", "blue"}
