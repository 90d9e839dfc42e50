"""Tasks. Importing this package registers every task."""
from . import classification, contrastive, regression, text_to_image  # noqa: F401  (registration)
from .base import TASKS, Task

__all__ = ["TASKS", "Task", "update_metrics"]


def update_metrics(task: Task, metrics, out, target) -> None:
    """Feed a batch to a task's metrics (tasks whose metrics need transformed outputs define update_metrics)."""
    hook = getattr(task, "update_metrics", None)
    if hook is not None:
        hook(metrics, out, target)
    else:
        metrics.update(out.float(), target)
