"""The Lightning module around a model's network and its task, and a callback that keeps the best weights."""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import replace

import lightning as L
import torch
from torch import Tensor, nn

from ..config import TrainingConfig
from ..data.batching import process_rank
from ..encoders.base import Encoder
from ..modalities.augment import augment_images
from ..tasks import Task, TrainingPlan
from ..types import ModalityBatch

log = logging.getLogger("polymodal")


class LitMultimodal(L.LightningModule):
    """Trains with manual optimisation: each training call gets a chunk of batches (one, or
    `training.steps_per_call`) and takes one optimizer step per batch, so the updates are those of one batch per
    call while Lightning's per-call bookkeeping is paid once per chunk."""

    def __init__(self, net: torch.nn.Module, task: Task, cfg: TrainingConfig, total_steps: int,
                 unimodal_weight: float = 0.0, plan: TrainingPlan | None = None,
                 kinds: dict[str, str] | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net, self.task, self.cfg, self.total_steps = net, task, cfg, max(1, total_steps)
        self.unimodal_weight = unimodal_weight
        # training.image_augment: the image and video inputs it changes (not those whose features are cached)
        self.kinds = kinds or {}
        encoders = getattr(net, "encoders", {})
        self.augment_skip = {n for n in self.kinds if n in encoders and getattr(encoders[n], "caches_features",
                                                                                  lambda: False)()}
        if cfg.image_augment.active() and self.augment_skip:
            log.warning("training.image_augment leaves %s as they are: a frozen backbone caches their features",
                        ", ".join(sorted(self.augment_skip)))
        plan = plan or task.training_plan(cfg, len(net.encoders))
        self.val_metrics = task.metrics()
        self.alone_metrics = torch.nn.ModuleDict({n: task.metrics() for n in net.encoders} if plan.alone_scores else {})

    def forward(self, batch) -> Tensor:
        return self.net(batch)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        if isinstance(batch, list):  # a training chunk
            return [_to_device(b, device) for b in batch]
        return _to_device(batch, device)

    def training_step(self, chunk, batch_idx: int) -> Tensor:
        opt, sched = self.optimizers(), self.lr_schedulers()
        for inputs, target in chunk if isinstance(chunk, list) else [chunk]:
            loss, logged = self._loss(inputs, target)
            opt.zero_grad()
            self.manual_backward(loss * self._share(inputs))
            opt.step()
            if sched is not None:
                sched.step()
        self._log_train(logged, batch_idx)
        return loss.detach()

    def _share(self, inputs) -> float:
        """Under DDP, this process's rows over the mean rows per process in the global batch: DDP averages the
        processes' gradients with equal weights, so a batch that does not split evenly (29 rows on 2 processes)
        still gets the gradient of its mean loss over all rows."""
        _, world = process_rank()
        if world == 1 or getattr(self.task, "gathers_batch", False):  # a task whose loss is the global batch's
            return 1.0
        rows = torch.tensor([float(_rows(inputs))], device=self.device)  # nccl reduces tensors on the GPU only
        total = rows.clone()
        torch.distributed.all_reduce(total)
        return float(rows * world / total)

    def _loss(self, inputs, target) -> tuple[Tensor, dict[str, tuple[Tensor, int]]]:
        """One batch's training loss, and the values to log: name -> (value, rows)."""
        if self.cfg.image_augment.active():
            inputs = augment_images(inputs, self.kinds, self.cfg.image_augment, self._generator(inputs),
                                    skip=self.augment_skip)
        return self.task.training_loss(self.net, inputs, target, self.unimodal_weight, lambda: self._generator(inputs))

    def _log_train(self, logged: dict[str, tuple[Tensor, int]], batch_idx: int) -> None:
        """Log the chunk's last training values when the logger writes (and on each epoch's last chunk), not on every
        call: Lightning's logging costs about a millisecond a call, a fifth of a small model's step on a CPU."""
        trainer = self._trainer
        if trainer is not None:
            every = max(1, trainer.log_every_n_steps)
            last = isinstance(trainer.num_training_batches, int) and batch_idx >= trainer.num_training_batches - 1
            written = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", self.global_step) + 1
            if written % every and not last:
                return
        for name, (value, rows) in logged.items():
            self.log(name, value, prog_bar=name == "train_loss", batch_size=rows)

    def _generator(self, inputs) -> torch.Generator:
        device = next(iter(inputs.values())).present.device
        if getattr(self, "_gen", None) is None or self._gen.device != device:
            self._gen = torch.Generator(device=device)
            self._gen.manual_seed(self.cfg.seed + 7919)
        return self._gen

    def validation_step(self, batch, batch_idx: int) -> None:
        inputs, target = batch
        out = self.net(inputs)
        loss = self.task.validation_loss(self.net, inputs, out, target)
        self.log("val_loss", loss, prog_bar=True, batch_size=_rows(inputs))
        self.task.update_metrics(self.val_metrics, out, target)
        for name, metrics in self.alone_metrics.items():  # each input alone, the others absent
            alone = {n: (b if n == name else replace(b, present=torch.zeros_like(b.present)))
                     for n, b in inputs.items()}
            self.task.update_metrics(metrics, self.net(alone), target)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        for name, value in values.items():
            self.log(f"val_{name}", value, prog_bar=name == self.task.monitor)
        if self.alone_metrics:
            scores = [values[self.task.monitor]]
            for inp, metrics in self.alone_metrics.items():
                value = metrics.compute()[self.task.monitor]
                metrics.reset()
                self.log(f"val_alone_{inp}_{self.task.monitor}", value)
                scores.append(value)
            self.log(f"val_robust_{self.task.monitor}", torch.stack(scores).mean(), prog_bar=True)

    def configure_optimizers(self):
        groups = param_groups(self.net, self.cfg.lr, self.cfg.layer_decay)
        opt = torch.optim.AdamW([{"params": ps, "lr": lr} for ps, lr, _ in groups], lr=self.cfg.lr,
                                weight_decay=self.cfg.weight_decay)
        held = round(self.cfg.backbone_frozen_epochs * self.total_steps / max(1, self.cfg.epochs))
        if self.cfg.schedule == "constant" and not held:
            return opt
        # a function of the planned steps (not scheduler state), so a resumed run with more epochs follows its new plan
        warm_frac, floor = (0.15, 0.04) if self.cfg.schedule == "onecycle" else (0.05, 0.0)

        def factor(step: int) -> float:
            return 1.0 if self.cfg.schedule == "constant" else lr_factor(step, self.total_steps, warm_frac, floor)

        def frozen_first(step: int) -> float:
            return 0.0 if step < held else factor(step)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, [frozen_first if backbone else factor for _, _, backbone
                                                        in groups])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def param_groups(net: nn.Module, lr: float, decay: float) -> list[tuple[list[nn.Parameter], float, bool]]:
    """The trainable parameters as (params, learning rate, in a pretrained backbone) groups: a learning backbone's
    block at depth d of `top` learns at lr x decay ** (top - d); everything else at lr."""
    depth: dict[int, float] = {}
    for module in net.modules():
        found = module.backbone_depths() if isinstance(module, Encoder) else None
        if found is not None:
            depths, top = found
            depth.update({k: decay ** (top - d) for k, d in depths.items()})
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for p in net.parameters():
        if p.requires_grad:
            key = (depth.get(id(p), 1.0), id(p) in depth)
            groups.setdefault(key, []).append(p)
    return [(ps, lr * scale, backbone) for (scale, backbone), ps in sorted(groups.items(), key=lambda kv: kv[0])]


