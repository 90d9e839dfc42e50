"""Real data sets (../shared/data) with pretrained encoders: one table of test scores, training time and peak RSS,
the published numbers beside ours. Validation is carved from train (whole groups where the set has them); the test
split is scored once, at the end of each run.

    .venv/bin/python benchmarks/real_data.py --dataset mediaeval16 [--configs text_bow,text_minilm,...] [--seed 0]

Each config trains in its own process (so peak RSS is its own) and prints one JSON line; the table follows.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

IMAGE = {"name": "image", "modality": "image", "encoder": {"type": "efficientnet"}}  # frozen, ImageNet, 224 px
MINILM = {"type": "pretrained", "path": "all-minilm-l6-v2", "freeze": True}
TUNED_IMAGE = {**IMAGE, "encoder": {"type": "efficientnet", "train_blocks": 2}}
TUNED = {"layer_decay": 0.7, "backbone_frozen_epochs": 1}
PHOTO_AUGMENT = {"crop": 0.8, "flip": True, "jitter": 0.2}


def signal(name: str) -> dict:
    return {"name": name, "modality": "signal", "encoder": {"type": "conv1d"}}


# UTD-MHAD's Kinect joints are (x, y, z) x 20; joint 3 is the hip centre: positions relative to the body
CENTERED = {**signal("skeleton"), "options": {"relative_to": [9, 10, 11]}}
# ... and each joint's velocity beside its position (the change from the frame before), as (x, y, z) triples
# turned by at most 25 degrees about each axis while training (a study on the training subjects: the skeleton
# wants smaller turns than the wrist sensor; docs/benchmarks.md)
MOVING = {**CENTERED, "options": {**CENTERED["options"], "deltas": True, "xyz": True, "max_rotation": 25}}
# the depth video as its depth motion maps (front, side, top), read by the frozen ImageNet efficientnet
DEPTH = {"name": "depth", "modality": "video", "options": {"frames": "depth_motion_maps", "size": 224},
         "encoder": {"type": "efficientnet"}}
SOUP = {"soup": 5}  # greedy soup of the 5 best epochs


LIPS = {"name": "lips", "modality": "video", "options": {"size": 48, "channels": 1, "frames": "all", "max_frames": 75},
        "encoder": {"type": "lip_cnn"}}


def masked(inp: dict, spans: int = 2, width: float = 0.1) -> dict:
    """The input with SpecAugment-style time masking while it trains (temporal augmentation)."""
    return {**inp, "encoder": {**inp["encoder"], "time_masks": spans, "time_mask_width": width}}


def gru(inp: dict) -> dict:
    """The input's conv1d with a bidirectional GRU over its steps."""
    return {**inp, "encoder": {**inp["encoder"], "gru": True}}


def xyz(inp: dict) -> dict:
    """The input's features marked as (x, y, z) triples: it gets the `rotation` corruption."""
    return {**inp, "options": {**inp.get("options", {}), "xyz": True}}


# every training value turned by a random rotation (up to 45 degrees about each axis, severity drawn per value)
ROTATED = {"augment": 1.0, "augment_with": ["rotation"]}


def text(encoder: dict | None = None, column: str = "text") -> dict:
    return {"name": "text", "column": column, "modality": "text", "encoder": encoder or {"type": "text_bow"}}


