"""Corruptions per modality, with a severity in [0, 1]: 0 is the identity, 1 the strongest. Each acts on the
decoded value (image tensor, waveform, string, frames, signal), is seeded by the caller's generator, and can be used
for data augmentation as well as robustness curves. Levels follow MultiBench's protocol of ten severities."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import PolymodalError
from .base import MODALITIES

Corruption = Callable[[object, float, np.random.Generator], object]


def corruption(modality: type, name: str):
    """Register a corruption on a modality class (in the modality's own file): `@corruption(ImageModality, "blur")`."""
    def deco(fn: Corruption) -> Corruption:
        def wrapped(raw, severity: float, rng: np.random.Generator, **options):
            if not 0 <= severity <= 1:
                raise PolymodalError(f"severity must be in [0, 1], got {severity}")
            return raw if severity == 0 else fn(raw, severity, rng, **options)  # options: a modality's settings

        wrapped.__name__ = wrapped.__qualname__ = name
        wrapped.__doc__ = fn.__doc__
        modality.corruptions[name] = wrapped
        return wrapped

    return deco


def corrupt(modality: str, name: str, raw, severity: float, seed: int = 0):
    """Apply one named corruption (for augmentation from Python)."""
    have = MODALITIES.get(modality).corruptions
    if name not in have:
        raise PolymodalError(f"no corruption '{name}' for {modality} (have: {', '.join(have)})")
    return have[name](raw, severity, np.random.default_rng(seed))


def all_corruptions() -> dict[str, dict[str, Corruption]]:
    """modality name -> its corruptions, from the registry."""
    return {name: dict(cls.corruptions) for name, cls in MODALITIES.items()}


# -- helpers the modalities' corruptions share ---------------------------------------------------------------------


def to_u8(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def chunks(n: int, size: int) -> int:
    return max(1, -(-n // size))


def zero_steps(x: Tensor, s: float, rng) -> Tensor:
    """Each step (frame, time step) along the first axis zeroed with probability s."""
    out = x.clone()
    out[torch.from_numpy(rng.random(x.shape[0]) < s)] = 0
    return out


def drop_span(x, s: float, rng):
    out = x.copy() if isinstance(x, np.ndarray) else x.clone()
    n = out.shape[0]
    span = int(round(n * s))
    start = int(rng.integers(0, n - span + 1))
    out[start:start + span] = 0
    return out
