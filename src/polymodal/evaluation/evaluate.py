"""Run a model over read data: outputs, metrics, predictions. Reuses the training data path."""
from __future__ import annotations

import torch
from torch import Tensor

from ..data import Collator, GroupedBatchSampler, ReadTable
from ..model import Parts
from ..tasks import update_metrics


@torch.inference_mode()
def run_outputs(parts: Parts, data: ReadTable, batch_size: int = 256) -> tuple[Tensor, Tensor | None]:
    """The head's outputs for every row, in row order (and the targets when the data has them)."""
    parts.net.eval()
    collate = Collator(data, parts.modalities, parts.task)
    sampler = GroupedBatchSampler(list(range(len(data))), batch_size, shuffle=False, seed=0)
    device = next(parts.net.parameters()).device
    outs, targets = [], []
    for rows in sampler:
        batch, target = collate(rows)
        outs.append(parts.net({k: v.to(device) for k, v in batch.items()}).float().cpu())
        if target is not None:
            targets.append(target)
    return torch.cat(outs), (torch.cat(targets) if targets else None)


def metrics_from_outputs(parts: Parts, out: Tensor, target: Tensor) -> dict:
    metrics = parts.task.metrics()
    update_metrics(parts.task, metrics, out, target)
    result = {k: round(float(v), 6) for k, v in metrics.compute().items()}
    result["loss"] = round(float(parts.task.loss(out, target)), 6)
    per_class = getattr(parts.task, "per_class_accuracy", None)
    if per_class is not None:
        result["per_class_accuracy"] = {k: round(v, 6) for k, v in per_class(out, target).items()}
    return result


def score(parts: Parts, data: ReadTable, batch_size: int = 256) -> dict:
    """Metrics of the model on read data (no reliance analysis)."""
    out, target = run_outputs(parts, data, batch_size)
    return metrics_from_outputs(parts, out, target)


def evaluate_parts(parts: Parts, data: ReadTable, batch_size: int = 256, with_reliance: bool = True) -> dict:
    """Metrics, per-class accuracy, and modality reliance (the change when each input is removed)."""
    from .reliance import reliance

    if parts.task.generates:
        from .generation import denoising_loss

        return denoising_loss(parts, data, batch_size)
    if parts.task.retrieval:
        from .retrieval import retrieval_report

        return retrieval_report(parts, data, batch_size)
    if data.targets is None:
        raise ValueError("evaluation needs the target column")
    result = score(parts, data, batch_size)
    result["rows"] = len(data)
    if data.skipped:
        result["skipped_rows"] = len(data.skipped)
    if with_reliance:
        changes, warnings = reliance(parts, data, result, score)
        if changes:
            result["reliance"] = changes
        if warnings:
            result["warnings"] = warnings
    return result
