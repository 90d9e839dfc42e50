"""Fusion: every input's Encoded (with its `present` flags) -> one pooled representation per row."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..registry import Registry
from ..types import Encoded, Fused


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str = Field("concat", description="Fusion method (a name in the fusion registry).")
    hidden: int = Field(256, ge=1, description="Width of the layer after the fusion operator (the fused "
                        "representation the task head reads).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the fusion MLP.")


class Fusion(nn.Module):
    """Inputs are keyed by input name; any subset may be absent per row (absent rows carry the learnt missing
    embedding and present=False). `out_dim` is the width of `Fused.pooled`."""

    Config: ClassVar[type[FusionConfig]] = FusionConfig
    registry_name: ClassVar[str] = ""
    models_interactions: ClassVar[bool] = True  # False for decision-level (additive) fusion
    attends_tokens: ClassVar[bool] = False  # True where the cost grows with the inputs' token counts (attention)

    def __init__(self, config: FusionConfig, names: list[str], dim: int) -> None:
        super().__init__()
        self.config, self.names, self.dim = config, list(names), dim
        self.out_dim = config.hidden

    def forward(self, inputs: dict[str, Encoded]) -> Fused:
        raise NotImplementedError

    @classmethod
    def facts(cls) -> dict:
        """What `polymodal components` shows besides the config."""
        return {"models_interactions": cls.models_interactions, "attends_tokens": cls.attends_tokens}


FUSIONS: Registry[Fusion] = Registry("fusion")


def mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The layer after a fusion operator: Linear -> GELU -> Dropout; the task head (linear) follows it."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))


def attention_layer(dim: int, heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)


def pooled_stack(inputs: dict[str, Encoded], names: list[str]) -> Tensor:
    """[B, M, D] of each input's pooled vector, in the fusion's input order."""
    import torch

    return torch.stack([inputs[n].pooled for n in names], 1)
