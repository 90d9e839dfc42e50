"""Feature attributions with captum's Integrated Gradients, on each input's own tensor (pixels, log-mel frames,
video frames, signal steps) and on token embeddings for text; and a second-order interaction between two inputs
(how one input's attribution changes with the other, as MultiViz does)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..model import Parts
from ..types import Batch, ModalityBatch


def _repeat_batch(batch: Batch, n: int, override: dict[str, Tensor]) -> Batch:
    """A one-row batch repeated n times, with some inputs' data replaced by n-row tensors."""
    out = {}
    for name, mb in batch.items():
        if name in override:
            data = override[name]
            mask = None if mb.mask is None else mb.mask[mb.index].expand(data.shape[0], -1)
            out[name] = ModalityBatch(data, mask, mb.present.expand(data.shape[0]),
                                      torch.arange(data.shape[0]))
        else:
            out[name] = ModalityBatch(mb.data, mb.mask, mb.present.expand(n), mb.index.expand(n))
    return out


def embedding_layer(parts: Parts, name: str) -> nn.Module | None:
    enc = parts.net.encoders[name].encoder
    if hasattr(enc, "embed"):
        return enc.embed
    model = getattr(enc, "model", None)
    return model.get_input_embeddings() if model is not None and hasattr(model, "get_input_embeddings") else None


def integrated_gradients(parts: Parts, batch: Batch, target: int | None, n_steps: int = 32) -> dict[str, Tensor]:
    """{input: attribution shaped like its value} for one row (float inputs: per element; text: per token)."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    net = parts.net.eval()
    present = {n: mb for n, mb in batch.items() if bool(mb.present[0])}
    floats = [n for n, mb in present.items() if mb.data.is_floating_point()]
    result: dict[str, Tensor] = {}

    if floats:
        def forward(*datas: Tensor) -> Tensor:
            return net(_repeat_batch(batch, datas[0].shape[0], dict(zip(floats, datas))))

        inputs = tuple(batch[n].data[batch[n].index[:1]] for n in floats)
        baselines = tuple(parts.modalities[n].attribution_baseline(x) for n, x in zip(floats, inputs))
        attrs = IntegratedGradients(forward).attribute(inputs, baselines=baselines, target=target, n_steps=n_steps)
        result.update({n: a[0].detach() for n, a in zip(floats, attrs)})
    for name in [n for n in present if n not in floats]:
        layer = embedding_layer(parts, name)
        if layer is None:
            continue
        ids = batch[name].data[batch[name].index[:1]]

        def forward_ids(x: Tensor, name=name) -> Tensor:
            return net(_repeat_batch(batch, x.shape[0], {name: x}))

        attr = LayerIntegratedGradients(forward_ids, layer).attribute(ids, baselines=torch.zeros_like(ids),
                                                                       target=target, n_steps=n_steps)
        result[name] = attr[0].sum(-1).detach()  # per token
    return result


def interaction(parts: Parts, batch: Batch, a: str, b: str, target: int | None) -> Tensor | None:
    """Second-order interaction for float inputs a and b: d/d(x_b) of sum(x_a * d score/d x_a), per element of b
    (MultiViz's gradient of one input's attribution with respect to another). None when either is not float."""
    if not (batch[a].data.is_floating_point() and batch[b].data.is_floating_point()):
        return None
    xa = batch[a].data[batch[a].index[:1]].clone().requires_grad_(True)
    xb = batch[b].data[batch[b].index[:1]].clone().requires_grad_(True)
    out = parts.net(_repeat_batch(batch, 1, {a: xa, b: xb}))
    score = out[0, target] if target is not None else out[0].sum()
    (ga,) = torch.autograd.grad(score, xa, create_graph=True)
    (gab,) = torch.autograd.grad((ga * xa).sum(), xb, allow_unused=True)
    return torch.zeros_like(xb[0]) if gab is None else gab[0].detach()  # None: no path from b (additive model)
