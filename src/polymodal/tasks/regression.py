"""Regression of one number; targets standardised with the training mean and std."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, PearsonCorrCoef, R2Score

from .base import TASKS, TaskConfig
from .predictive import PredictiveTask


@TASKS.register("regression")
class Regression(PredictiveTask):
    monitor, monitor_mode = "rmse", "min"

    def __init__(self, config: TaskConfig) -> None:
        super().__init__(config)
        self.mean, self.std = 0.0, 1.0

    def fit(self, targets: list[Any]) -> None:
        vals = torch.tensor([self.encode(t) for t in targets], dtype=torch.float64)
        self.mean = float(vals.mean())
        self.std = float(vals.std()) if len(vals) > 1 and float(vals.std()) > 0 else 1.0

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def encode(self, value: Any) -> float:
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"target {value!r} is not a finite number")
        return v

    def check(self, value: Any) -> float:
        return self.encode(value)

    def collate(self, values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float32)

    def head(self, dim: int) -> nn.Module:
        return nn.Linear(dim, 1)

    def predict_values(self, out: Tensor) -> Tensor:
        return out.float().squeeze(-1) * self.std + self.mean

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(out.float().squeeze(-1), (target - self.mean) / self.std)

    def metrics(self) -> MetricCollection:
        return MetricCollection({"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False),
                                 "r2": R2Score(), "pearson": PearsonCorrCoef()})

    def update_metrics(self, metrics, out: Tensor, target: Tensor) -> None:
        metrics.update(self.predict_values(out), target)

    def decode(self, out: Tensor) -> list[dict]:
        return [{"value": float(v)} for v in self.predict_values(out)]

    def combine(self, outputs: list[Tensor]) -> Tensor:
        """The members' mean output (in the normalised target scale)."""
        return torch.stack([o.float() for o in outputs]).mean(0)

    def explained_value(self, out: Tensor, reference: Tensor) -> Tensor:
        """The predicted value."""
        return self.predict_values(out)
