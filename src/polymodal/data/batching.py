"""Batches from a read table: each input's distinct values in the batch are collated once and indexed out to rows;
rows sharing a value can be grouped into the same batches so it is encoded once per batch."""
from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from ..modalities.base import Modality
from ..types import Batch, ModalityBatch
from .dataset import ReadTable, TargetCodec
from .shards import Unreadable


class Rows(list):
    """A training batch's row positions, and its key (epoch, position in the epoch's order), from which its random
    draws are seeded: they are the same whichever process or loader worker makes the batch, and a run resumed in the
    middle of an epoch makes the batches the uninterrupted run would have."""

    def __init__(self, rows: list[int], key: tuple[int, int] | None = None) -> None:
        super().__init__(rows)
        self.key = key


class Collator:
    """list of row positions -> (Batch, targets or None). For training: with `augment` > 0, each distinct value in a
    batch is replaced, with that probability, by a random corruption of it at a random severity; with
    `modality_dropout`, each input of each row is hidden with its probability (its value is still collated, the
    row's `present` flag says it is absent), a row keeping at least one of the inputs it has. A batch with a key
    (`Rows`, from the training sampler) draws from a generator seeded by (seed, epoch, batch); others from the
    collator's own stream.

    With `shard` (training under DDP), each process is handed the global batch and keeps its share of the rows
    (rank, rank + world, ...) after the modality-dropout draws, which are made for the whole batch from the same
    seeded stream on every process: the rows, the inputs they lose and so the averaged gradients are those of one
    process on the global batch. Augmentation draws stay each process's own (only its rows are corrupted)."""

    def __init__(self, data: ReadTable, modalities: dict[str, Modality], task: TargetCodec | None, augment: float = 0.0,
                 seed: int = 0, modality_dropout: float | dict[str, float] = 0.0, shard: bool = False,
                 augment_with: list[str] | None = None) -> None:
        self.data, self.modalities, self.task = data, modalities, task
        self.augment = augment if data.raw is not None else 0.0
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.ids = {n: np.asarray(data.ids[n], dtype=np.int64) for n in modalities}  # row -> value id, -1: absent
        rates = [modality_dropout.get(n, 0.0) if isinstance(modality_dropout, dict) else modality_dropout
                 for n in modalities]
        self.dropout = np.asarray(rates, dtype=np.float64) if len(rates) > 1 and any(rates) else None
        self.shard = shard
        self.augment_with = set(augment_with) if augment_with else None
        self._rank: tuple[int, int] | None = None
        self._worker: int | None = None

    def __call__(self, rows: list[int]) -> tuple[Batch, torch.Tensor | None]:
        key = getattr(rows, "key", None)
        if key is not None:  # a training batch: its draws depend on where it stands in the epoch, nothing else
            rng = np.random.default_rng([self.seed, *key])
        else:
            self._reseed_in_worker()
            rng = self.rng
        positions = np.asarray(rows, dtype=np.int64)
        ids = {name: self.ids[name][positions] for name in self.modalities}
        present = {name: i >= 0 for name, i in ids.items()}
        if self.dropout is not None:
            kept = drop_inputs(np.stack(list(present.values()), 1), self.dropout, rng)
            present = {name: kept[:, m] for m, name in enumerate(present)}
        rank, world = self._rank or (process_rank() if self.shard else (0, 1))
        if world > 1:  # this process's share of the global batch
            take = np.arange(len(rows))[rank::world] if len(rows) > rank else np.arange(1)
            rows = [rows[t] for t in take]
            ids = {name: i[take] for name, i in ids.items()}
            present = {name: p[take] for name, p in present.items()}
        batch: Batch = {}
        for name, modality in self.modalities.items():
            items, corrupted = self.data.items[name], None
            if self.augment > 0:
                items, changed = self._augmented(name, modality, ids[name].tolist(), items, rng)
                corrupted = np.isin(ids[name], changed)
            batch[name] = collate_input(modality, ids[name], items, present[name], corrupted)
        targets = None
        if self.task is not None and self.data.targets is not None:
            targets = self.task.collate([self.data.targets[r] for r in rows])
        return batch, targets

    def fix_rank(self) -> None:
        """Take this process's DDP rank now (the loader calls it before its worker processes start)."""
        self._rank = process_rank() if self.shard else None

    def _reseed_in_worker(self) -> None:
        """In a DataLoader worker process, a random stream of its own (a copy of the parent's would repeat it)."""
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker != info.id:
            self._worker = info.id
            self.rng = np.random.default_rng([self.seed, info.id + 1])  # [s, 0] would seed as s alone

    def _augmented(self, name: str, modality: Modality, ids: list[int], items: list[Any],
                   rng: np.random.Generator) -> tuple[dict[int, Any] | list, list[int]]:
        """The items with some of these ids' values corrupted, and the corrupted ids."""
        kinds = [fn for n, fn in modality.corruptions.items() if self.augment_with is None or n in self.augment_with]
        if not kinds:
            return items, []
        out = _Overlay(items)
        for i in sorted({i for i in ids if i >= 0}):
            if rng.random() < self.augment:
                fn = kinds[int(rng.integers(len(kinds)))]
                out[i] = modality.features(fn(self.data.raw[name][i], float(rng.uniform(0.1, 1.0)), rng))
        return out, list(out.keys())


class _Overlay(dict):
    """A few replaced items over the shared list (no copy of the whole list)."""

    def __init__(self, base: list) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, key: int) -> Any:
        return self.base[key]


