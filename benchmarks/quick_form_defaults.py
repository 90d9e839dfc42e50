"""The quick form's defaults on avdigits (and avdigits-hard): what a user who writes no recipe gets, clean and
with one input missing at test, against the quick form's model of each input alone. Candidate defaults are given
as recipe overrides, so a default is changed only after this table shows it costs no clean accuracy.

    .venv/bin/python benchmarks/quick_form_defaults.py [--data avdigits] [--seeds 0,1] [--configs a,b]

Each run: `pm.fit(train, test=test, label="label", inputs=[...])` (validation carved from train, 10%, seeded);
the test split is scored once per run, with each input removed in turn (the reliance report).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import polymodal as pm

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CONFIGS: dict[str, dict] = {
    "audio_only": {"inputs": ["audio"], "set": []},
    "image_only": {"inputs": ["image"], "set": []},
    "default": {"inputs": ["audio", "image"], "set": []},
    # auxiliary per-input heads, and rows with one input present predicted by that input's head
    "heads_alone": {"inputs": ["audio", "image"], "set": ["model.unimodal_heads=1.0", "model.alone=head"]},
    "heads_only": {"inputs": ["audio", "image"], "set": ["model.unimodal_heads=1.0"]},
    # candidates for the image encoder's default: its final grid flattened (keeps where the strokes are), and longer
    "flatten": {"inputs": ["audio", "image"], "set": ["inputs.image.encoder.pool=flatten"]},
    "epochs20": {"inputs": ["audio", "image"], "set": ["training.epochs=20"]},
    "flatten_epochs20": {"inputs": ["audio", "image"], "set": ["inputs.image.encoder.pool=flatten",
                                                               "training.epochs=20"]},
    # candidates for a model that loses an input: each input's auxiliary head as deep as a model of that input
    # alone (the fusion's post-layer, then the task head), heavier auxiliary heads, robust selection
    "mlp_heads": {"inputs": ["audio", "image"], "set": ["model.unimodal_head=mlp"]},
    "heads2": {"inputs": ["audio", "image"], "set": ["model.unimodal_heads=2.0"]},
    "robust": {"inputs": ["audio", "image"], "set": ["training.select=robust"]},
    # a model of each input alone beside the full model, each row read by the model of the inputs it has
    "fallback": {"inputs": ["audio", "image"], "set": ["training.fallback=true"]},
}


def held_out(data: Path, out: Path) -> Path:
    """`--select`: the training split as 90% train / 10% "test" (seed 0), so candidates are compared without the
    test split; the chosen one is then run once on the real split."""
    import random

    rows = (data / "train.jsonl").read_text().splitlines()
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    held = set(order[: len(rows) // 10])
    target = out / f"{data.name}-select"
    target.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train.jsonl", False), ("test.jsonl", True)):
        lines = [rows[i] for i in range(len(rows)) if (i in held) == keep]
        for i, line in enumerate(lines):  # media paths made absolute
            r = json.loads(line)
            r.update({k: str(data / v) for k, v in r.items() if k in ("audio", "image")})
            lines[i] = json.dumps(r)
        (target / name).write_text("\n".join(lines) + "\n")
    return target


def run(data: Path, config: str, seed: int, out: Path) -> dict:
    spec = CONFIGS[config]
    started = time.perf_counter()
    model = pm.fit(str(data / "train.jsonl"), test=str(data / "test.jsonl"), label="label", inputs=spec["inputs"],
                   out=out / f"{config}-s{seed}", overrides=spec["set"] or None, seed=seed, progress=False)
    seconds = time.perf_counter() - started
    test = model.metrics["test"]
    clean = test["accuracy"]
    without = {f"without_{name}": round(clean - change, 4) for name, change in test.get("reliance", {}).items()}
    return {"config": config, "seed": seed, "clean": round(clean, 4), **without,
            "epochs": model.metrics["training"]["epochs"], "seconds": round(seconds, 1),
            **({"rows": model.metrics["training"]["fallback_rows"]["chosen"]}
               if "fallback_rows" in model.metrics["training"] else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="avdigits", help="a set under ../shared/data")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", type=Path, default=Path("runs/bench-defaults"))
    ap.add_argument("--select", action="store_true", help="score on 10%% of the training split (held out), not on "
                    "the test split: for choosing among candidates")
    args = ap.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    data = held_out(SHARED / args.data, args.out) if args.select else SHARED / args.data
    results = []
    for config in args.configs.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            r = run(data, config, seed, args.out / data.name)
            print(json.dumps(r), flush=True)
            results.append(r)
    print(f"\n{args.data}{' (held-out training rows)' if args.select else ''}, quick form, seeds {args.seeds} "
          "(mean over seeds)\n")
    print("| config | clean | audio missing | image missing | train s |")
    print("|---|---|---|---|---|")
    for config in dict.fromkeys(r["config"] for r in results):
        rs = [r for r in results if r["config"] == config]
        print(f"| {config} | {mean(rs, 'clean')} | {mean(rs, 'without_audio')} | {mean(rs, 'without_image')} | "
              f"{statistics.mean(r['seconds'] for r in rs):.0f} |")


def mean(rs: list[dict], key: str) -> str:
    values = [r[key] for r in rs if key in r]
    return f"{100 * statistics.mean(values):.2f}" if values else ""


if __name__ == "__main__":
    main()
