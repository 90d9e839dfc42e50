"""Training memory against table size (issue 17): `polymodal fit` on a generated image + text table of 20k / 100k /
200k rows read from a shard directory (`polymodal shard`), each as a user would run it, with the peak resident memory
of the whole process tree (the trainer and its loader workers) sampled every 0.1 s; and the same fit on the smallest
table read into memory (the default path), for the throughput ratio. Prints, per run: rows, peak RSS, training
seconds, training rows per second (the epoch loop only) and end-to-end seconds (reading included).

    .venv/bin/python benchmarks/streaming_memory.py [--sizes 20000 100000 200000] [--epochs 1] [--workers 1]
        [--out runs/bench-streaming] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

COLOURS = np.array([(220, 40, 40), (40, 170, 60), (40, 70, 220)], dtype=np.uint8)
NAMES = ("red", "green", "blue")


def make_images(folder: Path, rows: int, seed: int = 0) -> list[dict]:
    """32x32 PNGs of a coloured square or bar on noise, and a sentence naming the colour; label (shape, colour)."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(rows):
        shape, colour = int(rng.integers(2)), int(rng.integers(3))
        path = folder / "img" / f"{i // 1000}" / f"{i}.png"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            img = rng.integers(200, 255, size=(32, 32, 3), dtype=np.uint8)
            x, y = (int(v) for v in rng.integers(4, 20, size=2))
            if shape == 0:
                img[y:y + 10, x:x + 10] = COLOURS[colour]
            else:
                img[y:y + 3, 2:30] = COLOURS[colour]
            Image.fromarray(img).save(path, compress_level=1)
        else:
            rng.integers(200, 255, size=(32, 32, 3), dtype=np.uint8), rng.integers(4, 20, size=2)
        out.append({"image": str(path.relative_to(folder)), "text": f"a {NAMES[colour]} thing number {i % 97}",
                    "label": f"{NAMES[colour]} {('square', 'bar')[shape]}"})
    return out


RECIPE = """inputs:
  - {name: image, modality: image, options: {size: 32}, encoder: {type: image_cnn, channels: [16, 32]}}
  - {name: text, modality: text, encoder: {type: text_bow}}
target: {column: label}
model: {dim: 64}
training: {epochs: EPOCHS, batch_size: 128, lr: 0.003, progress: false, seed: 0WORKERS}
"""


class PeakRSS:
    """Peak memory of a process and its children, sampled in a thread: the sum of their proportional set sizes (a
    page shared by the trainer and a forked loader worker counts once, split between them), and the sum of RSS."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self.peak_rss, self.stop = psutil.Process(pid), 0, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                total = rss = 0
                for p in procs:
                    try:
                        info = p.memory_full_info()
                        total, rss = total + info.pss, rss + info.rss
                    except psutil.Error:
                        pass
                self.peak, self.peak_rss = max(self.peak, total), max(self.peak_rss, rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def done(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return self.peak / 2**20, self.peak_rss / 2**20


def polymodal(args: list[str], cwd: Path) -> tuple[float, tuple[float, float]]:
    """Run the CLI; (wall seconds, (peak PSS, peak RSS) MiB of its process tree)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "polymodal", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    peak = PeakRSS(proc.pid)
    output, _ = proc.communicate()
    mib = peak.done()
    if proc.returncode:
        sys.exit(f"polymodal {' '.join(args)} failed:\n{output[-3000:]}")
    return time.perf_counter() - started, mib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 200_000])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="fits per configuration (the median is reported)")
    ap.add_argument("--workers", type=int, default=None, help="training.num_workers (default: polymodal's: 0 in "
                    "memory, 1 from shards with torch on the other cores)")
    ap.add_argument("--in-memory", type=int, default=None, help="rows of the in-memory comparison (default: the "
                    "smallest size)")
    ap.add_argument("--out", default="runs/bench-streaming")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    folder = Path(args.out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = make_images(folder, max(args.sizes))
    print(f"generated {len(rows)} rows in {time.perf_counter() - started:.0f} s", flush=True)
    recipe = RECIPE.replace("EPOCHS", str(args.epochs)).replace("WORKERS", "" if args.workers is None else
                                                                    f", num_workers: {args.workers}")
    (folder / "recipe.yaml").write_text(recipe)
    results = []
    in_memory = args.in_memory or min(args.sizes)
    for n in sorted(set(args.sizes) | {in_memory}):
        table = folder / f"t{n}.jsonl"
        table.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]))
        runs = []
        if n in args.sizes:
            shard_s, shard_mib = polymodal(["shard", table.name, "--out", f"shards{n}", "--no-progress"], folder)
            print(f"{n} rows sharded in {shard_s:.1f} s (peak {shard_mib[0]:.0f} MiB)", flush=True)
            runs.append(("shards", f"shards{n}", shard_s, shard_mib))
        if n == in_memory:  # the same table sharded with decoded pixels, and read into memory
            pix_s, pix_mib = polymodal(["shard", table.name, "--out", f"pixels{n}", "--image-size", "32",
                                        "--no-progress"], folder)
            runs.append(("shards, decoded pixels", f"pixels{n}", pix_s, pix_mib))
            runs.append(("in memory", table.name, 0.0, (0.0, 0.0)))
        for mode, data, shard_s, shard_mib in runs:
            out = f"model-{mode.replace(' ', '-').replace(',', '')}-{n}"
            tries = []
            for _ in range(args.repeat):
                wall, mib = polymodal(["fit", "recipe.yaml", "--train", data, "--out", out], folder)
                metrics = json.loads((folder / out / "metrics.json").read_text())
                tries.append((metrics["training"]["seconds"], wall, mib, metrics))
            train_s, wall, _, metrics = sorted(tries, key=lambda t: t[0])[len(tries) // 2]  # the median
            peak = max(t[2][0] for t in tries), max(t[2][1] for t in tries)
            train = metrics["training"]
            result = {"mode": mode, "rows": n, "train_rows": train["train_rows"], "peak_pss_mib": round(peak[0]),
                      "peak_rss_sum_mib": round(peak[1]), "train_seconds": train_s, "fit_seconds": round(wall, 1),
                      "train_rows_per_s": round(train["train_rows"] * args.epochs / train_s, 1),
                      "all_train_rows_per_s": [round(train["train_rows"] * args.epochs / t[0]) for t in tries],
                      "validation_accuracy": metrics["validation"]["accuracy"], "shard_seconds": round(shard_s, 1),
                      "shard_peak_mib": round(shard_mib[0])}
            results.append(result)
            print(json.dumps(result), flush=True)
    print("\n| rows | data | peak memory, PSS (MiB) | RSS summed (MiB) | training rows/s | fit s (reading incl.) "
          "| val. accuracy |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rows']:,} | {r['mode']} | {r['peak_pss_mib']} | {r['peak_rss_sum_mib']} | "
              f"{r['train_rows_per_s']} | {r['fit_seconds']} | "
              f"{r['validation_accuracy']:.4f} |")
    same = {r["mode"]: r for r in results if r["rows"] == in_memory}
    m = same["in memory"]
    for mode in ("shards", "shards, decoded pixels"):
        if mode in same:
            s = same[mode]
            loop, end = s["train_rows_per_s"] / m["train_rows_per_s"], m["fit_seconds"] / s["fit_seconds"]
            print(f"throughput {mode} / in memory at {in_memory:,} rows: training loop {loop:.2f}, end to end "
                  f"{end:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
