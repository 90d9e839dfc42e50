"""The recipe schema: errors name the field; overrides reach any field; quick flags and recipes are one schema."""
from __future__ import annotations

import pytest

from polymodal.config import build_recipe, parse_override
from polymodal.errors import RecipeError
from polymodal.model import validate_components

BASE = {"inputs": [{"name": "img", "modality": "image"}, {"name": "txt"}], "target": {"column": "y"}}


def test_defaults_and_overrides_by_input_name():
    r = build_recipe(BASE, ["training.epochs=3", "model.fusion.method=gated", "inputs.img.options.size=32",
                            "inputs.txt.encoder={type: text_bow}"])
    assert r.training.epochs == 3 and r.model.fusion["method"] == "gated"
    assert r.inputs[0].options == {"size": 32} and r.inputs[1].encoder == {"type": "text_bow"}
    assert r.inputs[1].source == "txt" and r.training.batch_size == 64


def test_unknown_and_invalid_fields_are_named():
    with pytest.raises(RecipeError, match=r"field `training.epochz`: unknown field"):
        build_recipe(BASE, ["training.epochz=3"])
    with pytest.raises(RecipeError, match=r"field `training.epochs`.*greater than or equal to 0"):
        build_recipe(BASE, ["training.epochs=-1"])
    with pytest.raises(RecipeError, match=r"field `target`: Field required"):
        build_recipe({"inputs": BASE["inputs"]})
    with pytest.raises(RecipeError, match="no list item named 'nope'"):
        build_recipe(BASE, ["inputs.nope.options.size=3"])


def test_component_fields_are_validated_by_their_registry():
    with pytest.raises(RecipeError, match=r"field `model.fusion.method`: unknown fusion 'magic'"):
        validate_components(build_recipe(BASE, ["model.fusion.method=magic"]))
    with pytest.raises(RecipeError, match=r"field `model.fusion.rank`: unknown field"):
        validate_components(build_recipe(BASE, ["model.fusion.rank=4"]))  # rank belongs to lowrank
    validate_components(build_recipe(BASE, ["model.fusion={method: lowrank, rank: 4}"]))
    with pytest.raises(RecipeError, match=r"field `inputs.img.options.sise`: unknown field"):
        validate_components(build_recipe(BASE, ["inputs.img.options.sise=3"]))
    with pytest.raises(RecipeError, match=r"field `inputs.img.encoder.type`: unknown encoder 'resnet9000'"):
        validate_components(build_recipe(BASE, ["inputs.img.encoder.type=resnet9000"]))
    with pytest.raises(RecipeError, match=r"unknown modality 'smell'"):
        validate_components(build_recipe(BASE, ["inputs.img.modality=smell"]))


def test_recipe_file_paths_are_relative_to_the_recipe(tmp_path):
    (tmp_path / "r.yaml").write_text("data: {train: t.jsonl}\ninputs: [{name: a}]\ntarget: {column: y}\n")
    r = build_recipe(tmp_path / "r.yaml")
    assert r.data.train == str(tmp_path / "t.jsonl")
    (tmp_path / "bad.yaml").write_text("inputs: [\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        build_recipe(tmp_path / "bad.yaml")


def test_parse_override():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("x=null") == (["x"], None)
    with pytest.raises(RecipeError):
        parse_override("novalue")
