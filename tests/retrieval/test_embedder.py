"""Embedders: a polymodal contrastive model and a Hugging Face CLIP from a local directory give unit vectors that
match the models' own outputs; zero-shot classification with prompts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.data import as_table
from polymodal.errors import PolymodalError
from polymodal.retrieval import HFDualEncoder, ModelEmbedder, open_embedder, zero_shot
from tests.conftest import draw_shape


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random CLIP (tiny towers) with a real WordPiece tokenizer, saved like a hub checkout."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from polymodal.encoders.pretrained import shipped_models

    d = tmp_path_factory.mktemp("tinyclip")
    tok = AutoTokenizer.from_pretrained(shipped_models()["all-minilm-l6-v2"])
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, eos_token_id=tok.sep_token_id,
                         pad_token_id=0, bos_token_id=tok.cls_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_hf_clip_embeddings_match_the_model_and_have_unit_length(tiny_clip, tmp_path):
    from transformers import AutoTokenizer, CLIPModel

    emb = open_embedder(str(tiny_clip))
    assert isinstance(emb, HFDualEncoder) and emb.inputs == {"text": "text", "image": "image"}
    texts = ["a red circle", "a blue square"]
    got = emb.embed_values("text", texts)
    model, tok = CLIPModel.from_pretrained(tiny_clip).eval(), AutoTokenizer.from_pretrained(tiny_clip)
    with torch.no_grad():
        ref = model.get_text_features(**tok(texts, padding=True, return_tensors="pt")).pooler_output
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    assert got.shape == (2, 16) and np.allclose(got, ref, atol=1e-5)
    paths = [str(draw_shape(tmp_path / f"{i}.png", "circle", "red", 32, seed=i)) for i in range(3)]
    img = emb.embed_values("image", paths)
    assert img.shape == (3, 16) and np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)


def test_zero_shot_predicts_the_closest_prompt(tiny_clip, tmp_path):
    rows = [{"image": str(draw_shape(tmp_path / f"z{i}.png", s, "red", 32, seed=i)), "shape": s}
            for i, s in enumerate(["circle", "square", "triangle", "circle"])]
    emb = open_embedder(str(tiny_clip))
    result = zero_shot(emb, as_table(rows), ["circle", "square", "triangle"], ["a {}", "a picture of a {}"],
                       label_column="shape")
    assert result["rows"] == 4 and result["input"] == "image"
    for pred in result["predictions"]:
        assert pred["label"] == max(pred["scores"], key=pred["scores"].get)
    assert 0 <= result["accuracy"] <= 1 and set(result["per_label_accuracy"]) == {"circle", "square", "triangle"}
    with pytest.raises(PolymodalError, match="no '\\{\\}'"):
        zero_shot(emb, as_table(rows), ["circle", "square"], ["a shape"])


def test_model_embedder_matches_the_evaluation_path(caption_model, caption_dir):
    emb = open_embedder(caption_model.directory)
    assert isinstance(emb, ModelEmbedder)
    vectors, rows = emb.embed_table(as_table(caption_dir / "test.jsonl"), "caption")
    assert vectors.shape == (60, 32) and rows == list(range(60))
    same = [i for i in range(60) if as_table(caption_dir / "test.jsonl").rows[i]["caption"] ==
            as_table(caption_dir / "test.jsonl").rows[0]["caption"]]
    assert np.allclose(vectors[same], vectors[0], atol=1e-6)  # one caption, one vector


def test_a_classifier_is_not_an_embedder(noise_text_model):
    with pytest.raises(PolymodalError, match="no joint embedding space"):
        open_embedder(noise_text_model.directory)
