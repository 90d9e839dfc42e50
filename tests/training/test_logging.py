"""Training values are logged on the logger's cadence (every 10 steps), not on every step."""
from __future__ import annotations

import csv

import pandas as pd

import polymodal as pm


def test_train_loss_logged_every_ten_steps(xor_rows, tmp_path):
    df = pd.DataFrame(xor_rows[:240])  # 216 training rows after the validation split: 14 steps of 16 per epoch
    pm.fit(df, label="label", inputs={"txt": "text", "img": "image"}, fusion="concat", epochs=2, batch_size=16,
           progress=False, out=tmp_path / "m", overrides=["inputs.img.options.size=16",
                                                          "inputs.img.encoder.channels=[8]", "model.dim=16"])
    rows = list(csv.DictReader(open(next((tmp_path / "m" / "logs").rglob("metrics.csv")))))
    steps = sorted(int(r["step"]) for r in rows if r.get("train_loss"))
    assert steps == [9, 19], steps  # 28 steps in 2 epochs; the logger writes after steps 9 and 19
    assert all(float(r["train_loss"]) > 0 for r in rows if r.get("train_loss"))
    assert any(r.get("val_accuracy") for r in rows)
