"""Contrastive learning of a joint embedding space from pairs (CLIP's symmetric InfoNCE, or SigLIP's sigmoid loss).
Each input is encoded and projected into one shared, L2-normalised space; with more than two inputs, each is bound to
an anchor input (ImageBind) or every pair is used. An optional label column makes retrieval metrics class-level."""
from __future__ import annotations

import itertools
import math
import zlib
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torchmetrics import Metric

from ..errors import PolymodalError
from ..modalities.augment import ImageAugmentConfig, augment_images
from ..types import Batch
from .base import TASKS, StepRNG, Task, TaskConfig, TrainingPlan
from .classification import as_label


class ContrastiveConfig(TaskConfig):
    loss: Literal["clip", "siglip"] = Field("clip", description="clip: symmetric softmax cross-entropy (InfoNCE) over "
                                            "the batch; siglip: a sigmoid loss on every pair.")
    pairs: Literal["anchor", "all"] = Field("all", description="With more than two inputs: bind each input to the "
                                            "anchor (ImageBind), or train every pair.")
    anchor: str | None = Field(None, description="The anchor input's name (default: the first input).")
    embed_dim: int | None = Field(None, ge=2, description="Width of the shared space (default: model.dim).")
    temperature: float = Field(0.07, gt=0, description="Initial softmax temperature (CLIP: 0.07); SigLIP starts at "
                               "0.1 with a bias of -10.")
    learn_temperature: bool = Field(True, description="Learn the temperature (CLIP caps the scale at 100).")
    label_positives: bool = Field(False, description="Rows that share a label count as matching pairs (supervised "
                                  "contrastive); by default only a row's own pair, and rows with an identical value, "
                                  "match.")
    image_augment: ImageAugmentConfig = Field(default_factory=ImageAugmentConfig,
                                              description="Image augmentations applied to training batches.")


class EmbeddingHead(nn.Module):
    """A linear projection per input into the shared space, and the learnt logit scale (and SigLIP's bias)."""

    def __init__(self, names: list[str], dim: int, config: ContrastiveConfig) -> None:
        super().__init__()
        out = config.embed_dim or dim
        self.proj = nn.ModuleDict({n: nn.Linear(dim, out) for n in names})
        siglip = config.loss == "siglip"
        scale = math.log(10.0) if siglip else math.log(1.0 / config.temperature)
        self.logit_scale = nn.Parameter(torch.tensor(scale), requires_grad=config.learn_temperature)
        self.logit_bias = nn.Parameter(torch.tensor(-10.0 if siglip else 0.0), requires_grad=siglip)

    def scale(self) -> Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def pair_list(names: list[str], config: ContrastiveConfig) -> list[tuple[str, str]]:
    if config.pairs == "all" or len(names) == 2:
        return list(itertools.combinations(names, 2))
    anchor = config.anchor or names[0]
    return [(anchor, n) for n in names if n != anchor]


def matches(index_a: Tensor, index_b: Tensor, labels: Tensor | None) -> Tensor:
    """[B, B] True where rows i and j form a matching pair: the same row, the same value on either side, or (when
    given) the same label."""
    pos = (index_a[:, None] == index_a[None, :]) | (index_b[:, None] == index_b[None, :])
    if labels is not None:
        pos = pos | (labels[:, None] == labels[None, :])
    return pos


Gathered = tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor], "Tensor | None"]


