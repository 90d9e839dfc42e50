"""Text-to-image: a tiny conditional diffusion model trains with `fit`, learns (its denoising loss falls), generates
seeded images that survive a save/load, is scored by a classifier and a contrastive model, and a diffusers pipeline
directory generates behind the same command."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.errors import RecipeError
from tests.test_cli import run

T2I_RECIPE = {
    "inputs": [{"name": "caption", "modality": "text", "encoder": {"type": "text_bow"}},
               {"name": "image", "modality": "image", "options": {"size": 16}}],
    "target": {"task": "text_to_image", "options": {"block_channels": [16, 32], "patch": 2, "ema_decay": 0.9,
                                                     "steps": 4}},
    "model": {"dim": 16},
    "training": {"epochs": 3, "batch_size": 30, "lr": 0.003, "progress": False, "seed": 0},
}


@pytest.fixture(scope="module")
def t2i_model(caption_dir, tmp_path_factory):
    recipe = copy.deepcopy(T2I_RECIPE)
    recipe["data"] = {"train": str(caption_dir / "train.jsonl"), "test": str(caption_dir / "test.jsonl")}
    return pm.fit(recipe, out=tmp_path_factory.mktemp("t2i") / "model")


def test_training_lowers_the_denoising_loss(t2i_model, caption_dir, tmp_path):
    untrained = copy.deepcopy(T2I_RECIPE)
    untrained["training"]["epochs"] = 1
    untrained["training"]["lr"] = 1e-9
    untrained["data"] = {"train": str(caption_dir / "train.jsonl")}
    before = pm.fit(untrained, out=tmp_path / "u").evaluate(caption_dir / "test.jsonl")["denoising_loss"]
    after = t2i_model.metrics["test"]["denoising_loss"]
    assert after < 0.8 * before, (before, after)


def test_generation_is_seeded_and_survives_reloading(t2i_model):
    a = t2i_model.generate(["a red circle", "a blue square"], n=2, seed=3)
    assert len(a) == 4 and a[0].size == (16, 16) and a[0].mode == "RGB"
    again = pm.load(t2i_model.directory).generate(["a red circle", "a blue square"], n=2, seed=3)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, again))
    other = t2i_model.generate(["a red circle"], n=1, seed=4)[0]
    assert not np.array_equal(np.asarray(other), np.asarray(a[0]))
    unguided = t2i_model.generate(["a red circle"], n=1, seed=3, guidance=1.0)[0]
    assert not np.array_equal(np.asarray(unguided), np.asarray(a[0]))
    dpm = t2i_model.generate(["a red circle"], n=1, seed=3, sampler="dpm_solver")
    assert dpm[0].size == (16, 16)
    # the ancestral sampler draws fresh noise at every step: from the seed, not from torch's global generator
    torch.manual_seed(1)
    x = t2i_model.generate(["a red circle"], n=1, seed=5, sampler="ddpm")[0]
    torch.manual_seed(2)
    y = t2i_model.generate(["a red circle"], n=1, seed=5, sampler="ddpm")[0]
    assert np.array_equal(np.asarray(x), np.asarray(y))


def test_evaluate_scores_generated_images(t2i_model, caption_model, caption_dir, tmp_path):
    clf = pm.fit({"data": {"train": str(caption_dir / "train.jsonl")},
                  "inputs": [{"name": "image", "modality": "image", "options": {"size": 16}}],
                  "target": {"column": "shape"}, "model": {"dim": 16},
                  "training": {"epochs": 2, "progress": False}}, out=tmp_path / "clf")
    report = t2i_model.evaluate(caption_dir / "test.jsonl", classifier=clf.directory,
                                contrastive=caption_model.directory, limit=8, out=tmp_path / "eval",
                                sampler="dpm_solver")
    gen = report["generation"]
    assert gen["rows"] == 8 and (tmp_path / "eval" / "generated.png").is_file() and gen["sampler"] == "dpm_solver"
    c = gen["classifier"]
    assert 0 <= c["attribute_accuracy"] <= 1 and c["frechet_distance"] > 0 and "not Inception" in c["note"]
    # per-class accuracy and the confusions add up to the overall accuracy over the 8 rows
    assert sum(c["confusions"].values()) == round(8 * (1 - c["attribute_accuracy"]))
    assert all(" -> " in k for k in c["confusions"])
    assert set(c["per_class_accuracy"]) <= {"circle", "square", "triangle"}
    assert 0 <= gen["clip_score"] <= 100


def test_bad_image_size_is_a_recipe_error(caption_dir, tmp_path):
    recipe = copy.deepcopy(T2I_RECIPE)
    recipe["inputs"][1]["options"]["size"] = 18
    recipe["data"] = {"train": str(caption_dir / "train.jsonl")}
    with pytest.raises(RecipeError, match="must divide"):
        pm.fit(recipe, out=tmp_path / "m")


def test_generate_command_writes_a_grid(t2i_model, tmp_path):
    out = tmp_path / "grid.png"
    r = run("generate", str(t2i_model.directory), "a red circle", "a green triangle", "-n", "3", "--steps", "2",
            "--seed", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(out).size == (3 * 16, 2 * 16)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """A random Stable Diffusion pipeline with tiny parts, saved like a user's local checkout."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from polymodal.encoders.pretrained import shipped_models

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("sd")
    tok = AutoTokenizer.from_pretrained(shipped_models()["all-minilm-l6-v2"], model_max_length=16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                        eos_token_id=tok.sep_token_id, pad_token_id=0))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=16)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=DDIMScheduler(clip_sample=False, steps_offset=1), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(d, safe_serialization=True)
    return d