# what the quick form gives (`polymodal fit --input text --input image`): no encoder, schedule or fusion named, so
# the default preset (auto) and the recipe's defaults decide; only the set's data fields (validation groups) kept
DEFAULT = {"default": True}
QUICK_TEXT_AND_PHOTO = [{"name": "text", "modality": "text"}, {"name": "image", "modality": "image"}]
# after every choice on validation, train again on training + validation rows for the chosen epochs (`training.refit`)
REFIT = {"refit": True}
ENS3 = {"ensemble": 3}  # three fits (seeds S, S + 1, S + 2) kept as one model of their mean probabilities
# the quick form with `--threshold validation`: the positive class's decision threshold chosen on validation F1
THRESHOLD = {"threshold": "validation"}
TEXT_AND_PHOTO = {"default": {**DEFAULT, "inputs": QUICK_TEXT_AND_PHOTO},
                  **{f"preset_{p}": {**DEFAULT, "preset": p, "inputs": QUICK_TEXT_AND_PHOTO} for p in ("fast", "best")},
                  "default_threshold": {**DEFAULT, "inputs": QUICK_TEXT_AND_PHOTO, "options": THRESHOLD},
                  "preset_fast_threshold": {**DEFAULT, "preset": "fast", "inputs": QUICK_TEXT_AND_PHOTO,
                                            "options": THRESHOLD},
                  "image_effnet": [IMAGE], "text_bow": [text()], "text_minilm": [text(MINILM)],
                  "bow_effnet": [text(), IMAGE], "minilm_effnet": [text(MINILM), IMAGE],
                  # the efficientnet's last two blocks and head fine-tuned (each block below at 0.7 x the learning
                  # rate of the one above, held still for the first epoch), with or without crops, flips and
                  # brightness/contrast jitter of the photos in every training batch (`training.image_augment`)
                  "minilm_effnet_tuned": {"inputs": [text(MINILM), TUNED_IMAGE], "training": TUNED},
                  "minilm_effnet_tuned_aug": {"inputs": [text(MINILM), TUNED_IMAGE],
                                              "training": {**TUNED, "image_augment": PHOTO_AUGMENT}}}

