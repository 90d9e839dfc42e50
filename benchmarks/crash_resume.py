"""Crash safety: `polymodal fit` killed with SIGKILL at seeded random moments, then resumed with `--resume`; the
final metrics against an uninterrupted run, and the model directory watched the whole time (every 2 ms) for a
moment where it is not a complete model. Each trial starts with a previous complete model in the directory, so
"complete" always means: the previous model or the new one. The same for `polymodal index --add` (killed, rerun:
the index must hold each added row once).

    .venv/bin/python benchmarks/crash_resume.py [--trials 20] [--seed 0] [--out DIR]

Data: generated support tickets with screenshots (polymodal.datasets.triage, 400 train rows). Prints a table and
writes results.json under --out.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from polymodal.datasets.triage import make_triage


def recipe(data: Path, epochs: int) -> dict:
    return {"data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                     "test": str(data / "test.jsonl")},
            "inputs": [{"name": "text", "modality": "text", "encoder": {"type": "text_bow"}},
                       {"name": "screenshot", "modality": "image", "options": {"size": 48},
                        "encoder": {"type": "image_cnn", "channels": [8, 16]}}],
            "target": {"column": "route"},
            "model": {"dim": 32, "fusion": {"method": "concat", "hidden": 64}},
            "training": {"epochs": epochs, "batch_size": 16, "lr": 0.003, "seed": 0, "progress": False,
                         "patience": 100}}


def polymodal(*args: str) -> list[str]:
    return [sys.executable, "-m", "polymodal", *args]


def complete_model(d: Path) -> bool:
    """config.json parses and names the format; the weights and metrics are there."""
    try:
        cfg = json.loads((d / "config.json").read_text())
        return cfg.get("format") == "polymodal-model" and (d / "model.safetensors").is_file() and \
            (d / "metrics.json").is_file()
    except (OSError, ValueError):
        return False


def complete_index(d: Path) -> bool:
    try:
        meta = json.loads((d / "meta.json").read_text())
        return (d / "index.faiss").is_file() and (d / "items.jsonl").is_file() and "count" in meta
    except (OSError, ValueError):
        return False


class Watch:
    """Polls a directory every 2 ms; counts the polls that found it incomplete."""

    def __init__(self, d: Path, check) -> None:
        self.d, self.check, self.polls, self.bad, self.stop = d, check, 0, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            self.polls += 1
            if not self.check(self.d):
                self.bad += 1
            time.sleep(0.002)

    def close(self) -> tuple[int, int]:
        self.stop.set()
        self.thread.join()
        return self.polls, self.bad


def killed_then_resumed(cmd: list[str], resume: list[str], at: float) -> dict:
    """Run cmd, SIGKILL it after `at` seconds (if still running), then run `resume` until it exits 0."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(at)
        killed = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = True
    first = time.perf_counter() - start
    runs, messages = 0, []
    if not killed:  # it finished before the moment came: a retry loop has nothing to do
        if proc.returncode != 0:
            raise RuntimeError(f"the uninterrupted run failed: {proc.stderr.read()[-2000:]}")
        return {"at": round(at, 2), "killed": False, "first_run_s": round(first, 2), "resumes": 0, "messages": []}
    while True:
        runs += 1
        r = subprocess.run(resume, capture_output=True, text=True)
        messages += [line for line in r.stderr.splitlines() if "resume" in line or "error" in line]
        if r.returncode == 0:
            break
        if runs >= 3:
            raise RuntimeError(f"resume failed 3 times: {r.stderr[-2000:]}")
    return {"at": round(at, 2), "killed": killed, "first_run_s": round(first, 2), "resumes": runs,
            "messages": messages[-3:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--index-trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("runs/crash_resume"))
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "test.jsonl").exists():
        make_triage(data, train=400, validation=100, test=200, seed=1)
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe(data, args.epochs)))
    previous = recipe(data, 2)
    previous["training"]["lr"] = 0.01  # another model (its checkpoints too) in the directory before each trial
    (out / "previous.yaml").write_text(yaml.safe_dump(previous))
    env_fit = ["fit", str(out / "recipe.yaml"), "--quiet"]

    t = time.perf_counter()
    subprocess.run(polymodal(*env_fit, "--out", str(out / "reference")), check=True, capture_output=True)
    reference_s = time.perf_counter() - t
    ref = json.loads((out / "reference" / "metrics.json").read_text())["test"]["accuracy"]
    subprocess.run(polymodal("fit", str(out / "previous.yaml"), "--quiet", "--out", str(out / "previous")),
                   check=True, capture_output=True)
    print(f"reference: test accuracy {ref:.4f}, {reference_s:.1f} s for the whole command", flush=True)

    rng = random.Random(args.seed)
    trials = []
    for i in range(args.trials):
        d = out / f"trial{i}"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(out / "previous", d)
        watch = Watch(d, complete_model)
        at = rng.uniform(0.3, reference_s * 1.05)
        run = killed_then_resumed(polymodal(*env_fit, "--out", str(d)),
                                  polymodal(*env_fit, "--out", str(d), "--resume"), at)
        polls, bad = watch.close()
        acc = json.loads((d / "metrics.json").read_text())["test"]["accuracy"]
        said = " ".join(run["messages"])
        phase = "finished first" if not run["killed"] else "start-up (another model's checkpoint)" \
            if "another recipe" in said else "before the first checkpoint" if "no checkpoint" in said \
            else "training (own checkpoint)"
        run.update({"trial": i, "phase": phase, "test_accuracy": acc, "diff_points": round(100 * (acc - ref), 2),
                    "polls": polls, "incomplete_polls": bad})
        trials.append(run)
        print(json.dumps(run), flush=True)
        shutil.rmtree(d, ignore_errors=True)

    index_trials = index_harness(out, data, rng, args.index_trials)
    within = sum(abs(t["diff_points"]) <= 0.5 for t in trials)
    results = {"reference_accuracy": ref, "reference_seconds": round(reference_s, 1), "trials": trials,
               "within_0.5_points": within, "incomplete_moments": sum(t["incomplete_polls"] for t in trials),
               "index_trials": index_trials}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| trial | killed at (s) | during | test accuracy | vs uninterrupted (points) | incomplete polls / polls |")
    print("|---|---|---|---|---|---|")
    for t in trials:
        print(f"| {t['trial']} | {t['at']} | {t['phase']} | {t['test_accuracy']:.4f} | {t['diff_points']:+.2f} | "
              f"{t['incomplete_polls']} / {t['polls']} |")
    print(f"\nfit: {within} of {len(trials)} within 0.5 points of {ref:.4f}; moments without a complete model "
          f"directory: {results['incomplete_moments']}")
    ok = sum(t["rows_once"] for t in index_trials)
    print(f"index --add: {ok} of {len(index_trials)} hold each row once; incomplete polls "
          f"{sum(t['incomplete_polls'] for t in index_trials)}")


