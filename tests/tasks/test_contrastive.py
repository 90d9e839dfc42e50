"""The contrastive task: its losses against a reference computation, duplicate-aware positives, training a joint
space that retrieves, and the recipe rules around it."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import polymodal as pm
from polymodal.errors import PolymodalError, RecipeError
from polymodal.tasks.contrastive import ContrastiveConfig, matches, pair_list, pair_loss
from tests.conftest import CAPTION_RECIPE


def test_clip_loss_equals_the_reference_symmetric_cross_entropy():
    g = torch.Generator().manual_seed(0)
    za = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    zb = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    idx = torch.arange(6)
    scale = torch.tensor(14.0)
    logits = scale * za @ zb.T
    ref = 0.5 * (F.cross_entropy(logits, idx) + F.cross_entropy(logits.T, idx))
    got = pair_loss(za, zb, matches(idx, idx, None), scale, torch.tensor(0.0), "clip")
    assert torch.allclose(got, ref, atol=1e-6)


def test_siglip_loss_is_low_for_aligned_pairs_and_high_for_shuffled():
    z = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    pos = matches(torch.arange(8), torch.arange(8), None)
    aligned = pair_loss(z, z, pos, torch.tensor(10.0), torch.tensor(-5.0), "siglip")
    shuffled = pair_loss(z, z.roll(1, 0), pos, torch.tensor(10.0), torch.tensor(-5.0), "siglip")
    assert aligned < 0.5 < shuffled


def test_rows_sharing_a_value_or_label_count_as_matches():
    a = torch.tensor([0, 0, 1, 2])  # rows 0 and 1 share their caption
    b = torch.tensor([0, 1, 2, 3])
    pos = matches(a, b, None)
    assert pos[0, 1] and pos[1, 0] and not pos[0, 2] and pos.diagonal().all()
    labelled = matches(a, b, torch.tensor([5, 6, 6, 7]))
    assert labelled[1, 2] and not labelled[0, 3]


def test_anchor_binds_each_input_to_the_anchor_and_all_takes_every_pair():
    names = ["audio", "image", "text"]
    assert pair_list(names, ContrastiveConfig(pairs="anchor", anchor="image")) == [("image", "audio"),
                                                                                    ("image", "text")]
    assert len(pair_list(names, ContrastiveConfig(pairs="all"))) == 3


def test_trained_space_retrieves_by_class_and_reloads(caption_model, caption_dir):
    test = caption_model.metrics["test"]
    for direction in ("caption->image", "image->caption"):
        assert test[direction]["class_recall@1"] >= 0.9, test[direction]
    assert test["caption->image"]["queries"] <= 9  # distinct captions are the queries
    again = pm.load(caption_model.directory).evaluate(caption_dir / "test.jsonl")
    assert again["caption->image"] == test["caption->image"]


def test_without_labels_reports_instance_recall_only(caption_dir, tmp_path):
    recipe = copy.deepcopy(CAPTION_RECIPE)
    recipe["target"] = {"task": "contrastive"}
    recipe["training"]["epochs"] = 3
    recipe["data"] = {"train": str(caption_dir / "train.jsonl")}
    model = pm.fit(recipe, out=tmp_path / "m")
    report = model.evaluate(caption_dir / "test.jsonl")
    assert "recall@1" in report["image->caption"] and "class_recall@1" not in report["image->caption"]
    assert 0 <= report["recall_at_1"] <= 1


def test_a_classifier_still_needs_its_target_column():
    with pytest.raises(RecipeError, match="target"):
        pm.config.build_recipe({"inputs": [{"name": "x"}], "target": {"task": "classification"}})


def test_unknown_anchor_is_a_recipe_error(caption_dir, tmp_path):
    recipe = copy.deepcopy(CAPTION_RECIPE)
    recipe["target"]["options"] = {"pairs": "anchor", "anchor": "audio"}
    recipe["data"] = {"train": str(caption_dir / "train.jsonl")}
    with pytest.raises(RecipeError, match="anchor 'audio'"):
        pm.fit(recipe, out=tmp_path / "m")


def test_explain_and_predictive_options_are_refused_with_the_reason(caption_model, caption_dir):
    with pytest.raises(PolymodalError, match="explanations are for predictive tasks"):
        caption_model.explain(caption_dir / "test.jsonl", index=0)
    assert caption_model.evaluation_options() == []
    with pytest.raises(PolymodalError, match="contrastive model's evaluation takes no robustness"):
        caption_model.evaluate(caption_dir / "test.jsonl", robustness=True)
    assert "recall_at_1" in caption_model.evaluate(caption_dir / "test.jsonl", robustness=False)  # off: no request
