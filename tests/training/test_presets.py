"""Presets: the encoders of inputs whose recipe names none. fast keeps the modalities' own defaults; balanced puts
images through the frozen ImageNet efficientnet (at its resolution); an encoder the recipe names is kept."""
from __future__ import annotations

import pytest

from polymodal.config import build_recipe
from polymodal.data import as_table
from polymodal.errors import RecipeError
from polymodal.training.prepare import resolve_recipe
from tests.conftest import draw_shape


def recipe(preset: str | None, image_encoder: dict | None = None) -> dict:
    r = {"inputs": [{"name": "img", "modality": "image", "encoder": image_encoder or {}},
                    {"name": "txt", "modality": "text"}],
         "target": {"column": "y"}, "training": {"progress": False}}
    if preset:
        r["model"] = {"preset": preset}
    return r


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("preset")
    return as_table([{"img": str(draw_shape(d / f"{i}.png", "circle", "red")), "txt": "a b", "y": "ab"[i % 2]}
                     for i in range(4)])


def encoders(preset: str | None, table, image_encoder: dict | None = None) -> dict[str, dict]:
    resolved = resolve_recipe(build_recipe(recipe(preset, image_encoder)), table)
    return {i.name: (i.encoder, i.options) for i in resolved.inputs}


def test_fast_is_the_default_and_keeps_the_modality_defaults(table):
    enc = encoders(None, table)
    assert enc["img"][0]["type"] == "image_cnn" and enc["txt"][0]["type"] == "text_transformer"


def test_balanced_puts_images_through_efficientnet_at_its_resolution(table):
    enc = encoders("balanced", table)
    assert enc["img"][0]["type"] == "efficientnet" and enc["img"][0]["freeze"] is True
    assert enc["img"][1]["size"] == 224
    assert enc["txt"][0]["type"] == "text_transformer"


def test_an_encoder_the_recipe_names_wins_over_the_preset(table):
    enc = encoders("best", table, {"type": "image_cnn"})
    assert enc["img"][0]["type"] == "image_cnn"
    assert enc["txt"][0]["type"] == "pretrained"


def test_an_unknown_preset_names_the_field():
    with pytest.raises(RecipeError, match="model.preset"):
        build_recipe(recipe("huge"))