def index_harness(out: Path, data: Path, rng: random.Random, n: int) -> list[dict]:
    """A contrastive model over (ticket, screenshot); an index of the train screenshots; `index --add` of the test
    screenshots killed at a random moment and rerun; the index must hold each row exactly once."""
    clip = out / "clip"
    if not (clip / "config.json").exists():
        r = recipe(data, 2)
        r["target"] = {"column": "route", "task": "contrastive"}
        (out / "clip.yaml").write_text(yaml.safe_dump(r))
        subprocess.run(polymodal("fit", str(out / "clip.yaml"), "--quiet", "--out", str(clip)), check=True,
                       capture_output=True)
    base = out / "index_base"
    shutil.rmtree(base, ignore_errors=True)
    subprocess.run(polymodal("index", str(clip), "--data", str(data / "train.jsonl"), "--input", "screenshot",
                             "--out", str(base)), check=True, capture_output=True)
    add = ["index", str(clip), "--data", str(data / "test.jsonl"), "--input", "screenshot", "--add"]
    t = time.perf_counter()
    once = out / "index_once"
    shutil.rmtree(once, ignore_errors=True)
    shutil.copytree(base, once)
    subprocess.run(polymodal(*add, "--out", str(once)), check=True, capture_output=True)
    add_s = time.perf_counter() - t
    expected = json.loads((once / "meta.json").read_text())["count"]
    results = []
    for i in range(n):
        d = out / f"index_trial{i}"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(base, d)
        watch = Watch(d, complete_index)
        run = killed_then_resumed(polymodal(*add, "--out", str(d)), polymodal(*add, "--out", str(d)),
                                  rng.uniform(0.2, add_s * 1.05))
        polls, bad = watch.close()
        items = [json.loads(line) for line in (d / "items.jsonl").read_text().splitlines() if line]
        keys = [(it.get("table"), it["row"]) for it in items]
        run.update({"trial": i, "count": len(items), "expected": expected,
                    "rows_once": len(keys) == len(set(keys)) == expected, "polls": polls, "incomplete_polls": bad})
        results.append(run)
        print("index", json.dumps(run), flush=True)
        shutil.rmtree(d, ignore_errors=True)
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
