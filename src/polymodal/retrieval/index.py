"""A faiss vector index on disk: index.faiss (faiss's own binary format, nothing unpickled), items.jsonl (the source
row, id and value behind each vector) with items.offsets.npy (each line's byte offset: an opened index reads an item
when a result needs it, never the whole file) and meta.json (the embedder, input, index kind and its settings).
Exact search for small collections, IVF or IVF-PQ when asked or when large; vectors can be added to an existing
index. `write_index` builds one from vectors on disk (an .npy memmap, or any array that can be sliced) and items
from an iterator, in chunks: memory holds the index and one chunk, not the vectors or the items."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

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


CHUNK = 65_536  # vectors added per faiss call (a chunk of 256-d float32 is 64 MiB)
MAX_TRAIN = 500_000  # vectors an IVF index trains on at most (k-means on 2 cores: minutes beyond this)


def build(vectors: Any, kind: Kind = "auto", nlist: int | None = None, pq_m: int | None = None, seed: int = 0,
          progress: bool = False, store: "VectorFile | None" = None):
    """A faiss index over unit vectors (inner product = cosine), trained when it is IVF or IVF-PQ. `vectors` is an
    array [n, d] or anything sliced like one (an np.memmap): it is read one chunk at a time, and for training a
    seeded sample of at most 256 vectors per list (and MAX_TRAIN). (An HNSW graph over the centroids as the coarse
    quantizer was measured slower than comparing with every centroid at 1M vectors and 4,000 lists on 2 cores.)"""
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
        coarse = faiss.IndexFlatIP(d)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(coarse, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            m = pq_m or next(m for m in (32, 16, 8, 4, 2, 1) if d % m == 0)
            if d % m:
                raise PolymodalError(f"--pq-m {m} must divide the embedding width {d}")
            index = faiss.IndexIVFPQ(coarse, d, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True  # the index keeps its quantizer alive (and frees it)
        coarse.this.disown()
        take = min(n, 256 * nlist, max(MAX_TRAIN, 39 * nlist))
        rows = np.arange(n) if take == n else np.sort(np.random.default_rng(seed).choice(n, take, replace=False))
        sample = np.concatenate([np.asarray(vectors[rows[s:s + CHUNK]], dtype=np.float32)
                                 for s in range(0, len(rows), CHUNK)]) if take < n else vectors[0:n]
        index.cp.seed = seed
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        del sample
    add_chunks(index, vectors, progress, store)
    return index, kind


def add_chunks(index, vectors: Any, progress: bool = False, store: "VectorFile | None" = None) -> None:
    """Add vectors to a faiss index a chunk at a time (with a progress bar when asked); with `store`, also append
    them to that file."""
    from ..data.dataset import progress as bar

    n = vectors.shape[0]
    for s in bar(range(0, n, CHUNK), -(-n // CHUNK), "adding vectors", progress, minimum=2):
        chunk = np.ascontiguousarray(vectors[s:s + CHUNK], dtype=np.float32)
        index.add(chunk)
        if store is not None:
            store.append(chunk)


class VectorFile:
    """The vectors re-ranking reads: an .npy file of float16 rows (half the bytes; scores change by about 1e-3),
    written by appending chunks and read by row with `pread` (a memory map would count every page it touched in the
    process's resident memory: gigabytes for 10M vectors)."""

    def __init__(self, path: Path, rows: int | None = None, dim: int | None = None) -> None:
        self.path = path
        if rows is not None:  # a new file: the header now, the rows as they come
            self._out = path.open("wb")
            np.lib.format.write_array_header_1_0(self._out, {"descr": np.lib.format.dtype_to_descr(
                np.dtype(np.float16)), "fortran_order": False, "shape": (rows, dim)})
            self.shape, self.offset, self.written = (rows, dim), self._out.tell(), 0
            return
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if dtype != np.float16 or fortran or len(shape) != 2:
            raise PolymodalError(f"{path}: expected a 2-d float16 array, got {dtype} {shape}")
        self.shape, self._out, self._fd, self._pid = shape, None, None, 0

    def __len__(self) -> int:
        return self.shape[0]

    def append(self, chunk: np.ndarray) -> None:
        self._out.write(np.ascontiguousarray(chunk, dtype=np.float16).tobytes())
        self.written += len(chunk)

    def close(self) -> None:
        if self.written != self.shape[0]:
            raise ValueError(f"{self.path}: {self.written} vectors written of {self.shape[0]}")
        self._out.close()

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The vectors at these positions (float32), a read each (runs of neighbours in one read)."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        width = self.shape[1] * 2
        out = np.empty((len(positions), self.shape[1]), np.float16)
        for k, p in enumerate(positions):
            out[k] = np.frombuffer(os.pread(self._fd, width, self.offset + int(p) * width), np.float16)
        return out.astype(np.float32)

    def chunks(self) -> Iterator[np.ndarray]:
        """All rows in order, CHUNK at a time."""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            for start in range(0, self.shape[0], CHUNK):
                n = min(CHUNK, self.shape[0] - start)
                yield np.frombuffer(f.read(n * self.shape[1] * 2), np.float16).reshape(n, self.shape[1])


class Items(Sequence):
    """Items on disk: items.jsonl and the byte offset of each line (items.offsets.npy, memory-mapped); an item is
    one read. An index written before the offsets existed gets them by one scan of the file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "items.jsonl"
        offsets = directory / "items.offsets.npy"
        if offsets.is_file():
            self.offsets = np.load(offsets, mmap_mode="r", allow_pickle=False)
        else:
            self.offsets = _line_offsets(self.path)
        self._fd: int | None = None
        self._pid = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        begin, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return json.loads(os.pread(self._fd, end - begin, begin))

    def __iter__(self) -> Iterator[dict]:
        with self.path.open("rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


def _line_offsets(path: Path) -> np.ndarray:
    offsets, pos = [0], 0
    with path.open("rb") as f:
        for line in f:
            pos += len(line)
            if line.strip():
                offsets.append(pos)
            else:
                offsets[-1] = pos
    return np.asarray(offsets, dtype=np.int64)


class ItemList(Sequence):
    """The items of an index: those on disk, then those added since it was opened."""

    def __init__(self, stored: Sequence | None = None, added: list[dict] | None = None) -> None:
        self.stored, self.added = stored if stored is not None else [], list(added or [])

    def __len__(self) -> int:
        return len(self.stored) + len(self.added)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i) % len(self) if int(i) < 0 else int(i)
        return self.stored[i] if i < len(self.stored) else self.added[i - len(self.stored)]

    def __iter__(self) -> Iterator[dict]:
        yield from self.stored
        yield from self.added

    def extend(self, items: Iterable[dict]) -> None:
        self.added.extend(items)


def write_items(items: Iterable[dict], directory: Path) -> int:
    """items.jsonl and items.offsets.npy, streamed (offsets kept as a compact array); returns the count."""
    offsets = np.zeros(1 << 16, dtype=np.int64)
    n, pos = 0, 0
    with (directory / "items.jsonl").open("wb") as f:
        for item in items:
            line = (json.dumps(item) + "\n").encode("utf-8")
            f.write(line)
            pos += len(line)
            n += 1
            if n >= len(offsets):
                offsets = np.resize(offsets, 2 * len(offsets))
            offsets[n] = pos
    np.save(directory / "items.offsets.npy", offsets[:n + 1])
    return n


def write_index(directory: str | Path, vectors: Any, items: Iterable[dict], meta: dict, kind: Kind = "auto",
                nlist: int | None = None, nprobe: int | None = None, pq_m: int | None = None,
                progress: bool = False, rerank: int = 0) -> dict:
    """Build an index from vectors read a chunk at a time and items streamed to disk; written atomically. Returns
    its meta. With `rerank` N > 1, the vectors are kept too (vectors.npy, float16, on disk) and a search scores the
    k * N nearest by the index's codes exactly and keeps the best k: the recall of an IVF-PQ index at the cost of
    2 bytes per dimension of disk and a read of N * k vectors per query."""
    from ..storage import staging_dir, swap_in

    faiss = _faiss()
    directory = Path(directory)
    tmp = staging_dir(directory)
    try:
        count = write_items(items, tmp)
        if count != vectors.shape[0]:
            raise ValueError(f"{count} items for {vectors.shape[0]} vectors")
        store = VectorFile(tmp / "vectors.npy", *vectors.shape) if rerank > 1 else None
        index, kind = build(vectors, kind, nlist, pq_m, progress=progress, store=store)
        meta = _described(meta, index, kind, int(vectors.shape[1]), nprobe)
        if store is not None:
            store.close()
            meta["rerank"] = int(rerank)
        faiss.write_index(index, str(tmp / "index.faiss"))
        (tmp / "meta.json").write_text(json.dumps({**meta, "count": int(index.ntotal)}, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, directory)
    return meta


def _described(meta: dict, index, kind: str, dim: int, nprobe: int | None) -> dict:
    meta = {**meta, "format": FORMAT, "kind": kind, "dim": dim}
    if kind != "exact":
        meta.update(nlist=int(index.nlist), nprobe=int(nprobe or max(1, min(index.nlist, 16))))
    return meta


class VectorIndex:
    """An index and what each vector stands for."""

    def __init__(self, index, items: Sequence[dict], meta: dict, vectors: VectorFile | None = None) -> None:
        self.index, self.meta, self.vectors = index, meta, vectors  # vectors: kept for re-ranking (on disk)
        self.items = items if isinstance(items, ItemList) else ItemList(added=list(items))
        self._added: list[np.ndarray] = []

    @classmethod
    def create(cls, vectors: np.ndarray, items: list[dict], meta: dict, kind: Kind = "auto", nlist: int | None = None,
               nprobe: int | None = None, pq_m: int | None = None) -> "VectorIndex":
        if len(vectors) != len(items):
            raise ValueError("one item per vector")
        index, kind = build(vectors, kind, nlist, pq_m)
        return cls(index, items, _described(meta, index, kind, int(vectors.shape[1]), nprobe))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, items: list[dict]) -> None:
        if vectors.shape[1] != self.meta["dim"]:
            raise PolymodalError(f"vectors of width {vectors.shape[1]} do not fit an index of width {self.meta['dim']}")
        add_chunks(self.index, vectors)
        self.items.extend(items)
        if self.vectors is not None:
            self._added.append(np.asarray(vectors, dtype=np.float16))

    def search(self, queries: np.ndarray, k: int = 10, nprobe: int | None = None,
               rerank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], positions [Q, k]); position -1 where fewer than k vectors exist. An index that keeps its
        vectors re-ranks k * `rerank` candidates (default: the index's setting; 0 or 1: off) by exact scores."""
        if "nprobe" in self.meta:
            self.index.nprobe = int(nprobe or self.meta["nprobe"])
        k = max(1, min(k, len(self)))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        factor = int(self.meta.get("rerank", 0) if rerank is None else rerank)
        if self.vectors is None or factor <= 1 or self._added:
            return self.index.search(queries, k)
        _, candidates = self.index.search(queries, min(len(self), k * factor))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        positions = np.full((len(queries), k), -1, np.int64)
        for q, found in enumerate(candidates):
            found = np.unique(found[found >= 0])  # in file order: reads that go forward
            exact = self.vectors.rows(found) @ queries[q]
            best = np.argsort(-exact, kind="stable")[:k]
            scores[q, :len(best)], positions[q, :len(best)] = exact[best], found[best]
        return scores, positions

    def save(self, directory: str | Path) -> Path:
        """Write atomically: a crash mid-write leaves the previous index intact."""
        from ..storage import staging_dir, swap_in

        faiss = _faiss()
        directory = Path(directory)
        tmp = staging_dir(directory)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        write_items(iter(self.items), tmp)
        if self.vectors is not None:  # the kept vectors, and those added since
            store = VectorFile(tmp / "vectors.npy", len(self), self.meta["dim"])
            for chunk in [*self.vectors.chunks(), *self._added]:
                store.append(chunk)
            store.close()
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
        items = ItemList(Items(directory))
        if len(items) != index.ntotal:
            raise PolymodalError(f"{directory}: items.jsonl has {len(items)} rows for {index.ntotal} vectors")
        vectors = None
        if (directory / "vectors.npy").is_file():
            vectors = VectorFile(directory / "vectors.npy")
            if vectors.shape != (index.ntotal, meta["dim"]):
                raise PolymodalError(f"{directory}/vectors.npy holds {vectors.shape}, not {index.ntotal} vectors of "
                                     f"width {meta['dim']}")
        return cls(index, items, meta, vectors)
