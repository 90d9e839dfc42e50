"""The EMA callback: the average follows the weights at the configured rate and copies integer buffers."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from polymodal.training.module import EMAWeights


def test_ema_moves_a_fraction_of_the_way_each_step():
    net = torch.nn.Linear(1, 1, bias=False)
    net.register_buffer("count", torch.tensor(0))
    module = SimpleNamespace(net=net)
    ema = EMAWeights(0.75)
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.on_train_batch_end(None, module, None, None, 0)  # first step: a copy
        net.weight.fill_(5.0)
        net.count.fill_(3)
        ema.on_train_batch_end(None, module, None, None, 1)
    assert torch.allclose(ema.state["weight"], torch.tensor([[2.0]]))  # 1 + 0.25 * (5 - 1)
    assert int(ema.state["count"]) == 3
    assert float(net.weight) == 5.0  # the live weights are untouched
    back = EMAWeights(0.0)
    back.load_state_dict(ema.state_dict())
    assert back.decay == 0.75 and torch.equal(back.state["weight"], ema.state["weight"])
