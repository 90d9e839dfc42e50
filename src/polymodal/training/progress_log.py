"""A plain-text training log (`train.log` in the model directory): one line per finished epoch with the elapsed
time and the epoch's logged values, flushed as it is written, so a run whose output is redirected, or watched with
`tail -f`, shows where it is."""
from __future__ import annotations

import time
from pathlib import Path

import lightning as L


def append_line(path: Path | None, line: str) -> None:
    """One line at the end of train.log (written as it happens: `tail -f` it); None: no log kept."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


class EpochLog(L.Callback):
    def __init__(self, path: Path, time_limit: float | None = None) -> None:
        self.path, self.time_limit = path, time_limit
        self.started = time.perf_counter()

    def _write(self, line: str) -> None:
        if getattr(self, "zero", True):
            append_line(self.path, line)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.started = time.perf_counter()
        self.zero = trainer.is_global_zero  # under DDP one process writes the log
        self._write(f"training: up to {trainer.max_epochs} epochs, {trainer.num_training_batches} calls per epoch")

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
        self._write(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
                    f"({time.perf_counter() - self.started:.1f} s): {shown}")

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        elapsed = time.perf_counter() - self.started
        why = " (time limit)" if self.time_limit is not None and elapsed >= self.time_limit else ""
        self._write(f"stopped after {trainer.current_epoch} epochs, {elapsed:.1f} s{why}")