def global_batch(embedded: dict[str, Tensor], present: dict[str, Tensor], index: dict[str, Tensor],
                 labels: Tensor | None) -> Gathered:
    """Under DDP, every process's rows of the global batch (one process: its own), so each row's negatives are
    those one process would see. The embeddings keep their gradient through the gather (every process computes
    the same global loss; the gather's backward sums its gradients back to the rows' process, and DDP's average
    over processes leaves the gradient of that loss). Value ids are made distinct per process (a value two
    processes both hold counts as two)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embedded, present, index, labels
    from torch.distributed.nn.functional import all_gather

    world, rank = dist.get_world_size(), dist.get_rank()
    first = next(iter(embedded.values()))
    rows = torch.tensor([first.shape[0]], device=first.device)
    sizes = [torch.zeros_like(rows) for _ in range(world)]
    dist.all_gather(sizes, rows)
    most = int(max(sizes))
    valid = torch.cat([torch.arange(most, device=first.device) < s for s in sizes])

    def padded(t: Tensor) -> Tensor:
        return F.pad(t, [0, 0] * (t.dim() - 1) + [0, most - t.shape[0]])

    def gathered(t: Tensor) -> Tensor:  # without a gradient
        parts = [torch.empty_like(padded(t)) for _ in range(world)]
        dist.all_gather(parts, padded(t).contiguous())
        return torch.cat(parts)[valid]

    out = {n: torch.cat(all_gather(padded(z).contiguous()))[valid] for n, z in embedded.items()}
    present = {n: gathered(p.long()).bool() for n, p in present.items()}
    index = {n: gathered(i.long() + rank * most) for n, i in index.items()}  # ids < rows <= most on each process
    return out, present, index, (None if labels is None else gathered(labels))


def pair_loss(za: Tensor, zb: Tensor, pos: Tensor, scale: Tensor, bias: Tensor, kind: str) -> Tensor:
    logits = scale * za @ zb.T
    if kind == "siglip":
        sign = pos.float() * 2 - 1
        return -F.logsigmoid(sign * (logits + bias)).sum(1).mean()
    target = pos.float() / pos.float().sum(1, keepdim=True)  # several matches share the probability mass
    target_t = pos.T.float() / pos.T.float().sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target_t))


class RetrievalRecall(Metric):
    """Recall@1 over the whole validation set, averaged over both directions of every pair: a hit when the true
    partner (or, with labels, an item of the same label) scores at least as high as every other item."""

    full_state_update = False

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pairs = pairs
        self.add_state("emb", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, out: Tensor, target: Tensor | None) -> None:
        self.emb.append(out.float())
        self.labels.append(target if target is not None else torch.full(out.shape[:1], -1, device=out.device))

    def compute(self) -> Tensor:
        emb = torch.cat(self.emb) if isinstance(self.emb, list) else self.emb
        labels = torch.cat(self.labels) if isinstance(self.labels, list) else self.labels
        hits = []
        for a, b in self.pairs:
            for q, g in ((a, b), (b, a)):
                present = (emb[:, q].norm(dim=1) > 0) & (emb[:, g].norm(dim=1) > 0)
                zq, zg, lab = emb[present, q], emb[present, g], labels[present]
                if len(zq) == 0:
                    continue
                sims = zq @ zg.T
                best = sims.argmax(1)
                own = sims.diagonal()
                hit = sims.max(1).values <= own + 1e-5
                if bool((lab >= 0).all()):
                    hit = hit | (lab[best] == lab)
                hits.append(hit.float().mean())
        return torch.stack(hits).mean() if hits else torch.tensor(0.0)


class EmbeddingNet(nn.Module):
    """inputs -> per-input encoders -> per-input projections into one shared, normalised space (no fusion)."""

    def __init__(self, encoders: dict[str, nn.Module], head: EmbeddingHead, kinds: dict[str, str]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = head
        self.kinds = kinds  # input name -> modality (training augments images)

    def embed(self, batch: Batch) -> dict[str, Tensor]:
        """Normalised embeddings of the inputs in the batch (any subset of the model's inputs)."""
        out = {}
        for name, b in batch.items():
            pooled = self.encoders[name](b).pooled
            out[name] = nn.functional.normalize(self.head.proj[name](pooled).float(), dim=-1)
        return out

    def forward(self, batch: Batch) -> Tensor:
        """[B, inputs, E]: each input's embedding, zeros where a row lacks it (or the batch does)."""
        emb = self.embed(batch)
        first = next(iter(emb.values()))
        zeros = first.new_zeros(first.shape)
        return torch.stack([torch.where(batch[n].present[:, None], emb[n], zeros) if n in emb else zeros
                            for n in self.encoders], 1)

    def loss(self, task: "Contrastive", batch: Batch, target: Tensor | None) -> Tensor:
        return task.batch_loss(self.embed(batch), batch, target, self.head)


@TASKS.register("contrastive")
class Contrastive(Task):
    Config = ContrastiveConfig
    config: ContrastiveConfig
    monitor, monitor_mode = "recall_at_1", "max"
    gathers_batch = True  # under DDP the loss is the global batch's (global_batch): no per-process row share

    @classmethod
    def check_target(cls, column: str | None) -> None:
        """The label column is optional: with it, retrieval metrics are class-level."""

    @classmethod
    def resolve_training(cls, training: dict[str, Any]) -> None:
        training["group_by"] = None  # rows sharing a value in one batch would be false negatives
        training["modality_dropout"] = 0.0

    def training_plan(self, cfg: Any, inputs: int) -> TrainingPlan:
        return TrainingPlan()

    def build_net(self, encoders: dict[str, nn.Module], kinds: dict[str, str], modalities: dict[str, Any],
                  recipe: Any) -> EmbeddingNet:
        torch.manual_seed(recipe.training.seed)
        return EmbeddingNet(encoders, self.embedding_head(list(kinds), recipe.model.dim), kinds)

    def training_loss(self, net: EmbeddingNet, inputs: dict, target: Tensor | None, unimodal_weight: float,
                      rng: StepRNG) -> tuple[Tensor, dict[str, tuple[Tensor, int]]]:
        videos = {n for n, k in net.kinds.items() if k != "image"}  # this option augments images only
        inputs = augment_images(inputs, net.kinds, self.config.image_augment, rng(), skip=videos)
        loss = net.loss(self, inputs, target)
        return loss, {"train_loss": (loss, len(next(iter(inputs.values())).present))}

    def evaluate(self, run: Any) -> dict:
        """Retrieval recall@1/5/10 both ways for every pair of inputs (class-level too, when the table has the
        label column)."""
        return run.retrieval(run.read("optional"))

    def fit(self, targets: list[Any]) -> None:
        pass

    def encode(self, value: Any) -> int:
        return zlib.crc32(as_label(value).encode("utf-8"))  # labels only need equality: any label is welcome

    def collate(self, values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long)

    def embedding_head(self, names: list[str], dim: int) -> EmbeddingHead:
        if len(names) < 2:
            raise ValueError("a contrastive model needs at least two inputs")
        if self.config.anchor is not None and self.config.anchor not in names:
            raise ValueError(f"the anchor '{self.config.anchor}' is not an input (inputs: {', '.join(names)})")
        self.names = names
        return EmbeddingHead(names, dim, self.config)

    def batch_loss(self, embedded: dict[str, Tensor], inputs: dict, target: Tensor | None,
                   head: EmbeddingHead) -> Tensor:
        """The loss over every pair of a batch (rows where both inputs are present)."""
        losses = []
        labels = target if self.config.label_positives else None
        present = {n: inputs[n].present for n in embedded}
        index = {n: inputs[n].index for n in embedded}
        if head.training:
            embedded, present, index, labels = global_batch(embedded, present, index, labels)
        for a, b in pair_list(list(embedded), self.config):
            both = present[a] & present[b]
            if int(both.sum()) < 2:
                continue
            pos = matches(index[a][both], index[b][both], None if labels is None else labels[both])
            losses.append(pair_loss(embedded[a][both], embedded[b][both], pos, head.scale(), head.logit_bias,
                                    self.config.loss))
        if not losses:
            return sum(z.sum() for z in embedded.values()) * 0.0  # no pair in this batch: a zero that has a graph
        return torch.stack(losses).mean()

    def metrics(self):
        from torchmetrics import MetricCollection

        names = getattr(self, "names", None) or []
        idx = {n: i for i, n in enumerate(names)}
        pairs = [(idx[a], idx[b]) for a, b in pair_list(names, self.config)] if len(names) > 1 else []
        return MetricCollection({"recall_at_1": RetrievalRecall(pairs)})

    def decode(self, out: Tensor) -> list[dict]:
        names = getattr(self, "names", [])
        return [{"embedding": {n: row[i].tolist() for i, n in enumerate(names) if float(row[i].norm()) > 0}}
                for row in out]

    def explained_value(self, out: Tensor, reference: Tensor) -> Tensor:
        raise PolymodalError("explanations are for predictive tasks; a contrastive model has no prediction "
                             "(use evaluate, search or zero-shot)")
