"""The contracts between layers: what a modality batches, what an encoder returns, what a fusion returns."""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class ModalityBatch:
    """One input's values for a batch of rows.

    Rows that share a value (a VQA image with ten questions) are stored once: `data` holds the U distinct values and
    `index[b]` says which of them row b uses, so an encoder runs once per distinct value.
    """

    data: Tensor  # [U, ...] distinct values, padded
    mask: Tensor | None  # [U, T] True where a token/frame/step is real; None for fixed-size inputs
    present: Tensor  # [B] bool: False where the row has no value for this input
    index: Tensor  # [B] long: row -> position in data (any valid position where absent)
    augmented: Tensor | None = None  # [B] bool: True where training augmentation corrupted the row's value

    def to(self, device: torch.device | str) -> "ModalityBatch":
        return ModalityBatch(
            self.data.to(device, non_blocking=True),
            None if self.mask is None else self.mask.to(device, non_blocking=True),
            self.present.to(device, non_blocking=True),
            self.index.to(device, non_blocking=True),
            None if self.augmented is None else self.augmented.to(device, non_blocking=True),
        )


@dataclass
class Encoded:
    """What every encoder returns, per row."""

    tokens: Tensor  # [B, T, D]
    mask: Tensor  # [B, T] bool, True where real
    pooled: Tensor  # [B, D]
    present: Tensor  # [B] bool


@dataclass
class Fused:
    """What every fusion returns: a pooled representation per row, and attention maps where it has them."""

    pooled: Tensor  # [B, D]
    attention: dict[str, Tensor] = field(default_factory=dict)


Batch = dict[str, ModalityBatch]


def restrict_batch(batch: Batch, reads: Collection[str] | None) -> Batch:
    """The batch as an ensemble member that reads only `reads` sees it: every other input absent in every row
    (None: the batch as it is)."""
    if reads is None:
        return batch
    return {name: mb if name in reads else replace(mb, present=torch.zeros_like(mb.present))
            for name, mb in batch.items()}


def member_inputs(members: list, views: list[tuple[str, ...] | None]) -> list[set[str]]:
    """The inputs each ensemble member reads: its encoders' inputs, held to `views[m]` where given."""
    return [set(m.encoders) & set(v) if v is not None else set(m.encoders) for m, v in zip(members, views)]


def seen_by(batch: Batch, member_inputs: list[Collection[str]]) -> Tensor:
    """[B, M] bool: True where member m has a value of one of its inputs in row b. A row no member sees counts as
    seen by all (each gives its output for "nothing present")."""
    present = next(iter(batch.values())).present
    columns = []
    for names in member_inputs:
        col = torch.zeros_like(present)
        for name in names:
            if name in batch:
                col = col | batch[name].present
        columns.append(col)
    sees = torch.stack(columns, 1)
    return torch.where(sees.any(1, keepdim=True), sees, torch.ones_like(sees))


ROW_RULES = ("all", "closest", "widest", "first")


def reading_members(batch: Batch, member_inputs: list[Collection[str]], rule: str = "all") -> Tensor:
    """[B, M] bool: the members an ensemble combines for each row. all: every member that sees the row (`seen_by`).
    closest: of those, the members whose inputs best match the row's: the most of their inputs present, less the
    ones absent (an audio + image model for a row with both, the image model alone for a row without its audio;
    ties combined). widest: of those, every member but the ones a wider member covers: a member gives way to one
    whose inputs include its own and are all present in the row (a row with both inputs: the audio + image model
    alone; a row without its audio: the image model and the audio + image model reading its image). first: the
    first member (in the order given) that sees the row, alone."""
    sees = seen_by(batch, member_inputs)
    if rule == "all":
        return sees
    if rule == "first":
        first = torch.arange(sees.shape[1], 0, -1, device=sees.device)[None] * sees  # earlier members score higher
        return torch.zeros_like(sees).scatter_(1, first.argmax(1, keepdim=True), True)
    if rule not in ROW_RULES:
        raise ValueError(f"unknown ensemble row rule {rule!r} (one of {', '.join(ROW_RULES)})")
    present = next(iter(batch.values())).present

    def has(name: str) -> Tensor:
        return batch[name].present if name in batch else torch.zeros_like(present)

    if rule == "closest":
        match = []
        for names in member_inputs:
            score = torch.zeros(present.shape, dtype=torch.long, device=present.device)
            for name in names:
                score = score + has(name).long() * 2 - 1
            match.append(score)
        scores = torch.stack(match, 1).masked_fill(~sees, torch.iinfo(torch.long).min)
        return scores == scores.max(1, keepdim=True).values
    complete = [torch.stack([has(n) for n in names], 1).all(1) if names else torch.ones_like(present)
                for names in member_inputs]
    keep = sees.clone()
    for m, names in enumerate(member_inputs):
        for w, wider in enumerate(member_inputs):
            if set(names) < set(wider):  # m gives way where the wider member has all its inputs
                keep[:, m] &= ~(complete[w] & sees[:, w])
    return keep