def collate_input(modality: Modality, ids: np.ndarray | list[int], items: list[Any] | dict[int, Any],
                  present: np.ndarray | None = None, augmented: np.ndarray | None = None) -> ModalityBatch:
    """One input's batch from its rows' value ids (< 0: absent): the distinct values collated once (in id order)
    and each row's position among them. `present` (default: ids >= 0) can mark more rows absent; `augmented` marks
    the rows whose value training augmentation corrupted (None: no augmentation)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    distinct, index = np.unique(ids, return_inverse=True)
    index = index.reshape(-1)
    if len(distinct) and distinct[0] < 0:  # absent rows: not a value (they point at any valid position)
        distinct, index = distinct[1:], np.maximum(index - 1, 0)
    values = [items[i] for i in distinct.tolist()] or [modality.placeholder()]
    present = ids >= 0 if present is None else present & (ids >= 0)
    unreadable = [k for k, v in enumerate(values) if isinstance(v, Unreadable)]
    if unreadable:  # a shard value that failed to decode (on_bad_input: skip): its rows have the input missing
        for k in unreadable:
            values[k] = modality.placeholder()
        present = present & ~np.isin(index, unreadable)
    data, mask = modality.collate(values)
    return ModalityBatch(data, mask, torch.from_numpy(np.ascontiguousarray(present)), torch.from_numpy(index),
                         None if augmented is None else torch.from_numpy(np.ascontiguousarray(augmented, dtype=bool)))


def drop_inputs(present: np.ndarray, rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Modality dropout on [rows, inputs] present flags: each input of each row hidden with its rate; a row that
    would lose all the inputs it has gets one of them back, at random."""
    u = rng.random((2, *present.shape))
    kept = present & (u[0] >= rates)
    score = np.where(present, u[1], -1.0)
    pick = present & (score == score.max(1, keepdims=True))
    return kept | (pick & ~kept.any(1, keepdims=True))


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process in a torch.distributed group (Lightning's DDP), or (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GroupedBatchSampler(Sampler[list[int]]):
    """Shuffles groups of rows that share a key (absent rows are their own groups) and fills batches of about
    batch_size rows with whole groups. A new order each epoch, seeded (the same on every DDP process: the Collator
    takes each process's share of a batch)."""

    def __init__(self, keys: list[int], batch_size: int, shuffle: bool, seed: int) -> None:
        groups: dict[Any, list[int]] = {}
        for row, key in enumerate(keys):
            groups.setdefault(key if key >= 0 else ("row", row), []).append(row)
        self.groups = list(groups.values())
        self.batch_size, self.shuffle, self.seed, self.epoch, self.skip = batch_size, shuffle, seed, 0, 0
        self._batches = self._make()

    def _make(self) -> list[list[int]]:
        """The same number of batches every epoch (Lightning counts them once), of whole groups where possible."""
        order = list(range(len(self.groups)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)
        total = sum(len(g) for g in self.groups)
        n = min(len(self.groups), max(1, round(total / self.batch_size)))
        batches: list[list[int]] = [[] for _ in range(n)]
        start = 0
        for g in order:
            batches[min(n - 1, start * n // total)].extend(self.groups[g])
            start += len(self.groups[g])
        batches = [b for b in batches if b]
        while len(batches) < n:  # a group larger than a batch left a slot empty: split the largest batch
            big = max(range(len(batches)), key=lambda i: len(batches[i]))
            half = len(batches[big]) // 2
            batches[big:big + 1] = [batches[big][:half], batches[big][half:]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches, epoch, skip = self._batches, self.epoch, self.skip
        self.skip = 0
        self.set_epoch(self.epoch + 1)
        return (Rows(b, (epoch, i)) for i, b in enumerate(batches) if i >= skip)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """The next iteration gives epoch `epoch`'s order from its batch `skip` on (a run resumed at the end of an
        epoch or in the middle of one continues the uninterrupted run's)."""
        self.epoch, self.skip = epoch, skip
        self._batches = self._make()

    def __len__(self) -> int:
        return len(self._batches)


class ChunkedBatchSampler(Sampler[list[list[int]]]):
    """Hands over `steps` consecutive batches of another batch sampler at a time (the last chunk of an epoch may be
    shorter): the training loop takes one optimizer step per batch, so Lightning's per-call bookkeeping is paid once
    per chunk. The batches and their order are the inner sampler's."""

    def __init__(self, batches: Sampler[list[int]], steps: int) -> None:
        self.batches, self.steps = batches, max(1, steps)

    def __iter__(self) -> Iterator[list[list[int]]]:
        chunk: list[list[int]] = []
        for rows in self.batches:
            chunk.append(rows)
            if len(chunk) == self.steps:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def __len__(self) -> int:
        return -(-len(self.batches) // self.steps)

    @property
    def optimizer_steps(self) -> int:
        """Batches per epoch: one optimizer step each."""
        return len(self.batches)


class ChunkCollator:
    """A chunk of batches' rows -> a list of collated batches."""

    def __init__(self, collate: Collator) -> None:
        self.collate = collate

    def __call__(self, chunk: list[list[int]]) -> list[tuple[Batch, torch.Tensor | None]]:
        return [self.collate(rows) for rows in chunk]


def choose_group_input(data: ReadTable, setting: str | None, modalities: dict[str, Modality],
                       batch_size: int) -> str | None:
    """The input to group batches by: the one named, or with 'auto' the input of a groupable modality (image, video,
    audio) whose values repeat most (at least twice per distinct value on average, and groups small enough to fill
    several per batch)."""
    if setting is None:
        return None
    if setting != "auto":
        return setting
    best, best_ratio = None, 2.0
    for name, modality in modalities.items():
        present = sum(1 for i in data.ids[name] if i >= 0)
        distinct = len(set(data.ids[name]) - {-1})
        ratio = present / distinct if distinct else 0.0
        if modality.groupable and ratio >= best_ratio and ratio <= batch_size / 2:
            best, best_ratio = name, ratio
    return best
