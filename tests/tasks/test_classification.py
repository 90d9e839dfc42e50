"""Classification's report pins exact values: per-class precision, recall and F1 (moderation is judged on its
positive class), beside accuracy."""
from __future__ import annotations

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
