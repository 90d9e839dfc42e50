"""Tasks: a head over the fused representation, its loss, its metrics and the decoding of outputs."""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from ..registry import Registry


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task:
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    registry_name: ClassVar[str] = ""
    monitor: ClassVar[str] = "loss"  # the validation metric that selects the best checkpoint
    monitor_mode: ClassVar[str] = "min"
    fuses: ClassVar[bool] = True  # False: no fusion or head; each input is embedded (contrastive)
    needs_target: ClassVar[bool] = True  # False: the target column is optional (labels for class-level metrics)
    retrieval: ClassVar[bool] = False  # evaluated by cross-modal retrieval rather than from predictions
    generates: ClassVar[bool] = False  # generates one of its inputs from the others (text-to-image)

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    def fit(self, targets: list[Any]) -> None:
        """Learn what the targets are (class names, scale) from the training targets."""

    def encode(self, value: Any) -> Any:
        """One raw target -> a number or list; raise ValueError with the reason."""
        raise NotImplementedError

    def check(self, value: Any) -> Any:
        """Validate a raw target before the task is fitted; return the value to keep."""
        return value

    def collate(self, values: list[Any]) -> Tensor:
        raise NotImplementedError

    def head(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def metrics(self) -> nn.Module:
        """A torchmetrics MetricCollection updated with (out, target)."""
        raise NotImplementedError

    def decode(self, out: Tensor) -> list[dict]:
        raise NotImplementedError

    def score(self, out: Tensor) -> Tensor:
        """A per-row scalar the explanation methods attribute: the score of the predicted output."""
        raise NotImplementedError

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def describe(self) -> dict:
        return self.state()


TASKS: Registry[Task] = Registry("task")
