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


def test_an_index_built_in_chunks_from_a_memmap_keeps_items_on_disk(tmp_path, monkeypatch):
    """write_index reads the vectors a chunk at a time (an .npy memmap here), streams the items to disk and opens
    them by offset; chunked and whole builds give the same index."""
    from polymodal.retrieval import index as index_module

    rng = np.random.default_rng(1)
    centres = unit(rng, 20)
    x = unit(rng, 3000, centres=centres)
    np.save(tmp_path / "x.npy", x)
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    monkeypatch.setattr(index_module, "CHUNK", 700)  # five chunks, the last a short one
    items = ({"row": i, "id": f"r{i}"} for i in range(3000))
    meta = index_module.write_index(tmp_path / "idx", memmap, items, {"model": "m"}, kind="ivfpq", nlist=16, pq_m=8)
    assert meta["kind"] == "ivfpq" and meta["nlist"] == 16
    chunked = VectorIndex.open(tmp_path / "idx")
    assert isinstance(chunked.items.stored, index_module.Items) and len(chunked.items) == 3000
    assert chunked.items[2999] == {"row": 2999, "id": "r2999"} and chunked.items[-1]["row"] == 2999
    assert [it["row"] for it in chunked.items[10:13]] == [10, 11, 12]
    whole = VectorIndex.create(x, [{"row": i} for i in range(3000)], {"model": "m"}, kind="ivfpq", nlist=16, pq_m=8)
    assert np.array_equal(chunked.search(x[:50], 5)[1], whole.search(x[:50], 5)[1])

    (tmp_path / "idx" / "items.offsets.npy").unlink()  # an index from before the offsets: one scan rebuilds them
    again = VectorIndex.open(tmp_path / "idx")
    assert again.items[1234] == {"row": 1234, "id": "r1234"}
    with pytest.raises(ValueError, match="2 items for 3000 vectors"):
        index_module.write_index(tmp_path / "bad", memmap, iter([{}, {}]), {"model": "m"})
    assert not (tmp_path / "bad").exists()


def test_rerank_scores_candidates_exactly_from_the_kept_vectors(tmp_path):
    """IVF-PQ codes rank approximately; with --rerank the kept float16 vectors re-score k*N candidates, so recall
    against exact search rises, scores are the true cosines, and the vectors survive add + save."""
    from polymodal.retrieval.index import write_index

    rng = np.random.default_rng(2)
    centres = unit(rng, 40, d=64)
    x, q = unit(rng, 4000, d=64, centres=centres), unit(rng, 100, d=64, centres=centres)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    items = [{"row": i} for i in range(4000)]
    write_index(tmp_path / "plain", x, iter(items), {"model": "m"}, kind="ivfpq", nlist=16, pq_m=8)
    write_index(tmp_path / "kept", x, iter(items), {"model": "m"}, kind="ivfpq", nlist=16, pq_m=8, rerank=10)
    plain, kept = VectorIndex.open(tmp_path / "plain"), VectorIndex.open(tmp_path / "kept")
    assert plain.vectors is None and kept.vectors.shape == (4000, 64) and kept.meta["rerank"] == 10

    def recall(index, **kw):
        pos = index.search(q, 10, nprobe=16, **kw)[1]
        return np.mean([len(set(p) & set(t)) / 10 for p, t in zip(pos, truth)])

    assert recall(kept, rerank=0) == recall(plain) < 0.9 <= recall(kept)
    scores, pos = kept.search(q[:3], 5, nprobe=16)
    assert np.allclose(scores, np.take_along_axis(q[:3] @ x.T, pos, 1), atol=2e-3)
    kept.add(x[:10], [{"row": -1}] * 10)
    kept.save(tmp_path / "kept")
    back = VectorIndex.open(tmp_path / "kept")
    assert back.vectors.shape == (4010, 64) and np.allclose(back.vectors.rows(np.array([4005, 7])), x[[5, 7]],
                                                            atol=1e-3)
