"""Modality reliance: how much the score moves when each input is removed, and a plain warning when the model
barely uses an input it was given. Part of every evaluation."""
from __future__ import annotations

from dataclasses import replace

from ..data import ReadTable
from ..model import Parts

IGNORED_BELOW = 0.01  # a change smaller than 1 point of accuracy (or 0.01 of another metric) counts as ignoring


def without(data: ReadTable, names: set[str] | list[str]) -> ReadTable:
    """The same rows with the named inputs absent everywhere (the model's own missing-input path)."""
    ids = {n: ([-1] * len(v) if n in names else v) for n, v in data.ids.items()}
    return replace(data, ids=ids)


def reliance(parts: Parts, data: ReadTable, clean: dict, score) -> tuple[dict, list[str]]:
    """{input: change in the task's headline metric when it is removed} and warnings for ignored inputs."""
    metric = parts.task.monitor
    names = list(data.ids)
    if len(names) < 2:
        return {}, []
    changes, warnings = {}, []
    for name in names:
        if all(i < 0 for i in data.ids[name]):
            continue
        removed = score(parts, without(data, {name}))[metric]
        change = clean[metric] - removed if parts.task.monitor_mode == "max" else removed - clean[metric]
        changes[name] = round(change, 6)
        if abs(change) < IGNORED_BELOW:
            amount = f"{100 * abs(change):.1f} points" if metric == "accuracy" else f"{abs(change):.4f}"
            warnings.append(f"the model ignores `{name}`: removing it changes {metric} by {amount}")
    return changes, warnings