DATASETS = {
    "mediaeval16": {
        "published": "test accuracy: FakeRevealer 80.0%, EANN 71.5%",
        "positive": "fake",
        "threshold_metric": "accuracy",
        "data": {"validation_group": "event"},
        "configs": TEXT_AND_PHOTO,
    },
    "utd-mhad": {
        "published": "cross-subject accuracy: inertial 67.2% (dataset authors), skeleton 91.63% (ST-JDMs)",
        "positive": None,
        "data": {"validation_group": "subject"},
        "training": {"epochs": 80, "patience": 15, "batch_size": 32, "lr": 2e-3},
        "configs": {
            "default": {**DEFAULT, "inputs": [{"name": "inertial", "modality": "signal"},
                                               {"name": "skeleton", "modality": "signal"}]},
            "inertial": [signal("inertial")],
            "skeleton": [signal("skeleton")],
            "inertial_skeleton": [signal("inertial"), signal("skeleton")],
            "skeleton_centered": [CENTERED],
            "inertial_skeleton_centered": [signal("inertial"), CENTERED],
            "inertial_masked": [masked(signal("inertial"))],
            "inertial_masked_noise": {"inputs": [masked(signal("inertial"))],
                                      "training": {"augment": 0.5, "augment_with": ["white_noise"]}},
            "inertial_skeleton_centered_masked": [masked(signal("inertial")), masked(CENTERED)],
            "inertial_rotated": {"inputs": [masked(xyz(signal("inertial")))], "training": ROTATED},
            "inertial_skeleton_centered_rotated": {"inputs": [masked(xyz(signal("inertial"))), xyz(CENTERED)],
                                                   "training": ROTATED},
            "skeleton_moving_rotated": {"inputs": [MOVING], "training": ROTATED},
            "inertial_skeleton_moving_rotated": {"inputs": [masked(xyz(signal("inertial"))), MOVING],
                                                 "training": ROTATED},
            "depth_maps": [DEPTH],
            "inertial_skeleton_depth": {"inputs": [masked(xyz(signal("inertial"))), MOVING, DEPTH],
                                        "training": ROTATED},
            "inertial_skeleton_depth_soup": {"inputs": [masked(xyz(signal("inertial"))), MOVING, DEPTH],
                                             "training": {**ROTATED, **SOUP}},
            "inertial_skeleton_moving_rotated_soup": {"inputs": [masked(xyz(signal("inertial"))), MOVING],
                                                      "training": {**ROTATED, **SOUP}},
            "inertial_rotated_gru_soup": {"inputs": [gru(masked(xyz(signal("inertial"))))],
                                          "training": {**ROTATED, **SOUP}},
            "inertial_rotated_gru": {"inputs": [gru(masked(xyz(signal("inertial"))))], "training": ROTATED},
            # the chosen ones, then trained again on all four training subjects for the epochs validation chose
            "inertial_skeleton_moving_rotated_soup_refit": {"inputs": [masked(xyz(signal("inertial"))), MOVING],
                                                            "training": {**ROTATED, **SOUP, **REFIT}},
            "inertial_rotated_gru_soup_refit": {"inputs": [gru(masked(xyz(signal("inertial"))))],
                                                "training": {**ROTATED, **SOUP, **REFIT}},
            # ... three of them (seeds S, S + 1, S + 2 on the first one's validation split) as one model
            "inertial_skeleton_moving_rotated_soup_refit_ens3": {
                "inputs": [masked(xyz(signal("inertial"))), MOVING], "training": {**ROTATED, **SOUP, **REFIT, **ENS3}},
            "inertial_rotated_gru_soup_refit_ens3": {"inputs": [gru(masked(xyz(signal("inertial"))))],
                                                     "training": {**ROTATED, **SOUP, **REFIT, **ENS3}},
            "inertial_skeleton_depth_soup_refit_ens3": {"inputs": [masked(xyz(signal("inertial"))), MOVING, DEPTH],
                                                        "training": {**ROTATED, **SOUP, **REFIT, **ENS3}},
            # the depth maps dropped from half the training rows, so the fusion cannot lean on them (they cost it)
            "inertial_skeleton_depth_soup_dropdepth": {
                "inputs": [masked(xyz(signal("inertial"))), MOVING, DEPTH],
                "training": {**ROTATED, **SOUP, "modality_dropout": {"depth": 0.5}}},
            "inertial_skeleton_depth_soup_dropdepth_refit_ens3": {
                "inputs": [masked(xyz(signal("inertial"))), MOVING, DEPTH],
                "training": {**ROTATED, **SOUP, **REFIT, **ENS3, "modality_dropout": {"depth": 0.5}}},
            "inertial_skeleton_centered_rotated_gru": {
                "inputs": [gru(masked(xyz(signal("inertial")))), gru(xyz(CENTERED))], "training": ROTATED},
        },
    },
    "grid-s1": {
        "published": "lips only, whole sentences on GRID's overlapped-speaker protocol: LipNet 4.8% WER",
        "positive": None,
        "target": "digit",
        "data": {},
        # 15 epochs were enough for the audio; lips from scratch start learning after ~9 (measured), so 60
        "training": {"epochs": 60, "patience": 15, "batch_size": 16, "lr": 2e-3},
        "configs": {
            "audio_whisper": [{"name": "audio", "modality": "audio", "encoder": {"type": "whisper"}}],
            "audio_conv1d": [{"name": "audio", "modality": "audio"}],
            "lips_uniform8": [{"name": "lips", "modality": "video",
                               "options": {"size": 48, "channels": 1, "frames": "uniform", "n_frames": 8}}],
            "lips_all_lipcnn": [LIPS],
            "lips_all_lipcnn_masked": [masked(LIPS, 2, 0.1)],
            "lips_all_lipcnn_flatten": [{**LIPS, "encoder": {"type": "lip_cnn", "pool": "flatten"}}],
            # the crops' own shape (100 x 60 px: wider than high) at 48 px high rather than squeezed into a square
            "lips_all_lipcnn_wide": [{**LIPS, "options": {**LIPS["options"], "size": [48, 80]}}],
            # the same with each training clip cropped at random (the same box for all its frames, at least 80% of
            # the area, resized back: `training.image_augment`), as lip readers train on jittered mouth crops
            "lips_all_lipcnn_wide_crop": {"inputs": [{**LIPS, "options": {**LIPS["options"], "size": [48, 80]}}],
                                          "training": {"image_augment": {"crop": 0.8}}},
            "lips_all_lipcnn_attention": [{**LIPS, "encoder": {"type": "lip_cnn", "summary": "attention"}}],
            "lips_all_lipcnn_masked_flip": [masked({**LIPS, "encoder": {**LIPS["encoder"], "flip": True}}, 2, 0.1)],
        },
    },
    "multioff": {
        "published": "offensive F1 0.503 (dataset paper); accuracy 0.685 (MemeFier)",
        "positive": "offensive",
        "data": {},
        "configs": TEXT_AND_PHOTO,
    },
}


