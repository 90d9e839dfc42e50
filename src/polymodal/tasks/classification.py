"""Classification (binary and multiclass, softmax) and multilabel (independent sigmoids)."""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelAUROC,
    MultilabelF1Score,
)

from ..errors import PolymodalError
from .base import TASKS, TaskConfig
from .predictive import PredictiveTask


def label_sort_key(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def as_label(value: Any) -> str:
    if isinstance(value, (dict, list, tuple, set)):
        raise ValueError(f"a class label is one value (a string or a number), got {type(value).__name__} {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def per_class_prf(pred: Tensor, target: Tensor, n: int) -> tuple[list[float], list[float], list[float]]:
    """Precision, recall and F1 of each class (0 where a class is never predicted or never true)."""
    p, r, f = [], [], []
    for i in range(n):
        tp = int(((pred == i) & (target == i)).sum())
        predicted, true = int((pred == i).sum()), int((target == i).sum())
        prec = tp / predicted if predicted else 0.0
        rec = tp / true if true else 0.0
        p.append(prec)
        r.append(rec)
        f.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return p, r, f


class ClassificationConfig(TaskConfig):
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="balanced: each class's loss weighted by rows / (classes x its training rows), so a rare "
        "class (offensive, fake) counts as much as a common one.")
    threshold: float | Literal["argmax", "validation"] = Field(
        "argmax", description="Two classes only: how a row's probability of the positive class becomes a decision. "
        "argmax: the more probable class; a number in (0, 1): positive when its probability is above it; "
        "validation: the threshold that scores best (`threshold_metric`) on the validation rows, chosen after "
        "training and kept with the model (moderation, where the rare class's F1 is what counts).")
    positive_class: str | None = Field(None, description="The class `threshold` is about (offensive, fake); "
                                       "default: the rarer class in the training targets.")
    threshold_metric: Literal["f1", "accuracy", "balanced_accuracy", "f1_macro"] = Field(
        "f1", description="What `threshold: validation` maximises: f1 is the positive class's F1.")
    consensus_by: str | None = Field(
        None, description="An input whose rows are about one thing (tweets sharing a photo whose misuse is the "
        "label; the slices of one scan): when predicting and scoring a table, each row gets the mean class "
        "probabilities of the table's rows that share its value of this input (a row without it keeps its own). "
        "Training and the epoch chosen on validation are unchanged; a threshold chosen on validation sees the "
        "shared probabilities.")

    @field_validator("threshold")
    @classmethod
    def _in_unit(cls, v):
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError(f"a threshold is a probability strictly between 0 and 1, got {v}")
        return v


def threshold_scores(prob: np.ndarray, positive: np.ndarray, thresholds: np.ndarray, metric: str) -> np.ndarray:
    """`metric` of the decisions `prob > t` against `positive` (bools), for every threshold t at once."""
    pred = prob[None, :] > thresholds[:, None]
    tp = (pred & positive).sum(1)
    fp = (pred & ~positive).sum(1)
    fn = (~pred & positive).sum(1)
    tn = (~pred & ~positive).sum(1)

    def f1(tp_, fp_, fn_):
        return np.where(2 * tp_ + fp_ + fn_ > 0, 2 * tp_ / np.maximum(2 * tp_ + fp_ + fn_, 1), 0.0)

    if metric == "f1":
        return f1(tp, fp, fn)
    if metric == "accuracy":
        return (tp + tn) / len(prob)
    if metric == "f1_macro":
        return (f1(tp, fp, fn) + f1(tn, fn, fp)) / 2
    recall_pos = tp / max(int(positive.sum()), 1)
    recall_neg = tn / max(int((~positive).sum()), 1)
    return (recall_pos + recall_neg) / 2


def choose_threshold(prob: np.ndarray, positive: np.ndarray, metric: str) -> tuple[float, float]:
    """The threshold on the positive class's probability that maximises `metric`: midpoints between the distinct
    probabilities seen (and 0.5); ties go to the one nearest 0.5. Returns (threshold, its score)."""
    values = np.unique(np.clip(prob, 1e-6, 1 - 1e-6))
    candidates = np.unique(np.concatenate([[0.5], (values[1:] + values[:-1]) / 2, [values[0] / 2],
                                           [(values[-1] + 1) / 2]]))
    scores = threshold_scores(prob, positive, candidates, metric)
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    pick = best[np.argmin(np.abs(candidates[best] - 0.5))]
    return float(candidates[pick]), float(scores[pick])


@TASKS.register("classification")
class Classification(PredictiveTask):
    Config = ClassificationConfig
    config: ClassificationConfig
    monitor, monitor_mode = "accuracy", "max"

    def __init__(self, config: ClassificationConfig) -> None:
        super().__init__(config)
        self.classes: list[str] = []
        self.weights: list[float] | None = None
        self.positive: str | None = None  # the class a threshold is about (two classes, threshold not argmax)
        self.cutoff: float | None = None  # the decision threshold on its probability (None: argmax)

    def check(self, value: Any) -> Any:
        as_label(value)
        return value

    def fit(self, targets: list[Any]) -> None:
        labels = [as_label(t) for t in targets]
        self.classes = sorted(set(labels), key=label_sort_key)
        if len(self.classes) < 2:
            raise ValueError(f"classification needs at least 2 classes in the training targets, found "
                             f"{self.classes}")
        self._index = {c: i for i, c in enumerate(self.classes)}
        counts = [labels.count(c) for c in self.classes]
        self.weights = [len(labels) / (len(counts) * n) for n in counts] \
            if self.config.class_weight == "balanced" else None
        self.positive, self.cutoff = None, None
        cfg = self.config
        if cfg.threshold == "argmax":
            return
        if len(self.classes) != 2:
            raise ValueError(f"target.options.threshold ({cfg.threshold}) is for two classes; the training targets "
                             f"have {len(self.classes)}: {', '.join(self.classes[:20])}")
        if cfg.positive_class is not None and cfg.positive_class not in self._index:
            raise ValueError(f"target.options.positive_class '{cfg.positive_class}' is not a class of the training "
                             f"targets ({', '.join(self.classes)})")
        self.positive = cfg.positive_class or min(self.classes, key=lambda c: (counts[self._index[c]],
                                                                                 label_sort_key(c)))
        self.cutoff = cfg.threshold if isinstance(cfg.threshold, float) else 0.5  # validation: chosen after training

    def calibrates(self) -> bool:
        return self.config.threshold == "validation"

    def calibrate(self, out: Tensor, target: Tensor) -> dict:
        pos = self._index[self.positive]
        prob, positive = out.float().softmax(-1)[:, pos].numpy(), (target == pos).numpy()
        self.cutoff, score = choose_threshold(prob, positive, self.config.threshold_metric)
        at_half = float(threshold_scores(prob, positive, np.array([0.5]), self.config.threshold_metric)[0])
        return {"threshold": round(self.cutoff, 6), "positive_class": self.positive,
                "metric": self.config.threshold_metric, "validation_score": round(score, 6),
                "validation_score_at_0.5": round(at_half, 6), "validation_rows": len(prob)}

    def decided(self, out: Tensor) -> Tensor:
        """The outputs whose argmax is the decision: with a threshold t, the positive class's logit lowered by
        logit(t), so it wins exactly where its probability is above t (a shift that keeps AUROC)."""
        if self.cutoff is None:
            return out.float()
        shift = torch.zeros(out.shape[-1], device=out.device)
        shift[self._index[self.positive]] = math.log(self.cutoff / (1 - self.cutoff))
        return out.float() - shift

    def load_state(self, state: dict) -> None:
        self.classes = state["classes"]
        self._index = {c: i for i, c in enumerate(self.classes)}
        self.weights = state.get("weights")
        self.positive, self.cutoff = state.get("positive"), state.get("threshold")
        if self.positive is not None and self.positive not in self._index:
            raise PolymodalError(f"the task state's positive class '{self.positive}' is not one of its classes")

    def outputs_key(self) -> Any:
        return self.classes

    def consensus(self, out: Tensor, ids: list[int]) -> Tensor:
        """`consensus_by`: each row's log class probabilities replaced by the log of the mean probabilities of the
        rows sharing its value (`ids[row]`, -1: none, the row keeps its own)."""
        probs = out.float().softmax(-1)
        key = torch.tensor(ids, dtype=torch.long)
        shared = key >= 0
        if not bool(shared.any()):
            return out.float().log_softmax(-1)
        groups, index = torch.unique(key[shared], return_inverse=True)
        sums = torch.zeros(len(groups), probs.shape[1]).index_add_(0, index, probs[shared])
        counts = torch.zeros(len(groups)).index_add_(0, index, torch.ones(len(index)))
        mixed = probs.clone()
        mixed[shared] = (sums / counts[:, None])[index]
        return mixed.clamp_min(1e-30).log()

    def state(self) -> dict:
        return {"classes": self.classes, **({"weights": self.weights} if self.weights else {}),
                **({"positive": self.positive, "threshold": self.cutoff} if self.cutoff is not None else {})}

    def encode(self, value: Any) -> int:
        label = as_label(value)
        if label not in self._index:
            raise ValueError(f"unknown class '{label}' (the model knows: {', '.join(self.classes[:20])})")
        return self._index[label]

    def collate(self, values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long)

    def head(self, dim: int) -> nn.Module:
        return nn.Linear(dim, len(self.classes))

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        weight = None if not self.weights else torch.tensor(self.weights, device=out.device)
        return F.cross_entropy(out.float(), target, weight=weight, label_smoothing=self.config.label_smoothing)

    def metrics(self) -> MetricCollection:
        n = len(self.classes)
        return MetricCollection({
            "accuracy": MulticlassAccuracy(n, average="micro"),
            "balanced_accuracy": MulticlassAccuracy(n, average="macro"),
            "f1_macro": MulticlassF1Score(n, average="macro"),
            "f1_weighted": MulticlassF1Score(n, average="weighted"),
            "auroc": MulticlassAUROC(n, average="macro"),
        })

    def update_metrics(self, metrics, out: Tensor, target: Tensor) -> None:
        metrics.update(self.decided(out), target)

    def decode(self, out: Tensor) -> list[dict]:
        probs = out.float().softmax(-1)
        top = self.decided(out).argmax(-1)
        return [{"label": self.classes[int(k)], "probabilities": {c: round(float(p), 6) for c, p in
                                                                 zip(self.classes, row)}}
                for k, row in zip(top, probs)]

    def report(self, out: Tensor, target: Tensor) -> dict:
        result = super().report(out, target)
        pred = self.decided(out).argmax(-1)
        if self.cutoff is not None:
            result["threshold"] = {"positive_class": self.positive, "threshold": round(self.cutoff, 6)}
        result["per_class_accuracy"] = {c: round(float((pred[target == i] == i).float().mean()), 6)
                                        for i, c in enumerate(self.classes) if (target == i).any()}
        for name, values in zip(("per_class_precision", "per_class_recall", "per_class_f1"),
                                per_class_prf(pred, target, len(self.classes))):
            result[name] = {c: round(v, 6) for c, v in zip(self.classes, values)}
        counts = torch.zeros(len(self.classes), len(self.classes), dtype=torch.long)
        counts.index_put_((target.long().cpu(), pred.long().cpu()), torch.ones(len(target), dtype=torch.long),
                          accumulate=True)
        result["confusion"] = {c: dict(zip(self.classes, counts[i].tolist()))  # true class -> predicted -> rows
                               for i, c in enumerate(self.classes) if (target == i).any()}
        return result

    def combine(self, outputs: list[Tensor]) -> Tensor:
        """The log of the members' mean class probabilities (a softmax of it gives that mean)."""
        stacked = torch.stack([o.float().log_softmax(-1) for o in outputs])
        return torch.logsumexp(stacked, 0) - math.log(len(outputs))

    def explained_value(self, out: Tensor, reference: Tensor) -> Tensor:
        """The probability of the class the full model predicts."""
        return out.float().softmax(-1).gather(-1, self.decided(reference).argmax(-1, keepdim=True)).squeeze(-1)

    def attribution_target(self, out: Tensor) -> int | None:
        return int(self.decided(out[:1])[0].argmax())

    def predicted_classes(self, out: Tensor) -> tuple[list[str], Tensor] | None:
        return self.classes, self.decided(out).argmax(-1)


class MultilabelConfig(TaskConfig):
    separator: str = Field("|", description="Separates labels in one string cell ('cat|dog').")
    threshold: float = Field(0.5, gt=0, lt=1, description="Probability above which a label is predicted.")


@TASKS.register("multilabel")
class Multilabel(PredictiveTask):
    Config = MultilabelConfig
    config: MultilabelConfig
    monitor, monitor_mode = "f1_macro", "max"

    def __init__(self, config: MultilabelConfig) -> None:
        super().__init__(config)
        self.classes: list[str] = []

    def _labels(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [v.strip() for v in value.split(self.config.separator) if v.strip()]
        if isinstance(value, (list, tuple)):
            return [as_label(v) for v in value]
        return [as_label(value)]

    def fit(self, targets: list[Any]) -> None:
        self.classes = sorted({lab for t in targets for lab in self._labels(t)}, key=label_sort_key)
        self._index = {c: i for i, c in enumerate(self.classes)}

    def load_state(self, state: dict) -> None:
        self.classes = state["classes"]
        self._index = {c: i for i, c in enumerate(self.classes)}

    def state(self) -> dict:
        return {"classes": self.classes}

    def encode(self, value: Any) -> list[float]:
        vec = [0.0] * len(self.classes)
        for lab in self._labels(value):
            if lab not in self._index:
                raise ValueError(f"unknown label '{lab}'")
            vec[self._index[lab]] = 1.0
        return vec

    def collate(self, values: list[list[float]]) -> Tensor:
        return torch.tensor(values, dtype=torch.float32)

    def head(self, dim: int) -> nn.Module:
        return nn.Linear(dim, len(self.classes))

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(out.float(), target)

    def metrics(self) -> MetricCollection:
        n, t = len(self.classes), self.config.threshold
        return MetricCollection({
            "accuracy": MultilabelAccuracy(n, threshold=t),
            "f1_macro": MultilabelF1Score(n, threshold=t, average="macro"),
            "f1_micro": MultilabelF1Score(n, threshold=t, average="micro"),
            "auroc": MultilabelAUROC(n, average="macro"),
        })

    def update_metrics(self, metrics, out: Tensor, target: Tensor) -> None:
        metrics.update(out.float().sigmoid(), target.long())

    def decode(self, out: Tensor) -> list[dict]:
        probs = out.float().sigmoid()
        return [{"labels": [c for c, p in zip(self.classes, row) if p >= self.config.threshold],
                 "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, row)}} for row in probs]

    def combine(self, outputs: list[Tensor]) -> Tensor:
        """The logits of the members' mean label probabilities."""
        mean = torch.stack([o.float().sigmoid() for o in outputs]).mean(0)
        return mean.clamp(1e-7, 1 - 1e-7).logit()

    def explained_value(self, out: Tensor, reference: Tensor) -> Tensor:
        """The mean probability of the labels the full model predicts (all labels when it predicts none)."""
        chosen = (reference.sigmoid() >= self.config.threshold).float()
        chosen = torch.where(chosen.sum(-1, keepdim=True) > 0, chosen, torch.ones_like(chosen))
        return (out.float().sigmoid() * chosen).sum(-1) / chosen.sum(-1)

    def attribution_target(self, out: Tensor) -> int | None:
        return int(out[0].argmax())