def _to_device(batch, device):
    inputs, target = batch
    return {k: v.to(device) for k, v in inputs.items()}, (None if target is None else target.to(device))


def _rows(inputs: dict[str, ModalityBatch]) -> int:
    return len(next(iter(inputs.values())).present)


def lr_factor(step: int, total: int, warm_frac: float, floor: float) -> float:
    """Linear warm-up from `floor` to 1 over warm_frac of the steps, then cosine decay towards 0."""
    warm = max(1, int(total * warm_frac))
    if step < warm:
        return floor + (1 - floor) * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return max(1e-4, 0.5 * (1 + math.cos(math.pi * progress)))


class EMAWeights(L.Callback):
    """An exponential moving average of the weights, updated after every optimiser step (saved in checkpoints)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.state: dict[str, Tensor] | None = None

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        current = module.net.state_dict()
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in current.items()}
            return
        for k, v in current.items():
            if v.is_floating_point():
                self.state[k].lerp_(v.detach().to(self.state[k].device), 1 - self.decay)
            else:
                self.state[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.state = state["decay"], copy.copy(state["state"])


class BestWeights(L.Callback):
    """Keeps a CPU copy of the weights at the best validation score (saved in checkpoints, so resume keeps it)."""

    def __init__(self, monitor: str, mode: str, keep: int = 1) -> None:
        self.monitor, self.mode, self.keep = monitor, mode, keep
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_loss = float("inf")
        self.state: dict[str, Tensor] | None = None
        self.top: list[dict] = []  # with keep > 1: the best epochs' {score, loss, epoch, state}, best first

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        loss = float(trainer.callback_metrics.get("val_loss", float("inf")))
        better = self.best_score is None or (value > self.best_score if self.mode == "max" else value < self.best_score)
        tie = self.best_score is not None and value == self.best_score and loss < self.best_loss
        state = None
        if better or tie:  # a tie on a saturated score (accuracy 1.0) goes to the lower validation loss
            self.best_score, self.best_epoch, self.best_loss = value, trainer.current_epoch, loss
            state = self.state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
        if self.keep > 1:
            sign = -1 if self.mode == "max" else 1
            rank = (sign * value, loss, trainer.current_epoch)
            last = self.top[-1] if self.top else None
            if len(self.top) < self.keep or rank < (sign * last["score"], last["loss"], last["epoch"]):
                if state is None:
                    state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
                self.top.append({"score": value, "loss": loss, "epoch": trainer.current_epoch, "state": state})
                self.top.sort(key=lambda t: (sign * t["score"], t["loss"], t["epoch"]))
                del self.top[self.keep:]

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_loss": self.best_loss,
                "state": self.state, "top": self.top}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_loss = state.get("best_loss", float("inf"))
        self.state = copy.copy(state["state"])
        self.top = list(state.get("top", []))


def average_states(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """The mean of weights saved from one network (floating tensors averaged; counters taken from the first)."""
    first = states[0]
    return {k: torch.stack([s[k] for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v.clone()
            for k, v in first.items()}
