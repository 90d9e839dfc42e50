"""A faiss vector index on disk: index.faiss (faiss's own binary format, nothing unpickled), items.jsonl (the source
row, id and value behind each vector) and meta.json (the embedder, input, index kind and its settings). Exact search
for small collections, IVF or IVF-PQ when asked or when large; vectors can be added to an existing index."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import PolymodalError

FORMAT = "polymodal-index"
Kind = Literal["auto", "exact", "ivf", "ivfpq"]
AUTO_IVF_FROM = 50_000  # rows from which `auto` builds an IVF index


def _faiss():
    try:
        import faiss
    except ImportError:
        raise PolymodalError("indexing needs faiss: pip install faiss-cpu") from None
    return faiss


def default_nlist(n: int) -> int:
    """About 4 * sqrt(n) lists (faiss's guideline), and at least 39 training vectors per list."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def build(vectors: np.ndarray, kind: Kind = "auto", nlist: int | None = None, pq_m: int | None = None,
          seed: int = 0):
    """A faiss index over unit vectors (inner product = cosine), trained when it is IVF or IVF-PQ."""
    faiss = _faiss()
    n, d = vectors.shape
    if kind == "auto":
        kind = "ivf" if n >= AUTO_IVF_FROM else "exact"
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = nlist or default_nlist(n)
        if n < nlist:
            raise PolymodalError(f"an IVF index with {nlist} lists needs at least {nlist} vectors to train on, got {n}"
                                 "; use --kind exact or a smaller --nlist")
        quantizer = faiss.IndexFlatIP(d)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            m = pq_m or next(m for m in (32, 16, 8, 4, 2, 1) if d % m == 0)
            if d % m:
                raise PolymodalError(f"--pq-m {m} must divide the embedding width {d}")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        if n > 256 * nlist:
            sample = vectors[np.random.default_rng(seed).choice(n, 256 * nlist, replace=False)]
        index.cp.seed = seed
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


class VectorIndex:
    """An index and what each vector stands for."""

    def __init__(self, index, items: list[dict], meta: dict) -> None:
        self.index, self.items, self.meta = index, items, meta

    @classmethod
    def create(cls, vectors: np.ndarray, items: list[dict], meta: dict, kind: Kind = "auto", nlist: int | None = None,
               nprobe: int | None = None, pq_m: int | None = None) -> "VectorIndex":
        if len(vectors) != len(items):
            raise ValueError("one item per vector")
        index, kind = build(vectors, kind, nlist, pq_m)
        meta = {**meta, "format": FORMAT, "kind": kind, "dim": int(vectors.shape[1])}
        if kind != "exact":
            meta.update(nlist=int(index.nlist), nprobe=int(nprobe or max(1, min(index.nlist, 16))))
        return cls(index, items, meta)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, items: list[dict]) -> None:
        if vectors.shape[1] != self.meta["dim"]:
            raise PolymodalError(f"vectors of width {vectors.shape[1]} do not fit an index of width {self.meta['dim']}")
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.items.extend(items)

    def search(self, queries: np.ndarray, k: int = 10, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], positions [Q, k]); position -1 where fewer than k vectors exist."""
        if "nprobe" in self.meta:
            self.index.nprobe = int(nprobe or self.meta["nprobe"])
        k = max(1, min(k, len(self)))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, directory: str | Path) -> Path:
        """Write atomically: a crash mid-write leaves the previous index intact."""
        from ..storage import staging_dir, swap_in

        faiss = _faiss()
        directory = Path(directory)
        tmp = staging_dir(directory)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        with (tmp / "items.jsonl").open("w") as f:
            for item in self.items:
                f.write(json.dumps(item) + "\n")
        (tmp / "meta.json").write_text(json.dumps({**self.meta, "count": len(self)}, indent=2))
        swap_in(tmp, directory)
        return directory

    @classmethod
    def open(cls, directory: str | Path) -> "VectorIndex":
        faiss = _faiss()
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise PolymodalError(f"{directory}: not a polymodal index (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise PolymodalError(f"{meta_path}: not a polymodal index")
        index = faiss.read_index(str(directory / "index.faiss"))
        items = [json.loads(line) for line in (directory / "items.jsonl").read_text().splitlines() if line]
        if len(items) != index.ntotal:
            raise PolymodalError(f"{directory}: items.jsonl has {len(items)} rows for {index.ntotal} vectors")
        return cls(index, items, meta)