def test_a_local_diffusers_pipeline_generates_behind_the_same_command(tiny_pipeline, tmp_path):
    assert json.loads((tiny_pipeline / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    out = tmp_path / "grid.png"
    r = run("generate", str(tiny_pipeline), "a red circle", "-n", "2", "--steps", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    from PIL import Image

    grid = Image.open(out)
    assert grid.size[0] == 2 * grid.size[1]  # two square images side by side


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon"])
def test_min_snr_weighting_caps_the_weight_at_gamma(prediction):
    from polymodal.tasks.text_to_image import TextToImage, TextToImageConfig

    task = TextToImage(TextToImageConfig(snr_gamma=5.0, prediction=prediction))
    t = torch.tensor([0, 500, 999])
    alpha_bar = task._train_scheduler().alphas_cumprod[t].double()
    snr = alpha_bar / (1 - alpha_bar)  # ~1e4 (nearly clean), ~1, ~2e-9 (pure noise) under the cosine schedule
    w = task.snr_weight(t).double()
    if prediction == "epsilon":  # min(SNR, 5) / SNR: 1 below the cap, 5 / SNR above it
        expected = torch.tensor([5 / snr[0], 1.0, 1.0], dtype=torch.double)
    else:  # min(SNR, 5) / (SNR + 1)
        expected = torch.stack([5 / (snr[0] + 1), snr[1] / (snr[1] + 1), snr[2] / (snr[2] + 1)])
    assert snr[0] > 5 > snr[1] and torch.allclose(w, expected, rtol=1e-4)


def test_min_snr_loss_is_the_weighted_per_row_error():
    from polymodal.tasks.text_to_image import TextToImage, TextToImageConfig

    class Constant(torch.nn.Module):  # predicts zeros: the error is the target itself
        def forward(self, x, t, tokens, mask, pooled):
            return torch.zeros_like(x)

    plain = TextToImage(TextToImageConfig(prediction="epsilon"))
    weighted = TextToImage(TextToImageConfig(prediction="epsilon", snr_gamma=0.5))
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    args = (Constant(), x0, None, None, None)
    a = plain.loss_of(*args, generator=torch.Generator().manual_seed(0))
    b = weighted.loss_of(*args, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, 1000, (4,), generator=gen)
    per_row = noise.pow(2).flatten(1).mean(1)
    assert torch.allclose(a, per_row.mean()) and torch.allclose(b, (per_row * weighted.snr_weight(t)).mean())
    assert b < a  # with gamma 0.5 every level above SNR 0.5 is weighted down
