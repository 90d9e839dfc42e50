"""Table columns as inputs: a number (price, age) or a category (a country, a product type). Numbers are
standardised with the training mean and std; categories get ids from the training vocabulary (unseen ones share the
"unknown" id). A missing cell is a missing input, as for every modality."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Hashable

import torch
from pydantic import Field
from torch import Tensor

from ..errors import BadInput
from .base import MODALITIES, Modality, ModalityConfig
from .corruptions import corruption


class NumberConfig(ModalityConfig):
    log: bool = Field(False, description="Use log(1 + value) (for skewed positive amounts: prices, counts).")


@MODALITIES.register("number")
class NumberModality(Modality):
    """One number per row."""

    Config = NumberConfig
    config: NumberConfig
    default_encoder = "number_mlp"

    def __init__(self, config: NumberConfig) -> None:
        super().__init__(config)
        self.mean, self.std = 0.0, 1.0

    def key(self, value: Any, base_dir: Path) -> Hashable | None:
        return ("number", str(value))

    def opened_path(self, value: Any, base_dir: Path) -> Path | None:
        return None  # a number is never a file

    def decode(self, value: Any, base_dir: Path) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise BadInput(f"not a number: {value!r}") from None
        if not math.isfinite(v):
            raise BadInput(f"not a finite number: {value!r}")
        if self.config.log:
            if v <= -1:
                raise BadInput(f"log(1 + value) needs a value above -1, got {v}")
            v = math.log1p(v)
        return v

    def placeholder(self) -> float:
        return self.mean

    def fit(self, items: list[float]) -> None:
        if items:
            t = torch.tensor(items, dtype=torch.float64)
            self.mean = float(t.mean())
            self.std = float(t.std()) if len(items) > 1 and float(t.std()) > 0 else 1.0

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def collate(self, items: list[float]) -> tuple[Tensor, None]:
        return ((torch.tensor(items, dtype=torch.float32) - self.mean) / self.std).view(-1, 1), None

    def attribution_baseline(self, x: Tensor) -> Tensor:
        """The training mean (0 after standardisation)."""
        return torch.zeros_like(x)

    def describe(self) -> dict:
        return {"features": 1}


class CategoryConfig(ModalityConfig):
    pass


@MODALITIES.register("category")
class CategoryModality(Modality):
    """One category (any value, compared as text) per row."""

    Config = CategoryConfig
    config: CategoryConfig
    default_encoder = "category_embedding"

    def __init__(self, config: CategoryConfig) -> None:
        super().__init__(config)
        self.vocab: list[str] = []
        self._index: dict[str, int] = {}

    def key(self, value: Any, base_dir: Path) -> Hashable | None:
        return ("category", str(value))

    def opened_path(self, value: Any, base_dir: Path) -> Path | None:
        return None  # a category is never a file

    def decode(self, value: Any, base_dir: Path) -> str:
        if isinstance(value, (dict, list)):
            raise BadInput(f"a category is one value, not {type(value).__name__}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).strip()

    def placeholder(self) -> str:
        return ""

    def fit(self, items: list[str]) -> None:
        self.vocab = sorted(set(items))
        self._index = {v: i + 1 for i, v in enumerate(self.vocab)}  # 0: unknown

    def state(self) -> dict:
        return {"vocab": self.vocab}

    def load_state(self, state: dict) -> None:
        self.vocab = state["vocab"]
        self._index = {v: i + 1 for i, v in enumerate(self.vocab)}

    def collate(self, items: list[str]) -> tuple[Tensor, None]:
        return torch.tensor([self._index.get(v, 0) for v in items], dtype=torch.long), None

    def describe(self) -> dict:
        return {"vocab_size": len(self.vocab) + 1}


@corruption(NumberModality, "noise")
def number_noise(v: float, s: float, rng) -> float:
    """Gaussian noise of standard deviation s x (|value| + 1)."""
    return float(v + rng.normal(0, s * (abs(v) + 1)))


@corruption(CategoryModality, "unknown")
def category_unknown(v: str, s: float, rng) -> str:
    """With probability s, the category becomes one the model has not seen."""
    return "\x00unseen" if rng.random() < s else v
