"""Classification's report pins exact values: per-class precision, recall and F1 (moderation is judged on its
positive class), beside accuracy."""
from __future__ import annotations

import math

import pytest
import torch

from polymodal.tasks.classification import Classification, ClassificationConfig


def test_report_gives_per_class_precision_recall_and_f1():
    task = Classification(ClassificationConfig())
    task.fit(["no", "yes", "maybe"])  # classes sorted: maybe, no, yes
    pred = torch.tensor([1, 1, 2, 2, 2, 0])
    target = torch.tensor([1, 2, 2, 2, 1, 1])
    out = torch.nn.functional.one_hot(pred, 3).float() * 5
    report = task.report(out, target)
    assert report["accuracy"] == 0.5
    assert report["per_class_precision"] == {"maybe": 0.0, "no": 0.5, "yes": round(2 / 3, 6)}
    assert report["per_class_recall"] == {"maybe": 0.0, "no": round(1 / 3, 6), "yes": round(2 / 3, 6)}
    assert report["per_class_f1"] == {"maybe": 0.0, "no": 0.4, "yes": round(2 / 3, 6)}


def test_balanced_class_weights_follow_the_training_counts():
    task = Classification(ClassificationConfig(class_weight="balanced"))
    task.fit(["a"] * 6 + ["b"] * 2)
    assert task.weights == [8 / 12, 8 / 4]
    out, target = torch.tensor([[0.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 1])
    l0, l1 = math.log(1 + math.exp(1)), math.log(1 + math.exp(-3))  # each row's cross-entropy
    w0, w1 = task.weights
    assert float(task.loss(out, target)) == pytest.approx((w0 * l0 + w1 * l1) / (w0 + w1), rel=1e-6)
    restored = Classification(ClassificationConfig(class_weight="balanced"))
    restored.load_state(task.state())
    assert restored.weights == task.weights
