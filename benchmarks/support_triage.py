"""Support triage end to end: generated tickets with screenshots (`polymodal.datasets.triage`; in 40% of rows only
the screenshot says the route) -> text-only, screenshot-only and text + screenshot models (selection on the
validation split, the test split scored once) -> accuracy overall and on the vague rows, the EMAP gap (how much of
the accuracy needs cross-modal interactions) -> the best model served by `polymodal serve` and called over HTTP.

    .venv/bin/python benchmarks/support_triage.py [--data DIR] [--out DIR] [--epochs 15]

Prints a markdown table and writes results.json under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polymodal as pm
from polymodal.data import as_table
from polymodal.datasets.triage import make_triage

TEXT = {"name": "text", "modality": "text", "encoder": {"type": "text_bow"}}
SHOT = {"name": "screenshot", "modality": "image", "options": {"size": 96},
        "encoder": {"type": "image_cnn", "channels": [16, 32, 64]}}


def recipe(data: Path, inputs: list[dict], epochs: int) -> dict:
    return {"data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                     "test": str(data / "test.jsonl")},
            "inputs": inputs, "target": {"column": "route"},
            "model": {"dim": 64, "fusion": {"method": "concat", "hidden": 128}},
            "training": {"epochs": epochs, "batch_size": 32, "lr": 0.002, "patience": 5, "seed": 0,
                         "progress": False}}


def accuracy_on(model, rows: list[dict]) -> float:
    preds = model.predict(rows)
    return sum(p["label"] == r["route"] for p, r in zip(preds, rows)) / len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/triage_data"))
    ap.add_argument("--out", type=Path, default=Path("runs/triage"))
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()
    if not (args.data / "test.jsonl").exists():
        t = time.time()
        make_triage(args.data)
        print(f"generated {args.data} in {time.time() - t:.0f} s", flush=True)
    test = as_table(args.data / "test.jsonl")
    vague = [r for r in test.rows if r["vague"]]
    results = {}
    for name, inputs in (("text", [TEXT]), ("screenshot", [SHOT]), ("text+screenshot", [TEXT, SHOT])):
        t = time.time()
        model = pm.fit(recipe(args.data, inputs, args.epochs), out=args.out / name)
        seconds = time.time() - t
        m = model.metrics["test"]
        rows = [{k: str(args.data / v) if k == "screenshot" else v for k, v in r.items()} for r in vague]
        results[name] = {"test_accuracy": m["accuracy"], "macro_f1": m["f1_macro"],
                         "vague_accuracy": round(accuracy_on(model, rows), 4),
                         "validation_accuracy": model.metrics.get("validation", {}).get("accuracy"),
                         "fit_seconds": round(seconds)}
        if len(inputs) == 2:
            g = model.explain(args.data / "test.jsonl", global_=True)
            results[name]["emap"] = g["emap"]
            results[name]["shapley_share"] = g["shapley_share"]
        print(name, json.dumps(results[name]), flush=True)
    served = serve_check(args.out / "text+screenshot", args.data)
    results["served"] = served
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| inputs | test accuracy | vague rows (screenshot decides) | macro F1 | fit |")
    print("|---|---|---|---|---|")
    for name in ("text", "screenshot", "text+screenshot"):
        r = results[name]
        print(f"| {name} | {r['test_accuracy']:.4f} | {r['vague_accuracy']:.4f} | {r['macro_f1']:.4f} | "
              f"{r['fit_seconds']} s |")
    e = results["text+screenshot"]["emap"]
    print(f"\nEMAP ({e['metric']}): full {e['full']:.4f}, additive projection {e['additive']:.4f}, gap {e['gap']:.4f}")
    print(f"served: {served}")


def serve_check(model_dir: Path, data: Path) -> dict:
    """`polymodal serve` on the trained model; 50 one-row multipart requests (ticket text + screenshot PNG)."""
    import httpx

    sys.path.insert(0, str(Path(__file__).parent))
    from serve_load import Server

    rows = as_table(data / "test.jsonl").rows[:50]
    server = Server(model_dir, 32)
    try:
        lat, right = [], 0
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}) as http:
            for r in rows:
                t = time.perf_counter()
                resp = http.post("/v1/predict", data={"text": r["text"]},
                                 files={"screenshot": ("s.png", (data / r["screenshot"]).read_bytes(), "image/png")})
                lat.append(time.perf_counter() - t)
                right += resp.json()["predictions"][0]["label"] == r["route"]
        lat.sort()
        return {"requests": len(rows), "accuracy": right / len(rows), "p50_ms": round(lat[len(lat) // 2] * 1000, 1)}
    finally:
        server.close()


if __name__ == "__main__":
    main()
