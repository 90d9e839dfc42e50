"""`polymodal demo`: easy-VQA (shipped by the easy-vqa package) -> tables -> a trained image+question model,
offline, in minutes on a laptop CPU."""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from .errors import PolymodalError


def cache_dir() -> Path:
    return Path(os.environ.get("POLYMODAL_CACHE", Path.home() / ".cache" / "polymodal"))


def _easy_vqa_splits(directory: Path | None, prefix: str, rows) -> dict[str, Path]:
    """Write easy-VQA's official train/test splits as jsonl tables `{prefix}{split}.jsonl` (cached), each row from
    rows(questions, answers, image_ids, image_paths)."""
    try:
        import easy_vqa
    except ImportError:
        raise PolymodalError("easy-VQA tables need the easy-vqa package: pip install 'polymodal[demo]'") from None
    directory = directory or cache_dir() / "easy-vqa"
    directory.mkdir(parents=True, exist_ok=True)
    splits = {"train": (easy_vqa.get_train_questions, easy_vqa.get_train_image_paths),
              "test": (easy_vqa.get_test_questions, easy_vqa.get_test_image_paths)}
    paths = {}
    for split, (questions, images) in splits.items():
        path = directory / f"{prefix}{split}.jsonl"
        paths[split] = path
        if path.is_file():
            continue
        texts, answers, image_ids = questions()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two processes may build it at once
        with tmp.open("w") as f:
            for row in rows(texts, answers, image_ids, images()):
                f.write(json.dumps(row) + "\n")
        tmp.replace(path)
    return paths


def easy_vqa_tables(directory: Path | None = None) -> dict[str, Path]:
    """easy-VQA's questions as jsonl tables (image path, question, answer, image id)."""
    def rows(texts, answers, image_ids, image_paths):
        for q, a, i in zip(texts, answers, image_ids):
            yield {"image": image_paths[i], "question": q, "answer": a, "image_id": i}

    return _easy_vqa_splits(directory, "", rows)


SHAPES = ("circle", "rectangle", "triangle")
COLOURS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")


def attributes_from_questions(questions: list[tuple[str, str]]) -> dict[str, str]:
    """An image's shape and colour, read from its (question, answer) pairs: open answers name them; a yes to "is
    there a red shape?" (or a no to "is there not a red shape?") confirms the attribute asked about, and a
    value is taken when every other one is ruled out."""
    found: dict[str, str] = {}
    excluded: dict[str, set[str]] = {}
    for q, a in questions:
        words = q.rstrip("?").split()
        named = {"shape": [w for w in words if w in SHAPES], "colour": [w for w in words if w in COLOURS]}
        if a in SHAPES:
            found["shape"] = a
        elif a in COLOURS:
            found["colour"] = a
        negative = "not" in words or "no" in words
        if a in SHAPES or a in COLOURS or (a == "yes") != negative:
            for key, values in named.items():
                if values:
                    found.setdefault(key, values[0])
        elif a in ("yes", "no"):  # the attribute asked about is ruled out
            for key, values in named.items():
                excluded.setdefault(key, set()).update(values)
    for key, options in (("shape", SHAPES), ("colour", COLOURS)):
        left = [o for o in options if o not in excluded.get(key, set())]
        if key not in found and len(left) == 1:  # every other value ruled out
            found[key] = left[0]
    return found


def easy_vqa_caption_tables(directory: Path | None = None) -> dict[str, Path]:
    """easy-VQA's images with captions built from their questions ("a red circle"): one row per image with
    `image`, `caption`, `shape`, `colour` (images whose questions do not give both are left out)."""
    def rows(texts, answers, image_ids, image_paths):
        per_image: dict[int, list] = {}
        for q, a, i in zip(texts, answers, image_ids):
            per_image.setdefault(i, []).append((q, a))
        for i in sorted(per_image):
            att = attributes_from_questions(per_image[i])
            if "shape" in att and "colour" in att:
                yield {"id": i, "image": image_paths[i], "caption": f"a {att['colour']} {att['shape']}",
                       "shape": att["shape"], "colour": att["colour"]}

    return _easy_vqa_splits(directory, "captions-", rows)


def demo_recipe() -> dict:
    import yaml

    text = resources.files("polymodal").joinpath("recipes/easy_vqa.yaml").read_text()
    return yaml.safe_load(text)


def run_demo(out: Path, overrides: list[str] | None = None, progress: bool = True) -> dict:
    from rich.console import Console
    from rich.table import Table as RichTable

    from .api import fit

    console = Console()
    tables = easy_vqa_tables()
    recipe = demo_recipe()
    recipe["data"] = {"train": str(tables["train"]), "test": str(tables["test"])}
    recipe.setdefault("training", {})["progress"] = progress
    console.print(f"[bold]polymodal demo[/bold]: easy-VQA, image + question -> answer; model directory: {out}")
    model = fit(recipe, out=out, overrides=overrides)
    test = model.metrics["test"]
    t = model.metrics["training"]
    console.print(f"\ntrained {t['epochs']} epochs in {t['seconds']:.0f} s (best epoch {t['best_epoch']}); "
                  f"{t['train_rows']} training / {t['validation_rows']} validation questions")
    console.print(f"[bold green]easy-VQA official test accuracy: {100 * test['accuracy']:.2f}%[/bold green] "
                  f"({test['rows']} questions)")
    table = RichTable(title="per-answer accuracy")
    table.add_column("answer")
    table.add_column("accuracy", justify="right")
    for answer, acc in test["per_class_accuracy"].items():
        table.add_row(answer, f"{100 * acc:.2f}%")
    console.print(table)
    rows = [json.loads(line) for line in tables["test"].read_text().splitlines()[:: 1613][:6]]
    preds = model.predict(rows)
    examples = RichTable(title="example predictions")
    for col in ("image", "question", "predicted", "truth"):
        examples.add_column(col)
    for row, pred in zip(rows, preds):
        examples.add_row(Path(row["image"]).name, row["question"], pred["label"], row["answer"])
    console.print(examples)
    return model.metrics
