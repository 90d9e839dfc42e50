"""Modality importance: exact Shapley values over subsets of inputs, using the model's own handling of absent
inputs (each subset = the other inputs removed). 2^M passes: cheap for up to ~5 inputs."""
from __future__ import annotations

import itertools
from math import factorial

import torch
from torch import Tensor

from ..data import ReadTable
from ..evaluation.evaluate import run_outputs
from ..evaluation.reliance import without
from ..model import Parts


def shapley(parts: Parts, data: ReadTable) -> dict[str, Tensor]:
    """{input: [rows] Shapley value}; the values of a row add up to v(all inputs) - v(no input)."""
    names = list(data.ids)
    n = len(names)
    full, _ = run_outputs(parts, data)
    worth: dict[frozenset, Tensor] = {}
    for k in range(n + 1):
        for subset in itertools.combinations(names, k):
            out, _ = run_outputs(parts, without(data, set(names) - set(subset)))
            worth[frozenset(subset)] = parts.task.explained_value(out, full)
    phi = {}
    for name in names:
        others = [m for m in names if m != name]
        total = torch.zeros(len(data))
        for k in range(n):
            weight = factorial(k) * factorial(n - k - 1) / factorial(n)
            for subset in itertools.combinations(others, k):
                s = frozenset(subset)
                total += weight * (worth[s | {name}] - worth[s])
        phi[name] = total
    return phi


def shares(phi: dict[str, Tensor], rows: Tensor | None = None) -> dict[str, float]:
    """Each input's mean |Shapley value| over the rows (all, or a boolean selection), out of the sum over inputs."""
    mags = {k: float((v if rows is None else v[rows]).abs().mean()) for k, v in phi.items()}
    total = sum(mags.values()) or 1.0
    return {k: m / total for k, m in mags.items()}
