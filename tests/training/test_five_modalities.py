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


def test_image_augment_trains_images_and_clips_and_is_refused_twice(five_modality_dir, tmp_path):
    """`training.image_augment` on a model with an image and a video input: it trains (the same seed, different
    weights from a run without it, since the image and the clips it saw differ), the saved recipe keeps it; a
    contrastive recipe that also sets the task's own image_augment is refused by field."""
    from safetensors.torch import load_file

    from polymodal.errors import RecipeError

    recipe = copy.deepcopy(FIVE_RECIPE)
    recipe["data"] = {"train": str(five_modality_dir / "train.jsonl"), "validation_fraction": 0.25}
    pm.fit(recipe, out=tmp_path / "plain")
    recipe["training"]["image_augment"] = {"crop": 0.6, "flip": True, "jitter": 0.2}
    model = pm.fit(recipe, out=tmp_path / "aug")
    assert model.parts.recipe.training.image_augment.crop == 0.6
    plain, aug = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("plain", "aug"))
    changed = {k.split(".")[1] for k in plain if k.startswith("encoders.") and not (plain[k] == aug[k]).all()}
    assert {"image", "video"} <= changed
    pair = {"data": recipe["data"], "inputs": recipe["inputs"][:2], "model": {"dim": 16},
            "target": {"task": "contrastive", "options": {"image_augment": {"flip": True}}},
            "training": {"epochs": 1, "image_augment": {"flip": True}, "progress": False}}
    with pytest.raises(RecipeError, match="training.image_augment.*target.options.image_augment.*set one"):
        pm.fit(pair, out=tmp_path / "both")
