"""Tasks. Importing this package registers every task."""
from ..data import is_missing
from . import classification, contrastive, regression, text, text_to_image  # noqa: F401  (registration)
from .base import TASKS, Task, TrainingPlan
from .predictive import PredictiveTask

__all__ = ["TASKS", "PredictiveTask", "Task", "TrainingPlan", "infer_task"]


def infer_task(values: list) -> str:
    """The task a target column's values suggest: lists -> multilabel, fractional numbers -> regression, else
    classification."""
    present = [v for v in values if isinstance(v, (list, tuple)) or not is_missing(v)]
    lists = [i for i, v in enumerate(values) if isinstance(v, (list, tuple))]
    if lists:
        single = [i for i, v in enumerate(values) if not isinstance(v, (list, tuple)) and not is_missing(v)]
        if single:  # one odd value must not decide the task for the whole column
            raise ValueError(f"the target mixes lists ({len(lists)} rows, first: row {lists[0] + 1}) with single "
                             f"values ({len(single)} rows, first: row {single[0] + 1}): a multilabel target is a "
                             "list in every row ([] for none), a class label one value; or set target.task")
        return "multilabel"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if any(isinstance(v, float) and not v.is_integer() for v in present):
            return "regression"
    return "classification"
