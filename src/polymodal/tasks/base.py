"""Tasks own everything that differs between tasks: the network they need on top of the encoders, the training loss,
the metrics, the evaluation report, the value an explanation attributes and the decoding of outputs. Code outside
`tasks/` calls these hooks and never asks which task it has.

The kinds: `PredictiveTask` (classification, multilabel, regression: fusion + head), the joint embedding space
(contrastive) and generators (text-to-image); each is a subclass of `Task` that overrides the hooks it needs.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from ..data.batching import process_rank
from ..errors import PolymodalError
from ..registry import Registry


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TrainingPlan:
    """How the training loop runs for a task (derived from the recipe's training section)."""

    steps_per_call: int = 1  # batches per Lightning training call
    modality_dropout: float | dict[str, float] = 0.0  # inputs hidden per training row
    alone_scores: bool = False  # score each input alone on validation (training.select: robust)
    ema_decay: float = 0.0  # keep an exponential moving average of the weights (0: off)
    early_stopping: bool = True  # stop when the monitored validation score stops improving
    keep_best: bool = True  # restore the weights of the best validation epoch


StepRNG = Callable[[], torch.Generator]


class Task:
    """The base of every task. Subclasses set `Config`, `monitor` and `monitor_mode` and override the hooks."""

    Config: ClassVar[type[TaskConfig]] = TaskConfig
    registry_name: ClassVar[str] = ""
    monitor: ClassVar[str] = "loss"  # the validation metric that selects the best checkpoint
    monitor_mode: ClassVar[str] = "min"
    explained: ClassVar[str] = "contribution to the predicted score"  # what Shapley values share out (a label)

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    @classmethod
    def facts(cls) -> dict:
        """What `polymodal components` shows besides the config."""
        params = inspect.signature(cls.evaluate).parameters.values()
        return {"monitor": f"{cls.monitor} ({cls.monitor_mode})",
                "evaluate_options": [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]}

    # -- the recipe --------------------------------------------------------------------------------------------------
    @classmethod
    def check_target(cls, column: str | None) -> None:
        """Raise ValueError when the recipe's target section does not suit the task (default: a column is needed)."""
        if column is None:
            raise ValueError(f"a target column is needed for {cls.registry_name or 'this task'}")

    @classmethod
    def resolve_training(cls, training: dict[str, Any]) -> None:
        """Fix the recipe's training fields that the task decides (in place, before the recipe is saved)."""

    @classmethod
    def resolve_input(cls, kind: str, options: dict[str, Any], encoder: dict[str, Any], task_options: dict) -> None:
        """Defaults the task gives an input of this modality kind where the recipe names none (in place, before the
        preset's encoder)."""

    def training_plan(self, cfg: Any, inputs: int) -> TrainingPlan:
        """How the training loop runs for this task, from the recipe's `training` section and the input count."""
        return TrainingPlan()

    # -- targets -----------------------------------------------------------------------------------------------------
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

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def outputs_key(self) -> Any:
        """What two models' outputs must share to be combined in one ensemble (by default the task's state)."""
        return self.state()

    def describe(self) -> dict:
        return self.state()

    def save_files(self, net: nn.Module, directory: Path) -> None:
        """Files the task's network needs beside the weights to be rebuilt (a pretrained generator's config)."""

    def load_files(self, directory: Path) -> None:
        """Take note of a model directory's files before the state is loaded and the network built from them."""

    # -- the network -------------------------------------------------------------------------------------------------
    def encoded_inputs(self, kinds: dict[str, str]) -> list[str]:
        """The inputs that get an encoder (input name -> modality given); default: all of them."""
        return list(kinds)

    def build_net(self, encoders: dict[str, nn.Module], kinds: dict[str, str], modalities: dict[str, Any],
                  recipe: Any) -> nn.Module:
        """The network on top of the encoders (a fusion and a head, projections, a denoiser)."""
        raise NotImplementedError

    @classmethod
    def architecture(cls, recipe: dict) -> dict:
        """What `polymodal info` shows of the network beyond the inputs (the fusion, for a fusing task)."""
        return {}

    # -- training ----------------------------------------------------------------------------------------------------
    def training_loss(self, net: nn.Module, inputs: dict, target: Tensor | None, unimodal_weight: float,
                      rng: StepRNG) -> tuple[Tensor, dict[str, tuple[Tensor, int]]]:
        """One batch's training loss and the values to log (name -> (value, rows))."""
        raise NotImplementedError

    def validation_loss(self, net: nn.Module, inputs: dict, out: Tensor, target: Tensor | None) -> Tensor:
        return net.loss(self, inputs, target)

    def metrics(self) -> nn.Module:
        """A torchmetrics MetricCollection updated with `update_metrics(metrics, out, target)`."""
        from torchmetrics import MetricCollection

        return MetricCollection({})

    def update_metrics(self, metrics: nn.Module, out: Tensor, target: Tensor | None) -> None:
        metrics.update(out.float(), target)

    # -- evaluation, prediction, explanation -------------------------------------------------------------------------
    def evaluate(self, run: Any) -> dict:
        """The evaluation report. `run` (evaluation.Run) reads the table and runs the machinery; the keyword
        arguments a task's `evaluate` declares are the options `Model.evaluate` and `polymodal evaluate` take."""
        raise NotImplementedError

    def calibrates(self) -> bool:
        """Whether `calibrate` wants the validation rows' outputs after training."""
        return False

    def calibrate(self, out: Tensor, target: Tensor) -> dict:
        """Choose what the task decides from the trained network's outputs on the validation rows (a decision
        threshold); returns what it chose, for the metrics and the log."""
        return {}

    def combine(self, outputs: list[Tensor]) -> Tensor:
        """One output from the outputs of an ensemble's members (training.ensemble), shaped like each."""
        raise PolymodalError(f"training.ensemble: a {self.registry_name} model's outputs are not averaged "
                             "(ensembles are for classification, multilabel and regression)")

    def ensemble_net(self, members: list[nn.Module]) -> nn.Module | None:
        """Networks trained apart as one, where the task combines them inside the network (text: the members'
        per-step probabilities averaged before the search); None: the model's outputs are combined by `combine`."""
        return None

    def decoding_candidates(self, net: nn.Module | None = None) -> list[dict]:
        """Decoding settings to try on the validation rows after training (a search) for this network; none by
        default."""
        return []

    @staticmethod
    def decoding_name(settings: dict) -> str:
        return ",".join(f"{k}={v}" for k, v in settings.items())

    def use_decoding(self, net: nn.Module, settings: dict) -> None:
        """Decode with these settings from now on (kept in the task's state)."""

    def decoding_score(self, out: Tensor, target: Tensor) -> float:
        """How bad decoded validation outputs are (lower is better), to choose among `decoding_candidates`."""
        raise NotImplementedError

    def decode(self, out: Tensor) -> list[dict]:
        """The network's outputs -> one prediction dict per row."""
        raise PolymodalError(f"a {self.registry_name} model has no per-row predictions")

    def explained_value(self, out: Tensor, reference: Tensor) -> Tensor:
        """What a subset of inputs is worth per row, for Shapley values (`reference`: outputs with every input)."""
        raise PolymodalError(f"explanations are for predictive tasks; a {self.registry_name} model has no "
                             "prediction to explain")

    def attributes(self) -> bool:
        """Whether gradients of the network's output explain a prediction (integrated gradients, interactions,
        attention maps); False where the output is decoded text, which only Shapley values over inputs explain."""
        return True

    def attribution_target(self, out: Tensor) -> int | None:
        """The output index gradient attributions explain (None: the single output)."""
        return None

    def predicted_classes(self, out: Tensor) -> tuple[list[str], Tensor] | None:
        """(class names, predicted class per row) for per-class summaries; None where outputs are not classes."""
        return None

    def generate(self, parts: Any, prompts: list[str], n: int, steps: int | None, guidance: float | None,
                 seed: int, sampler: str | None) -> list:
        raise PolymodalError(f"a {self.registry_name} model does not generate images")


TASKS: Registry[Task] = Registry("task")


def present_weights(present: list[Tensor], rows: int) -> list[float]:
    """Per input: what turns the summed loss of its present rows into this process's part of the mean over the
    present rows of the whole batch. One process: 1 / its present rows. Under DDP, where the training loop weights
    each process's loss by its share of the batch's rows: global rows / (local rows x global present rows), so the
    averaged gradients are those of one process on the whole batch. 0 where no process has the input."""
    counts = torch.tensor([float(rows)] + [float(p.sum()) for p in present], device=present[0].device)
    total = counts
    if process_rank()[1] > 1:
        total = counts.clone()
        torch.distributed.all_reduce(total)
    return [float(total[0] / (counts[0] * total[i + 1])) if total[i + 1] > 0 else 0.0 for i in range(len(present))]
