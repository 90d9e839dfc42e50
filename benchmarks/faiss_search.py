"""Search latency and recall of polymodal's IVF index on random unit vectors (issue 5's goal: 1,000,000 x 256-d,
p50 <= 2 ms per query, recall@10 vs exact >= 0.9). Prints build time, memory, p50/p95 per query and recall@10 for a
few nprobe settings.

    python benchmarks/faiss_search.py [--n 1000000] [--dim 256] [--queries 1000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import faiss
import numpy as np

from polymodal.retrieval import VectorIndex


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sample(rng: np.random.Generator, n: int, args) -> np.ndarray:
    if args.data == "gaussian":
        x = rng.standard_normal((n, args.dim), dtype=np.float32)
    else:
        centres = np.random.default_rng(1).standard_normal((args.clusters, args.dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        x = centres[rng.integers(args.clusters, size=n)]
        x += rng.standard_normal((n, args.dim), dtype=np.float32) * (args.spread / np.sqrt(args.dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--nprobe", type=int, nargs="*", default=[4, 8, 16, 32, 64])
    ap.add_argument("--kind", default="ivf")
    ap.add_argument("--data", choices=["gaussian", "clustered"], default="gaussian",
                    help="gaussian: i.i.d. N(0, I) directions; clustered: a mixture of --clusters random centres "
                    "with noise of norm --spread (what embeddings look like)")
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--spread", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x, q = sample(rng, args.n, args), sample(rng, args.queries, args)
    print(f"{args.n} x {args.dim} {args.data} random unit vectors, {args.queries} random queries, "
          f"{faiss.omp_get_max_threads()} threads; RSS after data {rss_mb():.0f} MB")

    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    t = time.perf_counter()
    _, truth = exact.search(q, 10)
    exact_ms = (time.perf_counter() - t) * 1000 / len(q)
    del exact

    t = time.perf_counter()
    items = [{"row": i} for i in range(args.n)]
    index = VectorIndex.create(x, items, {"model": "random"}, kind=args.kind, nlist=args.nlist)
    build_s = time.perf_counter() - t
    print(f"built {index.meta['kind']} nlist={index.meta.get('nlist')} in {build_s:.1f} s; peak RSS {rss_mb():.0f} MB;"
          f" exact search {exact_ms:.2f} ms/query (batched)")
    rows = []
    for nprobe in args.nprobe:
        times = []
        found = []
        for i in range(len(q)):  # one query at a time: the latency a user sees
            t = time.perf_counter()
            _, pos = index.search(q[i:i + 1], 10, nprobe)
            times.append((time.perf_counter() - t) * 1000)
            found.append(pos[0])
        recall = float(np.mean([len(set(f) & set(tr)) / 10 for f, tr in zip(found, truth)]))
        row = {"nprobe": nprobe, "p50_ms": round(float(np.percentile(times, 50)), 3),
               "p95_ms": round(float(np.percentile(times, 95)), 3), "recall@10": round(recall, 4)}
        rows.append(row)
        print(row)
    result = {"n": args.n, "dim": args.dim, "data": args.data, "kind": index.meta["kind"],
              "nlist": index.meta.get("nlist"),
              "build_seconds": round(build_s, 1), "peak_rss_mb": round(rss_mb()), "exact_ms_per_query_batched":
              round(exact_ms, 3), "settings": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
