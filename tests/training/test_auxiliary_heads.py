"""Modality dropout hides inputs from the fusion only: each auxiliary head trains on every value its input has.
Hiding an encoded input is the same as encoding it absent."""
from __future__ import annotations

from dataclasses import replace

import torch

import polymodal as pm
from polymodal.config import build_recipe
from polymodal.data import Collator
from polymodal.training.module import LitMultimodal
from tests.conftest import image_text_recipe


def test_hide_equals_encoding_the_input_as_absent(xor_rows):
    recipe = image_text_recipe("concat")
    recipe["training"]["epochs"] = 1
    model = pm.fit(recipe, train=xor_rows[:64], validation=xor_rows[64:96])
    net = model.parts.net.eval()
    batch, _ = Collator(model._read(xor_rows[100:110], require_target=False), model.parts.modalities, None)(
        list(range(10)))
    hidden = torch.tensor([True, False] * 5)
    with torch.no_grad():
        direct = net.encoders["img"](replace(batch["img"], present=hidden))
        after = net.encoders["img"].hide(net.encoders["img"](batch["img"]), hidden)
    for field in ("tokens", "mask", "pooled", "present"):
        assert torch.equal(getattr(direct, field), getattr(after, field)), field


def test_auxiliary_heads_see_every_present_row_under_modality_dropout(xor_rows):
    recipe = image_text_recipe("late", 0.9)
    recipe["model"]["unimodal_heads"] = 1.0
    recipe["training"]["epochs"] = 1
    model = pm.fit(recipe, train=xor_rows[:64], validation=xor_rows[64:96])
    parts = model.parts
    seen: dict[str, list[int]] = {"img": [], "txt": []}
    for name, head in parts.net.unimodal_heads.items():
        head.register_forward_hook(lambda m, args, out, name=name: seen[name].append(args[0].shape[0]))
    fused_rows = []
    parts.net.fusion.register_forward_hook(
        lambda m, args, out: fused_rows.append({n: int(e.present.sum()) for n, e in args[0].items()}))
    read = model._read(xor_rows[:32], require_target=True)
    batch, target = Collator(read, parts.modalities, parts.task)(list(range(32)))
    module = LitMultimodal(parts.net.train(), parts.task, build_recipe(recipe).training, 10, 1.0)
    loss = module.training_step((batch, target), 0)
    assert torch.isfinite(loss)
    assert seen == {"img": [32], "txt": [32]}  # every row, although dropout 0.9 hid most of them from the fusion
    assert fused_rows[0]["img"] < 32 and fused_rows[0]["txt"] < 32
    assert all(fused_rows[0][n] + fused_rows[0][m] >= 32 for n, m in [("img", "txt")])  # each row keeps one input
