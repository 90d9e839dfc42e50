"""Cross-modal retrieval metrics of a joint embedding space: recall@1/5/10 in both directions of every pair, median
rank, and class-level recall when the table has labels. Queries and gallery are the distinct values, so a caption
shared by many images is one query whose matches are all of those images."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from ..data import ReadTable
from ..data.batching import collate_input
from ..model import Parts

KS = (1, 5, 10)


@torch.inference_mode()
def embed_items(parts: Parts, name: str, items: list, batch_size: int = 256) -> Tensor:
    """Normalised embeddings [len(items), E] of one input's decoded values."""
    net = parts.net
    net.eval()
    modality = parts.modalities[name]
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(items), batch_size):
        ids = list(range(start, min(len(items), start + batch_size)))
        batch = collate_input(modality, ids, items)
        out.append(net.embed({name: batch.to(device)})[name].float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def ranks(sims: Tensor, truth: list[set[int]]) -> np.ndarray:
    """1-based rank of the best-ranked true item of each query (ties broken in the query's favour)."""
    out = np.empty(len(truth), dtype=np.int64)
    for q, true in enumerate(truth):
        best = float(sims[q, sorted(true)].max())
        out[q] = int((sims[q] > best + 1e-6).sum()) + 1
    return out


def direction_report(zq: Tensor, zg: Tensor, truth: list[set[int]], class_truth: list[set[int]] | None) -> dict:
    sims = zq @ zg.T
    r = ranks(sims, truth)
    report = {f"recall@{k}": round(float((r <= k).mean()), 6) for k in KS}
    report.update({"median_rank": float(np.median(r)), "mean_rank": round(float(r.mean()), 3),
                   "queries": len(truth), "gallery": int(zg.shape[0])})
    if class_truth is not None:
        rc = ranks(sims, class_truth)
        report.update({f"class_recall@{k}": round(float((rc <= k).mean()), 6) for k in KS})
    return report


def retrieval_report(parts: Parts, data: ReadTable, batch_size: int = 256) -> dict:
    """Retrieval metrics for every ordered pair of inputs ("audio->image" and "image->audio")."""
    names = [s.name for s in parts.inputs]
    emb = {n: embed_items(parts, n, data.items[n], batch_size) for n in names}
    labels = data.targets
    result: dict = {"rows": len(data)}
    if data.skipped:
        result["skipped_rows"] = len(data.skipped)
    recalls = []
    for a, b in itertools.permutations(names, 2):
        links: dict[int, set[int]] = {}
        q_label: dict[int, int] = {}
        g_label: dict[int, int] = {}
        for r, (ia, ib) in enumerate(zip(data.ids[a], data.ids[b])):
            if ia < 0 or ib < 0:
                continue
            links.setdefault(ia, set()).add(ib)
            if labels is not None:
                q_label.setdefault(ia, labels[r])
                g_label.setdefault(ib, labels[r])
        if not links:
            continue
        queries = sorted(links)
        gallery = sorted({g for s in links.values() for g in s})
        pos = {g: i for i, g in enumerate(gallery)}
        truth = [{pos[g] for g in links[q]} for q in queries]
        class_truth = None
        if labels is not None:
            by_label: dict[int, set[int]] = {}
            for g in gallery:
                by_label.setdefault(g_label[g], set()).add(pos[g])
            class_truth = [by_label[q_label[q]] for q in queries]
        rep = direction_report(emb[a][queries], emb[b][gallery], truth, class_truth)
        result[f"{a}->{b}"] = rep
        recalls.append(rep["class_recall@1" if class_truth is not None else "recall@1"])
    if recalls:
        result["recall_at_1"] = round(float(np.mean(recalls)), 6)
    return result
