"""`training.steps_per_call`: several batches per Lightning call, one optimizer step each — the same training."""
from __future__ import annotations

import torch

import polymodal as pm
from polymodal.data import ChunkedBatchSampler, GroupedBatchSampler
from tests.conftest import image_text_recipe


def _fit(rows, steps: int, out):
    recipe = image_text_recipe("concat", dropout=0.3)
    recipe["training"].update({"epochs": 2, "steps_per_call": steps})
    return pm.fit(recipe, train=rows[:200], validation=rows[200:260], out=out)


def test_chunks_of_batches_train_the_same_weights(xor_rows, tmp_path):
    one, three = _fit(xor_rows, 1, tmp_path / "one"), _fit(xor_rows, 3, tmp_path / "three")
    a, b = one.parts.net.state_dict(), three.parts.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert one.metrics["validation"]["accuracy"] == three.metrics["validation"]["accuracy"]
    for model in ("one", "three"):  # 200 rows in batches of 32: 6 optimizer steps per epoch, 12 in all
        ckpt = torch.load(tmp_path / model / "checkpoints" / "last.ckpt", weights_only=False)
        assert ckpt["global_step"] == 12


def test_chunked_sampler_keeps_the_batches_and_their_order():
    inner = GroupedBatchSampler(list(range(50)), 8, shuffle=True, seed=3)
    expected = list(GroupedBatchSampler(list(range(50)), 8, shuffle=True, seed=3))
    chunks = list(ChunkedBatchSampler(inner, 4))
    assert [len(c) for c in chunks] == [4, 2] and len(ChunkedBatchSampler(inner, 4)) == 2
    assert [rows for c in chunks for rows in c] == expected
