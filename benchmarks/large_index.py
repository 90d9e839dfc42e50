"""A large on-disk index built in chunks (issue 17's goal: 10 million 256-d vectors, IVF-PQ, peak RSS <= 4 GB,
p50 <= 5 ms per query, recall@10 reported). The vectors are never all in memory: they are generated a block at a
time from seeds (a mixture of --clusters random directions with noise, as embeddings cluster), the way an .npy
memmap written by `polymodal embed` is read; the items stream to disk. Prints, per size: build seconds, peak RSS of
this process, index size on disk, and per nprobe the p50/p95 latency of single queries and recall@10 against exact
search (computed by a streamed scan over the same blocks).

    .venv/bin/python benchmarks/large_index.py [--sizes 1000000 10000000] [--dim 256] [--kind ivfpq]
        [--queries 1000] [--truth-queries 200] [--out runs/bench-index] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import faiss
import numpy as np

from polymodal.retrieval import VectorIndex
from polymodal.retrieval.index import write_index

BLOCK = 65_536


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Synthetic:
    """An [n, dim] array of unit vectors made block by block from seeds: slicing or indexing it generates only the
    blocks it touches (like reading an np.memmap), so no more than a block or two is in memory."""

    def __init__(self, n: int, dim: int, clusters: int, spread: float, seed: int = 0) -> None:
        self.shape, self.clusters, self.spread, self.seed = (n, dim), clusters, spread, seed
        rng = np.random.default_rng(10_000)  # the same directions for the data and the queries
        self.centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        self._cached: tuple[int, np.ndarray] | None = None

    def block(self, b: int) -> np.ndarray:
        if self._cached is not None and self._cached[0] == b:
            return self._cached[1]
        n, dim = self.shape
        rows = min(BLOCK, n - b * BLOCK)
        rng = np.random.default_rng([self.seed, b])
        x = self.centres[rng.integers(self.clusters, size=rows)]
        x += rng.standard_normal((rows, dim), dtype=np.float32) * (self.spread / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        self._cached = (b, x)
        return x

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, _ = key.indices(self.shape[0])
            parts = [self.block(b)[max(start - b * BLOCK, 0):stop - b * BLOCK]
                     for b in range(start // BLOCK, -(-stop // BLOCK))]
            return np.concatenate(parts) if parts else np.empty((0, self.shape[1]), np.float32)
        rows = np.asarray(key)
        out = np.empty((len(rows), self.shape[1]), np.float32)
        blocks = rows // BLOCK
        for b in np.unique(blocks):
            sel = blocks == b
            out[sel] = self.block(int(b))[rows[sel] - b * BLOCK]
        return out


def exact_top10(data: Synthetic, queries: np.ndarray) -> np.ndarray:
    """The true 10 nearest rows of each query, by a scan over the blocks keeping a running top 10."""
    best_s = np.full((len(queries), 10), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 10), np.int64)
    n = data.shape[0]
    for b in range(-(-n // BLOCK)):
        s = queries @ data.block(b).T
        top = np.argpartition(-s, 10, axis=1)[:, :10] if s.shape[1] > 10 else np.argsort(-s, axis=1)[:, :10]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + b * BLOCK], 1)
        keep = np.argsort(-cand_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
    return best_i


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--kind", default="ivfpq")
    ap.add_argument("--nlist", type=int, default=4096, help="lists (polymodal's default, 4*sqrt(n), is 12,649 at 10M: "
                    "adding then compares every vector with each centroid, about 3x the time on 2 cores)")
    ap.add_argument("--pq-m", type=int, default=None)
    ap.add_argument("--nprobe", type=int, nargs="*", default=[8, 16, 32, 64])
    ap.add_argument("--rerank", type=int, default=10, help="keep the vectors and also measure re-ranking k * this "
                    "many candidates (0: off)")
    ap.add_argument("--rerank-also", type=int, nargs="*", default=[], help="more re-ranking factors to search with")
    ap.add_argument("--reuse", action="store_true", help="search an index already built at --out (build time and "
                    "memory are then not measured)")
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--spread", type=float, default=1.0)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--truth-queries", type=int, default=200)
    ap.add_argument("--out", default="runs/bench-index")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"{faiss.omp_get_max_threads()} faiss threads; {args.dim}-d vectors, a mixture of {args.clusters} "
          f"directions with noise {args.spread}", flush=True)
    results = []
    for n in args.sizes:
        data = Synthetic(n, args.dim, args.clusters, args.spread)
        queries = Synthetic(args.queries, args.dim, args.clusters, args.spread, seed=1)[0:args.queries]
        directory = Path(args.out) / f"index-{n}"
        started = time.perf_counter()
        if args.reuse and (directory / "meta.json").is_file():  # searches again over an index built before
            meta = json.loads((directory / "meta.json").read_text())
        else:
            meta = write_index(directory, data, ({"row": i} for i in range(n)), {"model": "synthetic"},
                               kind=args.kind, nlist=args.nlist, pq_m=args.pq_m, progress=False,
                               rerank=args.rerank)
        build_s = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in directory.iterdir()) / 2**20
        print(f"{n:,} vectors: {meta['kind']} nlist={meta.get('nlist')} built in {build_s:.0f} s, "
              f"{size_mb:.0f} MiB on disk, peak RSS {rss_mb():.0f} MiB", flush=True)
        t = time.perf_counter()
        truth = exact_top10(data, queries[:args.truth_queries])
        truth_s = time.perf_counter() - t
        index = VectorIndex.open(directory)
        rows = []
        for nprobe in args.nprobe:
            for rerank in sorted({0, args.rerank, *args.rerank_also}):
                times, found = [], []
                for i in range(len(queries)):  # one query at a time: the latency a user sees
                    t = time.perf_counter()
                    _, pos = index.search(queries[i:i + 1], 10, nprobe, rerank)
                    times.append((time.perf_counter() - t) * 1000)
                    found.append(pos[0])
                recall = float(np.mean([len(set(f.tolist()) & set(tr.tolist())) / 10
                                        for f, tr in zip(found, truth)]))
                row = {"nprobe": nprobe, "rerank": rerank, "p50_ms": round(float(np.percentile(times, 50)), 3),
                       "p95_ms": round(float(np.percentile(times, 95)), 3), "recall@10": round(recall, 4)}
                rows.append(row)
                print(row, flush=True)
        item = index.items[n - 1]
        assert item == {"row": n - 1}, item
        results.append({"n": n, "dim": args.dim, "kind": meta["kind"], "nlist": meta.get("nlist"),
                        "build_seconds": round(build_s, 1), "disk_mib": round(size_mb),
                        "peak_rss_mib_so_far": round(rss_mb()), "exact_scan_seconds": round(truth_s, 1),
                        "settings": rows})
        del index
    print("\n| vectors | nprobe | re-rank | p50 ms | p95 ms | recall@10 | build s | disk MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for s in r["settings"]:
            print(f"| {r['n']:,} | {s['nprobe']} | {s['rerank'] or 'off'} | {s['p50_ms']} | {s['p95_ms']} | "
                  f"{s['recall@10']} | {r['build_seconds']} | {r['disk_mib']} | {r['peak_rss_mib_so_far']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
