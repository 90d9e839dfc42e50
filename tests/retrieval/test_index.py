"""The faiss index on disk: exact and IVF search, recall against exact, incremental add, save/open, errors."""
from __future__ import annotations

import numpy as np
import pytest

from polymodal.errors import PolymodalError
from polymodal.retrieval import VectorIndex


def unit(rng, n, d=32, centres=None):
    if centres is None:
        x = rng.standard_normal((n, d)).astype(np.float32)
    else:
        x = centres[rng.integers(len(centres), size=n)] + 0.15 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_index_finds_each_vector_first_and_round_trips(tmp_path):
    x = unit(np.random.default_rng(0), 200)
    idx = VectorIndex.create(x, [{"row": i} for i in range(200)], {"model": "m", "input": "image"})
    assert idx.meta["kind"] == "exact"
    scores, pos = idx.search(x[:20], 3)
    assert (pos[:, 0] == np.arange(20)).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    idx.save(tmp_path / "idx")
    back = VectorIndex.open(tmp_path / "idx")
    assert len(back) == 200 and back.items[7] == {"row": 7} and back.meta["input"] == "image"
    assert np.array_equal(back.search(x[:5], 3)[1], pos[:5])


def test_ivf_recall_against_exact_on_clustered_vectors():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((50, 32)).astype(np.float32)
    x, q = unit(rng, 5000, centres=centres), unit(rng, 100, centres=centres)
    exact = VectorIndex.create(x, [{}] * len(x), {}, kind="exact")
    ivf = VectorIndex.create(x, [{}] * len(x), {}, kind="ivf", nlist=50, nprobe=8)
    assert ivf.meta["kind"] == "ivf" and ivf.meta["nlist"] == 50
    truth = exact.search(q, 10)[1]
    found = ivf.search(q, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9
    pq = VectorIndex.create(x, [{}] * len(x), {}, kind="ivfpq", nlist=50, nprobe=8, pq_m=8)
    assert pq.search(q, 10)[1].shape == (100, 10)


def test_add_grows_an_index_and_checks_the_width(tmp_path):
    rng = np.random.default_rng(2)
    idx = VectorIndex.create(unit(rng, 10), [{"row": i} for i in range(10)], {})
    extra = unit(rng, 5)
    idx.add(extra, [{"row": 10 + i} for i in range(5)])
    assert len(idx) == 15 and idx.search(extra[:1], 1)[1][0, 0] == 10
    with pytest.raises(PolymodalError, match="width"):
        idx.add(unit(rng, 2, d=8), [{}, {}])


def test_open_rejects_what_is_not_an_index(tmp_path):
    with pytest.raises(PolymodalError, match="not a polymodal index"):
        VectorIndex.open(tmp_path)
    with pytest.raises(PolymodalError, match="at least"):
        VectorIndex.create(unit(np.random.default_rng(3), 10), [{}] * 10, {}, kind="ivf", nlist=64)
