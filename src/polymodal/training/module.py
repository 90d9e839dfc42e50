"""The Lightning module around a MultimodalNet and its task, and a callback that keeps the best weights."""
from __future__ import annotations

import copy
import math

import lightning as L
import torch
from torch import Tensor

from ..config import TrainingConfig
from ..model import MultimodalNet
from ..tasks import Task, update_metrics
from ..types import ModalityBatch


class LitMultimodal(L.LightningModule):
    def __init__(self, net: MultimodalNet, task: Task, cfg: TrainingConfig, total_steps: int) -> None:
        super().__init__()
        self.net, self.task, self.cfg, self.total_steps = net, task, cfg, max(1, total_steps)
        self.val_metrics = task.metrics()

    def forward(self, batch) -> Tensor:
        return self.net(batch)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        inputs, target = batch
        inputs = {k: v.to(device) for k, v in inputs.items()}
        return inputs, (None if target is None else target.to(device))

    def training_step(self, batch, batch_idx: int) -> Tensor:
        inputs, target = batch
        loss = self.task.loss(self.net(inputs), target)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(target))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        inputs, target = batch
        out = self.net(inputs)
        self.log("val_loss", self.task.loss(out, target), prog_bar=True, batch_size=len(target))
        update_metrics(self.task, self.val_metrics, out, target)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        for name, value in values.items():
            self.log(f"val_{name}", value, prog_bar=name == self.task.monitor)

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        if self.cfg.schedule == "constant":
            return opt
        # a function of the planned steps (not scheduler state), so a resumed run with more epochs follows its new plan
        warm_frac, floor = (0.15, 0.04) if self.cfg.schedule == "onecycle" else (0.05, 0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, self.total_steps, warm_frac,
                                                                               floor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(step: int, total: int, warm_frac: float, floor: float) -> float:
    """Linear warm-up from `floor` to 1 over warm_frac of the steps, then cosine decay towards 0."""
    warm = max(1, int(total * warm_frac))
    if step < warm:
        return floor + (1 - floor) * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return max(1e-4, 0.5 * (1 + math.cos(math.pi * progress)))


class BestWeights(L.Callback):
    """Keeps a CPU copy of the weights at the best validation score (saved in checkpoints, so resume keeps it)."""

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor, self.mode = monitor, mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        better = self.best_score is None or (value > self.best_score if self.mode == "max" else value < self.best_score)
        if better:
            self.best_score, self.best_epoch = value, trainer.current_epoch
            self.state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.state = copy.copy(state["state"])
