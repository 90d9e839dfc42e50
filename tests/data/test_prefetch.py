"""The background-collation loader yields exactly what a plain DataLoader yields, surfaces collation errors, and
lets go of its thread when the consumer stops early."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader

from polymodal.data import GroupedBatchSampler, PrefetchLoader


def collate(rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows) * 10


def test_prefetch_yields_the_same_batches_in_the_same_order_every_epoch():
    def loaders():
        plain = DataLoader(range(50), batch_sampler=GroupedBatchSampler(list(range(50)), 8, True, 3),
                           collate_fn=collate)
        ahead = PrefetchLoader(range(50), batch_sampler=GroupedBatchSampler(list(range(50)), 8, True, 3),
                               collate_fn=collate, prefetch=2)
        return plain, ahead

    plain, ahead = loaders()
    for _ in range(3):  # the sampler reshuffles each epoch; both follow the same order
        a, b = [x.tolist() for x in plain], [x.tolist() for x in ahead]
        assert a == b and len(a) == len(ahead) == 6
    assert sorted(v for batch in b for v in batch) == [10 * i for i in range(50)]


def test_a_collation_error_is_raised_in_the_training_loop():
    def broken(rows):
        if 7 in rows:
            raise ValueError("row 7: unreadable image")
        return rows

    loader = PrefetchLoader(range(20), batch_size=4, collate_fn=broken, prefetch=2)
    seen = []
    with pytest.raises(ValueError, match="row 7"):
        for batch in loader:
            seen.append(batch)
    assert seen == [[0, 1, 2, 3]]


def test_stopping_early_releases_the_collation_thread():
    loader = PrefetchLoader(range(1000), batch_size=1, collate_fn=lambda r: r, prefetch=2)
    it = iter(loader)
    assert next(it) == [0]
    it.close()
    deadline = time.time() + 5
    while any(t.name == "polymodal-collate" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "polymodal-collate" for t in threading.enumerate())


def test_prefetch_zero_is_a_plain_loader():
    loader = PrefetchLoader(range(6), batch_size=3, collate_fn=lambda r: r, prefetch=0)
    assert [b for b in loader] == [[0, 1, 2], [3, 4, 5]]
    assert not isinstance(iter(loader), type(x for x in ()))
