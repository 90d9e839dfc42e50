"""The fusion zoo: every method handles any subset of inputs; methods that claim interactions learn XOR."""
from __future__ import annotations

import pytest
import torch

import polymodal as pm
from polymodal.fusion import FUSIONS
from polymodal.types import Encoded

INTERACTION_METHODS = [name for name, cls in FUSIONS.items() if cls.models_interactions]


def encoded(b: int, t: int, d: int, present: list[bool]) -> Encoded:
    p = torch.tensor(present)
    return Encoded(torch.randn(b, t, d), torch.ones(b, t, dtype=torch.bool), torch.randn(b, d), p)


@pytest.mark.parametrize("method", FUSIONS.names())
def test_every_fusion_handles_missing_inputs_and_backpropagates(method):
    cls = FUSIONS.get(method)
    fusion = cls(cls.Config(method=method, hidden=16), ["a", "b", "c"], 8)
    inputs = {"a": encoded(4, 3, 8, [True, False, True, False]), "b": encoded(4, 5, 8, [True, True, False, False]),
              "c": encoded(4, 2, 8, [True, True, True, False])}
    inputs["b"].mask[:, 3:] = False
    out = fusion(inputs)
    assert out.pooled.shape == (4, fusion.out_dim)
    assert torch.isfinite(out.pooled).all()
    out.pooled.sum().backward()
    grads = [p.grad for p in fusion.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_tensor_fusion_refuses_an_intractable_tensor():
    cls = FUSIONS.get("tensor")
    from polymodal.errors import RecipeError

    with pytest.raises(RecipeError, match="factor_dim"):
        cls(cls.Config(method="tensor", factor_dim=32), list("abcde"), 8)


def _fit_xor(rows, fusion: str | None, inputs: dict, epochs: int = 25):
    recipe = {
        "inputs": [{"name": n, "modality": m, **({"options": {"size": 16}, "encoder": {"channels": [8, 16]}}
                                                if m == "image" else {"encoder": {"type": "text_bow"}})}
                   for n, m in inputs.items()],
        "target": {"column": "label"},
        "model": {"dim": 32, "fusion": {"method": fusion or "concat", "hidden": 64, "dropout": 0.0}},
        "training": {"epochs": epochs, "batch_size": 32, "lr": 0.005, "patience": 25, "progress": False,
                     "group_by": None},
    }
    return pm.fit(recipe, train=rows[:320], validation=rows[320:400], test=rows[400:])


@pytest.mark.parametrize("method", INTERACTION_METHODS)
def test_interaction_fusions_learn_xor(xor_rows, method):
    model = _fit_xor(xor_rows, method, {"img": "image", "txt": "text"})
    assert model.metrics["test"]["accuracy"] > 0.9, model.metrics["test"]


def test_unimodal_models_stay_near_chance_on_xor(xor_rows):
    for inputs in ({"img": "image"}, {"txt": "text"}):
        acc = _fit_xor(xor_rows, None, inputs, epochs=10).metrics["test"]["accuracy"]
        assert 0.3 < acc < 0.7, (inputs, acc)


@pytest.mark.parametrize("method", [name for name, cls in FUSIONS.items() if not cls.models_interactions])
def test_additive_fusions_cannot_learn_xor(xor_rows, method):
    acc = _fit_xor(xor_rows, method, {"img": "image", "txt": "text"}, epochs=15).metrics["test"]["accuracy"]
    assert acc < 0.75
