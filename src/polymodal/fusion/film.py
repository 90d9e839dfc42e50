"""FiLM (Perez et al. 2018): one input (the conditioner) scales and shifts every other input's features."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..errors import RecipeError
from ..types import Encoded, Fused
from .base import FUSIONS, Fusion, FusionConfig, mlp


class FiLMConfig(FusionConfig):
    condition: str | None = Field(None, description="The conditioning input's name (default: the last input).")


@FUSIONS.register("film")
class FiLMFusion(Fusion):
    Config = FiLMConfig
    config: FiLMConfig

    def __init__(self, config: FiLMConfig, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.cond = config.condition or names[-1]
        if self.cond not in names:
            raise RecipeError(f"field `model.fusion.condition`: '{self.cond}' is not an input "
                              f"(inputs: {', '.join(names)})")
        self.others = [n for n in names if n != self.cond] or [self.cond]
        self.film = nn.ModuleDict({n: nn.Linear(dim, 2 * dim) for n in self.others})
        for lin in self.film.values():  # start as the identity modulation
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.feat = nn.ModuleDict({n: nn.Linear(dim, dim) for n in self.others})
        self.mlp = mlp(dim * (len(self.others) + 1), config.hidden, config.dropout)

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        c = inputs[self.cond].pooled
        outs = [c]
        for n in self.others:
            gamma, beta = self.film[n](c).chunk(2, -1)
            outs.append(torch.relu((1 + gamma) * self.feat[n](inputs[n].pooled) + beta))
        return Fused(self.mlp(torch.cat(outs, -1)))
