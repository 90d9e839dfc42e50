"""Run a model over read data (outputs, metrics), and `Run`: what a task's `evaluate` hook works with. The task
decides what its report holds and which options it takes; this module holds the machinery."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from ..data import Collator, GroupedBatchSampler, ReadTable, Table
from ..errors import PolymodalError
from ..model import Parts

TargetNeed = Literal["required", "optional", "none"]


@torch.inference_mode()
def run_outputs(parts: Parts, data: ReadTable, batch_size: int = 256) -> tuple[Tensor, Tensor | None]:
    """The network's outputs for every row, in row order (and the targets when the data has them)."""
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
    pad = getattr(parts.task, "target_pad", 0)
    out = cat_padded(outs, pad)
    by = getattr(parts.task.config, "consensus_by", None)
    if by:  # rows sharing a value of that input share their prediction (classification's consensus_by)
        if by not in data.ids:
            raise PolymodalError(f"field `target.options.consensus_by`: '{by}' is not an input of this model "
                                 f"(its inputs: {', '.join(data.ids)})")
        out = parts.task.consensus(out, data.ids[by])
    return out, (cat_padded(targets, pad) if targets else None)


def cat_padded(tensors: list[Tensor], value: float) -> Tensor:
    """Concatenate along rows; batches whose later dimensions differ (texts of other lengths) are padded first."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    padded = []
    for t in tensors:
        widths = [w for d in reversed(range(1, t.dim())) for w in (0, shape[d - 1] - t.shape[d])]
        padded.append(torch.nn.functional.pad(t, widths, value=value) if any(widths) else t)
    return torch.cat(padded)


def score(parts: Parts, data: ReadTable, batch_size: int = 256,
          outputs: tuple[Tensor, Tensor | None] | None = None) -> dict:
    """The task's report on a split's outputs (no reliance analysis); `outputs`: computed already."""
    if data.targets is None:
        raise PolymodalError("evaluation needs the target column")
    out, target = outputs or run_outputs(parts, data, batch_size)
    return parts.task.report(out, target)


class Run:
    """One evaluation: the model's parts, where the rows come from (a table to read, or rows read already), and the
    machinery a task's `evaluate` hook composes its report from."""

    def __init__(self, parts: Parts, read: Callable[[TargetNeed, bool], ReadTable] | None = None,
                 data: ReadTable | None = None, table: Callable[[], Table] | None = None,
                 load: Callable[[str | Path], Any] | None = None, batch_size: int = 256) -> None:
        self.parts, self._read, self._data, self._table, self._load = parts, read, data, table, load
        self.batch_size = batch_size
        self._last: tuple[ReadTable, tuple[Tensor, Tensor | None]] | None = None  # the last rows' outputs

    def read(self, target: TargetNeed = "required", keep_raw: bool = False) -> ReadTable:
        """The rows, with the target column as the task needs it: required, optional (read when present) or none."""
        if self._data is not None:
            return self._data
        if self._read is None:
            raise PolymodalError("nothing to evaluate on")
        return self._read(target, keep_raw)

    def table(self) -> Table:
        if self._table is None:
            return self.read("none").table
        return self._table()

    def outputs(self, data: ReadTable) -> tuple[Tensor, Tensor | None]:
        """The network's outputs on these rows and their targets (kept for the same rows read again)."""
        if self._last is None or self._last[0] is not data:
            self._last = (data, run_outputs(self.parts, data, self.batch_size))
        return self._last[1]

    def score(self, data: ReadTable) -> dict:
        """The task's report on the rows' outputs, with the row counts."""
        result = score(self.parts, data, outputs=self.outputs(data) if data.targets is not None else None)
        result["rows"] = len(data)
        if data.skipped:
            result["skipped_rows"] = len(data.skipped)
        return result

    def by_group(self, data: ReadTable, column: str) -> dict[str, dict]:
        """The task's report on each group of rows sharing a value in `column` (of the table read, not an input:
        an event, a speaker, a source), largest group first; rows without a value form the group "(missing)"."""
        table = data.table
        if column not in table.columns():
            raise PolymodalError(f"{table.source}: no column '{column}' to group the rows by (its columns: "
                                 f"{', '.join(sorted(table.columns()))})")
        out, target = self.outputs(data)
        assert target is not None
        groups: dict[str, list[int]] = {}
        for position, row in enumerate(data.rows):
            value = table.rows[row].get(column)
            groups.setdefault("(missing)" if value is None or value == "" else str(value), []).append(position)
        report = {}
        for value, positions in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            index = torch.tensor(positions)
            report[value] = {"rows": len(positions), **self.parts.task.report(out[index], target[index])}
        return report

    def add_reliance(self, data: ReadTable, result: dict) -> None:
        """Modality reliance (the change when each input is removed) and warnings for ignored inputs."""
        from .reliance import reliance

        changes, warnings = reliance(self.parts, data, result, score)
        if changes:
            result["reliance"] = changes
        if warnings:
            result["warnings"] = warnings

    def robustness(self, data: ReadTable, baseline: Any = None, progress: Any = None,
                   out: str | Path | None = None) -> dict:
        from .robustness import load_baseline, plot_curves, robustness_report

        if baseline is not None and not isinstance(baseline, dict):
            baseline = load_baseline(baseline)
        report = robustness_report(self.parts, data, baseline, progress=progress)
        if out is not None:
            report["plots"] = [str(p) for p in plot_curves(report, Path(out))]
        return report

    def noise_curve(self, data: ReadTable, snrs: list[float], noise_input: str | None = None, progress: Any = None,
                    out: str | Path | None = None, metric: str | None = None) -> dict:
        from .noise import noise_curve

        return noise_curve(self.parts, data, snrs, noise_input, progress, None if out is None else Path(out), metric)

    def retrieval(self, data: ReadTable) -> dict:
        from .retrieval import retrieval_report

        return retrieval_report(self.parts, data, self.batch_size)

    def denoising_loss(self, data: ReadTable) -> dict:
        from .generation import denoising_loss

        return denoising_loss(self.parts, data, self.batch_size)

    def generation(self, **options: Any) -> dict:
        from .generation import generation_report

        if self._load is None:
            raise PolymodalError("scoring generated images needs a way to load the judging models")
        return generation_report(self.parts, self.table(), load=self._load, **options)


def evaluation_options(parts: Parts) -> list[str]:
    """The keyword options the model's task takes in `evaluate`."""
    return parts.task.facts()["evaluate_options"]


def evaluate_run(run: Run, **options: Any) -> dict:
    """The task's evaluation report; an option the task does not take, given a value, is an error that names what
    it takes."""
    allowed = evaluation_options(run.parts)
    unknown = sorted(k for k, v in options.items() if k not in allowed and v not in (None, False))
    options = {k: v for k, v in options.items() if k in allowed}  # an option left off (None, False) is no request
    if unknown:
        raise PolymodalError(f"a {run.parts.task.registry_name} model's evaluation takes no "
                             f"{', '.join(unknown)} (its options: {', '.join(allowed) or 'none'})")
    return run.parts.task.evaluate(run, **options)


def evaluate_parts(parts: Parts, data: ReadTable, batch_size: int = 256) -> dict:
    """The task's report on rows read already (after training: validation and test)."""
    return evaluate_run(Run(parts, data=data, batch_size=batch_size))
