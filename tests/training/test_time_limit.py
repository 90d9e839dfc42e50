"""`training.time_limit` (`--time-limit`) stops a long run on time and keeps the best weights so far; train.log
shows one line per epoch as it goes."""
from __future__ import annotations

import polymodal as pm


def test_training_stops_at_the_time_limit_and_logs_each_epoch(tmp_path):
    rows = [{"txt": f"{w} {i}", "y": w} for i in range(200) for w in ("red", "blue")]
    recipe = {"inputs": [{"name": "txt", "modality": "text", "encoder": {"type": "text_bow"}}],
              "target": {"column": "y"},
              "training": {"epochs": 10000, "patience": 10000, "batch_size": 8, "progress": False, "time_limit": 4}}
    model = pm.fit(recipe, train=rows, out=tmp_path / "m")
    t = model.metrics["training"]
    assert 1 <= t["epochs"] < 10000 and t["seconds"] < 30
    log = (tmp_path / "m" / "train.log").read_text().splitlines()
    assert log[0].startswith("training: up to 10000 epochs")
    assert any(line.startswith("epoch 1/10000 (") and "val_accuracy=" in line for line in log)
    assert log[-1].endswith("(time limit)")
    assert pm.load(tmp_path / "m").predict({"txt": "red 3"})["label"] in ("red", "blue")
