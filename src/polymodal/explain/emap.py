"""EMAP (Hessel & Lee 2020, "Does my multimodal model learn cross-modal interactions?"): project the model onto
its best additive approximation, f(a_i, b_i) ~ mean_j f(a_i, b_j) + mean_j f(a_j, b_i) - mean_jk f(a_j, b_k), and
compare its score with the full model's. A large gap means the accuracy needs cross-modal interactions."""
from __future__ import annotations

import torch
from torch import Tensor

from ..data import Collator, ReadTable
from ..errors import PolymodalError
from ..model import Parts
from ..types import Encoded


@torch.inference_mode()
def _encode_rows(parts: Parts, data: ReadTable, batch_size: int = 256) -> dict[str, Encoded]:
    collate = Collator(data, parts.modalities, None)
    chunks = []
    for start in range(0, len(data), batch_size):
        batch, _ = collate(list(range(start, min(len(data), start + batch_size))))
        chunks.append(parts.net.encode(batch))
    names = list(chunks[0])
    out = {}
    for n in names:
        width = max(c[n].tokens.shape[1] for c in chunks)

        def pad(x: Tensor, width: int = width) -> Tensor:
            return torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1])) if x.dim() == 3 else \
                torch.nn.functional.pad(x, (0, width - x.shape[1]))

        out[n] = Encoded(torch.cat([pad(c[n].tokens) for c in chunks]), torch.cat([pad(c[n].mask) for c in chunks]),
                         torch.cat([c[n].pooled for c in chunks]), torch.cat([c[n].present for c in chunks]))
    return out


def _take(e: Encoded, idx: Tensor) -> Encoded:
    return Encoded(e.tokens[idx], e.mask[idx], e.pooled[idx], e.present[idx])


@torch.inference_mode()
def emap(parts: Parts, data: ReadTable, max_rows: int = 300) -> dict:
    """Score of the full model and of its additive projection (two inputs), on at most max_rows rows."""
    names = list(data.ids)
    if len(names) != 2:
        raise PolymodalError(f"EMAP is defined for two inputs; this model has {len(names)}")
    parts.net.eval()
    n = min(len(data), max_rows)
    sub = data.take(list(range(n)))
    enc = _encode_rows(parts, sub)
    a, b = names
    rows = []
    for i in range(n):  # row i's value of a with every row's value of b
        rows.append(parts.net.head(parts.net.fuse({a: _take(enc[a], torch.full((n,), i, dtype=torch.long)),
                                                   b: _take(enc[b], torch.arange(n))}).pooled).float())
    logits = torch.stack(rows)  # [i (a), j (b), out]
    full = logits.diagonal(dim1=0, dim2=1).movedim(-1, 0)
    additive = logits.mean(1) + logits.mean(0) - logits.mean((0, 1))
    target = parts.task.collate(sub.targets)
    full_metrics = parts.task.report(full, target)
    add_metrics = parts.task.report(additive, target)
    metric = parts.task.monitor
    return {"rows": n, "metric": metric, "full": full_metrics[metric], "additive": add_metrics[metric],
            "gap": full_metrics[metric] - add_metrics[metric]}
