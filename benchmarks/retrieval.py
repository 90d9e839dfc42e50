"""Joint embedding spaces on real data (issue 5's goals), each trained with `polymodal fit` (task contrastive):

- easy-VQA: captions built from each image's questions ("a red circle") vs the images; test split, class-level
  recall@1 text->image (goal >= 0.95); zero-shot shape classification with prompts (goal >= 95%);
- avdigits: spoken digit (audio) vs an MNIST image of the same digit; test split, class-level recall@1 audio->image
  (goal >= 0.95).

    python benchmarks/retrieval.py [easy-vqa|avdigits ...] [--seed 0] [--out runs/bench-retrieval] [--json F]
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import polymodal as pm
from polymodal.data import as_table
from polymodal.retrieval import open_embedder, zero_shot

COLOURS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")


def easy_vqa(seed: int, out: Path, variant: str) -> dict:
    from polymodal.demo import easy_vqa_caption_tables

    tables = easy_vqa_caption_tables()
    recipe = {
        "data": {"train": str(tables["train"]), "test": str(tables["test"])},
        "inputs": [{"name": "caption", "modality": "text", "encoder": {"type": "text_bow"}},
                   {"name": "image", "modality": "image", "options": {"size": 64},
                    "encoder": {"type": "image_cnn", "channels": [32, 64, 128]}}],
        "target": {"column": "caption", "task": "contrastive"},
        "model": {"dim": 64},
        "training": {"epochs": 15, "batch_size": 64, "lr": 0.002, "seed": seed, "progress": False},
    }
    if variant == "augment":  # word dropout / typos on captions and image corruptions, 30% of values
        recipe["training"]["augment"] = 0.3
    started = time.perf_counter()
    model = pm.fit(recipe, out=out / f"easy-vqa-{variant}-s{seed}")
    wall = time.perf_counter() - started
    test = model.metrics["test"]
    emb = open_embedder(model.directory)
    table = as_table(tables["test"])
    shapes = ["circle", "rectangle", "triangle"]
    plain = zero_shot(emb, table, shapes, ["a {}"], label_column="shape")
    ensemble = zero_shot(emb, table, shapes, [f"a {c} {{}}" for c in COLOURS], label_column="shape")
    colours = zero_shot(emb, table, list(COLOURS), ["a {} circle", "a {} rectangle", "a {} triangle"],
                        label_column="colour")
    return {"dataset": "easy-vqa", "variant": variant, "seed": seed,
            "train_seconds": model.metrics["training"]["seconds"],
            "wall_seconds": round(wall, 1), "epochs": model.metrics["training"]["epochs"],
            "test_rows": test["rows"], "caption->image": test["caption->image"],
            "image->caption": test["image->caption"],
            "zero_shot_shape_a_{}": plain["accuracy"], "zero_shot_shape_colour_ensemble": ensemble["accuracy"],
            "zero_shot_colour": colours["accuracy"]}


def avdigits(seed: int, out: Path, variant: str) -> dict:
    from fusion_zoo import dataset  # the same data and encoders as the fusion benchmark

    recipe, _ = dataset("avdigits")
    recipe["target"] = {"column": "label", "task": "contrastive",
                        "options": {"label_positives": variant == "label_positives"}}
    recipe["model"] = {"dim": 128}
    recipe["training"].update({"seed": seed, "progress": False})
    started = time.perf_counter()
    model = pm.fit(recipe, out=out / f"avdigits-{variant}-s{seed}")
    wall = time.perf_counter() - started
    test = model.metrics["test"]
    return {"dataset": "avdigits", "variant": variant, "seed": seed,
            "train_seconds": model.metrics["training"]["seconds"],
            "wall_seconds": round(wall, 1), "epochs": model.metrics["training"]["epochs"], "test_rows": test["rows"],
            "audio->image": test["audio->image"], "image->audio": test["image->audio"]}


RUNS = {"easy-vqa": (easy_vqa, ["pairs"]), "avdigits": (avdigits, ["pairs", "label_positives"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="*", default=list(RUNS))
    ap.add_argument("--variants", nargs="*", default=None, help="pairs, augment (easy-vqa), label_positives "
                    "(avdigits)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-retrieval"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    results = []
    for name in args.datasets:
        fn, variants = RUNS[name]
        for variant in args.variants or variants:
            result = fn(args.seed, args.out, variant)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
