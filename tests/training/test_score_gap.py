"""A warning when validation and test scores part ways (mediaeval16: 98.8% on random validation rows that share
events with training, 65.4% on test events never seen)."""
from __future__ import annotations

from polymodal.training.fit import score_gap


def test_scores_further_apart_than_ten_points_are_named():
    said = score_gap("accuracy", {"accuracy": 0.988}, {"accuracy": 0.654})
    assert said.startswith("validation accuracy 0.988 and test accuracy 0.654 part ways (by 0.334)")
    assert "data.validation_group" in said and "--validation-group" in said
    assert score_gap("cer", {"cer": 0.02}, {"cer": 0.25}).startswith("validation cer 0.020 and test cer 0.250")


def test_close_scores_missing_splits_and_unbounded_metrics_say_nothing():
    assert score_gap("accuracy", {"accuracy": 0.70}, {"accuracy": 0.62}) is None  # 8 points: within
    assert score_gap("accuracy", None, {"accuracy": 0.5}) is None
    assert score_gap("accuracy", {"accuracy": 0.9}, None) is None
    assert score_gap("rmse", {"rmse": 0.5}, {"rmse": 3.0}) is None  # not on a 0-1 scale