def recipe(dataset: str, config: str, seed: int, epochs: int, target: str | None = None) -> dict:
    spec = DATASETS[dataset]
    folder = SHARED / dataset
    data = {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl"), **spec["data"]}
    if (folder / "validation.jsonl").is_file():
        data["validation"] = str(folder / "validation.jsonl")
    training = {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "patience": 5, **spec.get("training", {}),
                "seed": seed, "progress": False}
    column = target or spec.get("target", "label")
    chosen = spec["configs"][config]  # a list of inputs, or {inputs, training: fields over the set's}
    if isinstance(chosen, dict) and chosen.get("default"):
        options = {**chosen.get("options", {})}
        if options.get("threshold") and spec["positive"]:  # what the set is judged on: F1 of the positive class,
            options["positive_class"] = spec["positive"]  # or (mediaeval16) accuracy
            options["threshold_metric"] = spec.get("threshold_metric", "f1")
        return {"data": data, "inputs": chosen["inputs"], "target": {"column": column, "options": options},
                "model": {"preset": chosen.get("preset", "auto")}, "training": {"seed": seed, "progress": False}}
    if isinstance(chosen, dict):
        training.update(chosen.get("training", {}))
        chosen = chosen["inputs"]
    return {"data": data, "inputs": chosen, "target": {"column": column},
            "model": {"dim": 128, "fusion": {"method": "concat", "hidden": 256, "dropout": 0.2}},
            "training": training}


def run_one(args) -> None:
    import polymodal as pm

    rec = recipe(args.dataset, args.config, args.seed, args.epochs, args.target)
    started = time.perf_counter()
    model = pm.fit(rec, out=Path(args.out) / f"{args.dataset}-{args.config}-s{args.seed}", overrides=args.set or None)
    wall = time.perf_counter() - started
    test, val = model.metrics["test"], model.metrics.get("validation", {})
    positive = DATASETS[args.dataset]["positive"]
    print(json.dumps({
        "dataset": args.dataset, "config": args.config, "seed": args.seed, "target": rec["target"]["column"],
        "test_accuracy": test["accuracy"], "test_f1_macro": test["f1_macro"],
        "test_positive_f1": test["per_class_f1"].get(positive) if positive else None,
        "validation_accuracy": val.get("accuracy"),
        "threshold": model.metrics["training"].get("calibrated"),
        "epochs": model.metrics["training"].get("epochs") or [m["epochs"] for m in model.metrics["training"].get(
            "members", [])],
        "train_seconds": model.metrics["training"]["seconds"] + model.metrics["training"].get("refit", {}).get(
            "seconds", 0), "refit": model.metrics["training"].get("refit"),
        "members_validation_accuracy": [(m.get("validation") or {}).get("accuracy")
                                        for m in model.metrics["training"].get("members", [])] or None,
        "wall_seconds": round(wall, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "test_reliance": test.get("reliance"),  # accuracy lost with each input removed
        "fallback_rows": (model.metrics["training"].get("fallback_rows") or {}).get("chosen"),
    }), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    ap.add_argument("--configs", default=None, help="comma-separated (default: every config of the set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default="runs/bench-real")
    ap.add_argument("--target", default=None, help="the target column (grid-s1: any word slot; default digit)")
    ap.add_argument("--set", action="append", help="recipe override FIELD=VALUE (as polymodal fit --set)")
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.config:
        run_one(args)
        return
    configs = args.configs.split(",") if args.configs else list(DATASETS[args.dataset]["configs"])
    results = []
    for config in configs:
        cmd = [sys.executable, __file__, "--dataset", args.dataset, "--config", config, "--seed", str(args.seed),
               "--epochs", str(args.epochs), "--out", args.out] + [f"--set={s}" for s in args.set or []] + \
            (["--target", args.target] if args.target else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        if proc.returncode or line is None:
            print(f"{config}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(line))
        print(line, flush=True)
    spec = DATASETS[args.dataset]
    print(f"\n{args.dataset}, seed {args.seed}, 2 CPU cores; published: {spec['published']}\n")
    print(f"| config | test accuracy | macro F1 | {spec['positive'] or '-'} F1 | validation acc | epochs | train s | "
          "peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['config']} | {100 * r['test_accuracy']:.2f} | {r['test_f1_macro']:.3f} | "
              f"{r['test_positive_f1'] or 0:.3f} | {100 * (r['validation_accuracy'] or 0):.2f} | {r['epochs']} | "
              f"{r['train_seconds']:.0f} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
