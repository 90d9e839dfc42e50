"""Adding a component is one file: a new modality (with its encoder), a new fusion and a new task, each written here
as a user would write its file, registered, and used end to end (fit, evaluate, predict, explain, save and reload,
`polymodal components`) without touching polymodal's own code."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MetricCollection

import polymodal as pm
from polymodal.encoders.base import ENCODERS, Encoder, EncoderConfig
from polymodal.fusion.base import FUSIONS, Fusion, mlp
from polymodal.modalities.base import MODALITIES, Modality, ModalityConfig
from polymodal.modalities.corruptions import corruption
from polymodal.tasks.base import TASKS
from polymodal.tasks.regression import Regression


# -- the "one file" of a modality: a handful of numbers per row, read from a "1 2 3" string ----------------------------
class ReadingsConfig(ModalityConfig):
    length: int = Field(4, ge=1, description="Numbers per value.")


class Readings(Modality):
    Config = ReadingsConfig
    default_encoder = "readings_mlp"

    def decode(self, value, base_dir: Path) -> Tensor:
        nums = [float(v) for v in str(value).split()]
        if len(nums) != self.config.length:
            from polymodal.errors import BadInput

            raise BadInput(f"expected {self.config.length} numbers, got {len(nums)}")
        return torch.tensor(nums)

    def placeholder(self) -> Tensor:
        return torch.zeros(self.config.length)

    def collate(self, items: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        return torch.stack(items), None

    def describe(self) -> dict:
        return {"length": self.config.length}


def readings_noise(x: Tensor, s: float, rng) -> Tensor:
    """Gaussian noise of standard deviation s."""
    return x + torch.from_numpy(rng.normal(0, s, x.shape)).float()


class ReadingsMLP(Encoder):
    def __init__(self, config: EncoderConfig, modality: Modality, dim: int) -> None:
        super().__init__(config, modality, dim)
        self.net = nn.Sequential(nn.Linear(modality.describe()["length"], dim), nn.GELU())

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        pooled = self.net(data)
        return pooled[:, None], torch.ones(len(data), 1, dtype=torch.bool, device=data.device), pooled


# -- the one file of a fusion: the sum of the pooled vectors of the present inputs -------------------------------------
class SumFusion(Fusion):
    def __init__(self, config, names: list[str], dim: int) -> None:
        super().__init__(config, names, dim)
        self.post = mlp(dim, config.hidden, config.dropout)

    def forward(self, inputs):
        from polymodal.types import Fused

        total = sum(inputs[n].pooled for n in self.names)
        return Fused(self.post(total))


# -- the one file of a task: regression scored by the absolute error (median regression) -------------------------
class L1Regression(Regression):
    monitor, monitor_mode = "mae", "min"

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return nn.functional.l1_loss(out.float().squeeze(-1), (target - self.mean) / self.std)

    def metrics(self) -> MetricCollection:
        return MetricCollection({"mae": MeanAbsoluteError()})


@contextlib.contextmanager
def registered():
    added = [(MODALITIES, "readings", Readings), (ENCODERS, "readings_mlp", ReadingsMLP),
             (FUSIONS, "sum", SumFusion), (TASKS, "l1_regression", L1Regression)]
    for registry, name, cls in added:
        registry.register(name)(cls)
    corruption(Readings, "noise")(readings_noise)
    try:
        yield
    finally:  # the rest of the suite sees only polymodal's own components
        for registry, name, _ in added:
            registry._items.pop(name)


def rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=4)
        out.append({"r": " ".join(f"{v:.4f}" for v in x), "s": " ".join(f"{v:.4f}" for v in rng.normal(size=4)),
                    "y": float(2 * x[0] - x[1] + 0.05 * rng.normal())})
    return out


def test_a_new_modality_encoder_fusion_and_task_work_end_to_end(tmp_path):
    from polymodal.cli.components import component_table

    with registered():
        recipe = {"inputs": [{"name": "r", "modality": "readings"}, {"name": "s", "modality": "readings"}],
                  "target": {"column": "y", "task": "l1_regression"},
                  "model": {"dim": 16, "fusion": {"method": "sum", "hidden": 32, "dropout": 0.0}},
                  "training": {"epochs": 30, "batch_size": 32, "lr": 0.01, "progress": False, "patience": 30}}
        model = pm.fit(recipe, train=rows(320, 0), test=rows(100, 1), out=tmp_path / "m")
        assert model.metrics["test"]["mae"] < 0.5  # the target's std is about 2.2
        assert model.metrics["test"]["reliance"]["r"] > model.metrics["test"]["reliance"]["s"]
        report = model.evaluate(rows(100, 1), robustness=True)
        assert set(report["robustness"]["curves"]["r"]) == {"noise"}
        pred = model.predict({"r": "1 0 0 0", "s": None})
        reloaded = pm.load(tmp_path / "m")
        assert reloaded.predict({"r": "1 0 0 0", "s": None}) == pred
        assert set(model.explain(rows(1, 2)[0])["shapley"]) == {"r", "s"}
        table = component_table()
        assert table["modality"]["readings"]["facts"]["corruptions"] == ["noise"]
        assert "sum" in table["fusion"] and "l1_regression" in table["task"] and "readings_mlp" in table["encoder"]
    assert "readings" not in MODALITIES and "sum" not in FUSIONS
