"""The predictive kind (classification, multilabel, regression): every input's encoder, a fusion, a head over the
fused representation, optional auxiliary heads per input. Evaluated by metrics on predictions, with modality reliance
and robustness curves; explained by Shapley values of a predicted score."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..fusion import FUSIONS
from ..fusion.base import FusionConfig, mlp
from ..registry import validate_config
from ..types import Batch, Encoded, Fused
from .base import StepRNG, Task, TrainingPlan, present_weights


class MultimodalNet(nn.Module):
    """inputs -> per-input encoders -> fusion -> task head."""

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, head: nn.Module,
                 unimodal_heads: dict[str, nn.Module] | None = None, alone_by_head: bool = False) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = head
        self.unimodal_heads = nn.ModuleDict(unimodal_heads or {})
        self.alone_by_head = alone_by_head and bool(unimodal_heads)

    def encode(self, batch: Batch) -> dict[str, Encoded]:
        return {name: enc(batch[name]) for name, enc in self.encoders.items()}

    def fuse(self, encoded: dict[str, Encoded]) -> Fused:
        return self.fusion(encoded)

    def forward(self, batch: Batch) -> Tensor:
        encoded = self.encode(batch)
        out = self.head(self.fuse(encoded).pooled)
        if self.alone_by_head and len(encoded) > 1:  # rows with one input present: that input's own head
            present = torch.stack([e.present for e in encoded.values()], 1)
            alone = present.sum(1) == 1
            for i, (name, enc) in enumerate(encoded.items()):  # no data-dependent branch: exportable
                rows = alone & present[:, i]
                out = torch.where(rows[:, None], self.unimodal_heads[name](enc.pooled).to(out.dtype), out)
        return out


def unimodal_head(task: "PredictiveTask", dim: int, fusion: FusionConfig, kind: str) -> nn.Module:
    """An input's auxiliary head: linear, or the stack a unimodal model has (the fusion's post-layer, the head)."""
    if kind == "linear":
        return task.head(dim)
    return nn.Sequential(mlp(dim, fusion.hidden, fusion.dropout), task.head(fusion.hidden))


class PredictiveTask(Task):
    """A head over the fused representation; subclasses give the head, loss, metrics and decoding."""

    # -- subclass hooks ----------------------------------------------------------------------------------------------
    def head(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def report(self, out: Tensor, target: Tensor) -> dict:
        """Metrics of a split's outputs against its targets (and the loss)."""
        metrics = self.metrics()
        self.update_metrics(metrics, out, target)
        result = {k: round(float(v), 6) for k, v in metrics.compute().items()}
        result["loss"] = round(float(self.loss(out, target)), 6)
        return result

    # -- the network -------------------------------------------------------------------------------------------------
    def build_net(self, encoders: dict[str, nn.Module], kinds: dict[str, str], modalities: dict[str, Any],
                  recipe: Any) -> MultimodalNet:
        fusion_cfg = dict(recipe.model.fusion)
        fcls = FUSIONS.get(fusion_cfg.get("method", "concat"), "model.fusion.method")
        fconf = validate_config(fcls.Config, fusion_cfg, "model.fusion")
        fusion = fcls(fconf, list(kinds), recipe.model.dim)
        torch.manual_seed(recipe.training.seed)
        aux = {n: unimodal_head(self, recipe.model.dim, fconf, recipe.model.unimodal_head) for n in kinds} \
            if recipe.model.unimodal_heads > 0 else None
        return MultimodalNet(encoders, fusion, self.head(fusion.out_dim), aux, recipe.model.alone == "head")

    @classmethod
    def architecture(cls, recipe: dict) -> dict:
        return {"fusion": recipe["model"]["fusion"]}

    # -- training ----------------------------------------------------------------------------------------------------
    def training_plan(self, cfg: Any, inputs: int) -> TrainingPlan:
        return TrainingPlan(steps_per_call=cfg.steps_per_call, modality_dropout=cfg.modality_dropout,
                            alone_scores=cfg.select == "robust" and inputs > 1)

    def training_loss(self, net: MultimodalNet, inputs: dict, target: Tensor | None, unimodal_weight: float,
                      rng: StepRNG) -> tuple[Tensor, dict[str, tuple[Tensor, int]]]:
        encoded = net.encode(inputs)  # modality dropout happened in collation (the `present` flags)
        loss = self.loss(net.head(net.fuse(encoded).pooled), target)
        logged = {"train_loss": (loss, len(target))}
        if unimodal_weight > 0:
            heads = list(net.unimodal_heads.items())
            weights = present_weights([encoded[n].present for n, _ in heads], len(target))
            aux = []
            for (n, head), w in zip(heads, weights):
                p = encoded[n].present
                if w == 0:  # no process has this input in the batch
                    continue
                aux.append(self.loss(head(encoded[n].pooled[p]), target[p]) * (p.sum() * w) if bool(p.any())
                           else encoded[n].pooled.sum() * 0.0)  # this process has none: it adds nothing
            if aux:
                aux_loss = torch.stack(aux).mean()
                logged["train_unimodal_loss"] = (aux_loss, len(target))
                loss = loss + unimodal_weight * aux_loss
        return loss, logged

    def validation_loss(self, net: nn.Module, inputs: dict, out: Tensor, target: Tensor | None) -> Tensor:
        return self.loss(out, target)

    # -- evaluation --------------------------------------------------------------------------------------------------
    def evaluate(self, run: Any, *, robustness: bool = False, baseline: Any = None, out: str | Path | None = None,
                 progress: Any = None, by: str | None = None) -> dict:
        """Metrics on a labelled table and modality reliance. robustness: also every subset of inputs removed and
        curves over ten severities of each corruption (drawn into `out`), with effective robustness against
        `baseline` (a late-fusion model's robustness report, or a path to one). by: also the metrics of each group
        of rows sharing a value in that column (`by`: {value: metrics})."""
        data = run.read("required", keep_raw=robustness)
        result = run.score(data)
        if by is not None:
            result["by"] = run.by_group(data, by)
        run.add_reliance(data, result)
        if robustness:
            result["robustness"] = run.robustness(data, baseline, progress, out)
        return result
