"""Robustness on avdigits (../shared/data/avdigits): unimodal baselines, plain late fusion, and robust
configurations (modality dropout, unimodal heads); missing-input scores and corruption curves on the test split.

    .venv/bin/python benchmarks/robustness_avdigits.py [--data DIR] [--epochs N] [--configs a,b] [--out DIR]

Prints a markdown table and writes results.json and the curves under --out. Selection is on validation only
(10% of train, seeded); the test split is only scored.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import polymodal as pm

AUDIO = {"name": "audio", "modality": "audio", "options": {"sample_rate": 8000, "n_mels": 40, "max_seconds": 1.5}}
IMAGE = {"name": "image", "modality": "image", "options": {"size": 28, "channels": 1},
         "encoder": {"type": "image_cnn", "channels": [32, 64]}}
# the image encoder chosen on validation for avdigits-hard (benchmarks/fusion_zoo.py): the final grid flattened
IMAGE_FLAT = {**IMAGE, "encoder": {"type": "image_cnn", "channels": [32, 64, 128], "pool": "flatten"}}

CONFIGS = {
    "audio_only": {"inputs": [AUDIO], "fusion": "concat", "dropout": 0.0, "heads": 0.0},
    "image_only": {"inputs": [IMAGE], "fusion": "concat", "dropout": 0.0, "heads": 0.0},
    "late_plain": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": 0.0, "heads": 0.0},
    "concat_plain": {"inputs": [AUDIO, IMAGE], "fusion": "concat", "dropout": 0.0, "heads": 0.0},
    "concat_robust": {"inputs": [AUDIO, IMAGE], "fusion": "concat", "dropout": 0.3, "heads": 0.5},
    "gated_robust": {"inputs": [AUDIO, IMAGE], "fusion": "gated", "dropout": 0.3, "heads": 0.5},
    "late_robust": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": 0.3, "heads": 0.5},
    "late_strong": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": 0.5, "heads": 1.0},
    "gated_strong": {"inputs": [AUDIO, IMAGE], "fusion": "gated", "dropout": 0.5, "heads": 1.0},
    "concat_strong": {"inputs": [AUDIO, IMAGE], "fusion": "concat", "dropout": 0.5, "heads": 1.0},
    # the same, selecting the epoch on the mean of the full and each-input-alone validation accuracy
    "late_select": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": 0.5, "heads": 1.0, "select": "robust"},
    "gated_select": {"inputs": [AUDIO, IMAGE], "fusion": "gated", "dropout": 0.5, "heads": 1.0, "select": "robust"},
    # and trained on corrupted values too (training.augment)
    "late_aug": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": 0.5, "heads": 1.0, "select": "robust",
                 "augment": 0.3},
    "gated_aug": {"inputs": [AUDIO, IMAGE], "fusion": "gated", "dropout": 0.5, "heads": 1.0, "select": "robust",
                  "augment": 0.3},
    # hide the strong input (audio) more often than the weak one, so the image branch learns to stand alone
    "late_asym": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": {"audio": 0.6, "image": 0.2}, "heads": 1.0,
                  "select": "robust", "augment": 0.3},
    # rows with one input present are predicted by that input's auxiliary head (model.alone: head)
    "late_aug_head": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": 0.5, "heads": 1.0, "select": "robust",
                      "augment": 0.3, "alone": "head"},
    "image_only_flat": {"inputs": [IMAGE_FLAT], "fusion": "concat", "dropout": 0.0, "heads": 0.0},
    "late_aug_head_flat": {"inputs": [AUDIO, IMAGE_FLAT], "fusion": "late", "dropout": 0.5, "heads": 1.0,
                           "select": "robust", "augment": 0.3, "alone": "head"},
    "late_aug_head_flat_nodrop": {"inputs": [AUDIO, IMAGE_FLAT], "fusion": "late", "dropout": 0.0, "heads": 1.0,
                                  "select": "robust", "augment": 0.3, "alone": "head"},
    # the auxiliary heads with the stack a unimodal model has (fusion post-layer + task head), not a linear layer
    "late_aug_mlphead_flat": {"inputs": [AUDIO, IMAGE_FLAT], "fusion": "late", "dropout": 0.5, "heads": 1.0,
                              "select": "robust", "augment": 0.3, "alone": "head", "unimodal_head": "mlp"},
    # heavier auxiliary heads and no corruption augmentation: the image branch trained as hard as a unimodal model
    "late_head2_flat": {"inputs": [AUDIO, IMAGE_FLAT], "fusion": "late", "dropout": 0.5, "heads": 2.0,
                        "select": "robust", "alone": "head"},
    "late_head2_flat_nodrop": {"inputs": [AUDIO, IMAGE_FLAT], "fusion": "late", "dropout": 0.0, "heads": 2.0,
                               "select": "robust", "alone": "head"},
    # the same as late_aug without modality dropout: what dropout costs on clean data
    "late_aug_nodrop": {"inputs": [AUDIO, IMAGE], "fusion": "late", "dropout": 0.0, "heads": 1.0, "select": "robust",
                        "augment": 0.3},
}


def recipe(cfg: dict, data: Path, epochs: int, seed: int, patience: int = 8) -> dict:
    return {"data": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")},
            "inputs": cfg["inputs"], "target": {"column": "label"},
            "model": {"dim": 128, "fusion": {"method": cfg["fusion"]}, "unimodal_heads": cfg["heads"],
                      "alone": cfg.get("alone", "fused"), "unimodal_head": cfg.get("unimodal_head", "linear")},
            "training": {"epochs": epochs, "batch_size": 64, "lr": 0.002, "seed": seed, "progress": False,
                         "modality_dropout": cfg["dropout"], "select": cfg.get("select", "clean"),
                         "augment": cfg.get("augment", 0.0),
                         "patience": patience}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/avdigits")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", type=Path, default=Path("runs/bench-robustness"))
    args = ap.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    results = {}
    baseline = None
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        started = time.perf_counter()
        model = pm.fit(recipe(cfg, args.data, args.epochs, args.seed), out=args.out / name)
        train_s = time.perf_counter() - started
        report = model.evaluate(args.data / "test.jsonl", robustness=True, out=args.out / name / "curves",
                                baseline=baseline if len(cfg["inputs"]) > 1 else None)
        if name == "late_plain":
            baseline = report["robustness"]
        elif baseline is None and len(cfg["inputs"]) > 1 and (args.out / "late_plain" / "curves").is_dir():
            from polymodal.evaluation.robustness import effective_robustness, load_baseline

            baseline = load_baseline(args.out / "late_plain" / "curves")
            rob = report["robustness"]  # effective robustness against the late-fusion run of an earlier call
            for inp, kinds in rob["curves"].items():
                eff = {k: round(effective_robustness(c, baseline["curves"][inp][k]), 6) for k, c in kinds.items()}
                eff["mean"] = round(sum(eff.values()) / len(eff), 6)
                rob["effective_robustness"][inp] = eff
        results[name] = {"train_seconds": round(train_s, 1), "test": report}
        rob = report["robustness"]
        print(f"{name}: clean {rob['clean']:.4f}, subsets {rob['subsets']}, RR "
              f"{ {k: v.get('mean') for k, v in rob['relative_robustness'].items()} } ({train_s:.0f} s)", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| config | clean acc | audio only | image only | RR audio (mean) | RR image (mean) | ER audio | ER image "
          "| train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        rob = r["test"]["robustness"]
        sub = rob["subsets"]
        rr, er = rob["relative_robustness"], rob["effective_robustness"]

        def get(d, k):
            v = d.get(k, {}).get("mean")
            return "" if v is None else f"{v:.3f}"

        print(f"| {name} | {rob['clean']:.4f} | {sub.get('audio', float('nan')):.4f} | "
              f"{sub.get('image', float('nan')):.4f} | {get(rr, 'audio')} | {get(rr, 'image')} | {get(er, 'audio')} | "
              f"{get(er, 'image')} | {r['train_seconds']} |")


if __name__ == "__main__":
    main()
