"""Every fusion trains on tiny data of all five modalities, with cells missing; resume continues a run."""
from __future__ import annotations

import copy

import pytest

import polymodal as pm
from polymodal.fusion import FUSIONS
from tests.conftest import FIVE_RECIPE


@pytest.mark.parametrize("method", FUSIONS.names())
def test_every_fusion_trains_on_five_modalities(five_modality_dir, method, tmp_path):
    recipe = copy.deepcopy(FIVE_RECIPE)
    recipe["data"] = {"train": str(five_modality_dir / "train.jsonl"), "validation_fraction": 0.25}
    recipe["model"]["fusion"] = {"method": method, "hidden": 32, **({"factor_dim": 3} if method == "tensor" else {})}
    model = pm.fit(recipe, out=tmp_path / "m")
    assert model.inputs == {"text": "text", "image": "image", "audio": "audio", "video": "video", "signal": "signal"}
    loss = model.metrics["validation"]["loss"]
    assert loss == loss and loss < 10  # finite
    pred = model.predict({"audio": str(five_modality_dir / "a0.wav")})  # one modality alone
    assert pred["label"] in ("red", "blue")


def test_resume_continues_from_the_last_checkpoint(five_modality_dir, tmp_path):
    recipe = copy.deepcopy(FIVE_RECIPE)
    recipe["data"] = {"train": str(five_modality_dir / "train.jsonl"), "validation_fraction": 0.25}
    pm.fit(recipe, out=tmp_path / "m")
    assert (tmp_path / "m" / "checkpoints" / "last.ckpt").is_file()
    model = pm.fit(recipe, out=tmp_path / "m", resume=True, epochs=2)
    assert model.metrics["training"]["epochs"] == 2
    assert pm.load(tmp_path / "m").metrics["training"]["epochs"] == 2
