"""Zero-shot classification: each label becomes text prompts ("a {}"), embedded by the text input; each value of the
other input takes the label whose mean prompt embedding is closest (CLIP's recipe, prompt ensembles included)."""
from __future__ import annotations

import numpy as np

from ..data import Table
from ..errors import PolymodalError
from ..tasks.classification import as_label
from .embedder import Embedder


def class_embeddings(embedder: Embedder, text_input: str, labels: list[str], templates: list[str]) -> np.ndarray:
    """[labels, E]: the normalised mean of each label's prompt embeddings."""
    for t in templates:
        if "{}" not in t:
            raise PolymodalError(f"--template '{t}' has no '{{}}' for the label")
    prompts = [t.replace("{}", label) for label in labels for t in templates]
    emb = embedder.embed_values(text_input, prompts).reshape(len(labels), len(templates), -1).mean(1)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)


def zero_shot(embedder: Embedder, table: Table, labels: list[str], templates: list[str] | None = None,
              input_name: str | None = None, text_input: str | None = None, label_column: str | None = None) -> dict:
    """Predictions for every row with a value, and accuracy (overall and per label) when `label_column` is given."""
    labels = [lab.strip() for lab in labels if lab.strip()]
    if len(labels) < 2:
        raise PolymodalError("--labels needs at least two labels, separated by commas")
    text_name = embedder.input_for(text_input, "text")
    if input_name is None:
        others = [n for n in embedder.inputs if n != text_name]
        input_name = others[0] if len(others) == 1 else embedder.input_for(None, None)
    input_name = embedder.input_for(input_name)
    if input_name == text_name:
        raise PolymodalError("zero-shot classifies another input than the text prompts; name it with --input")
    if label_column and label_column not in table.columns():
        raise PolymodalError(f"{table.source}: no label column '{label_column}'")
    classes = class_embeddings(embedder, text_name, labels, templates or ["{}"])
    emb, rows = embedder.embed_table(table, input_name)
    scores = emb @ classes.T
    best = scores.argmax(1)
    predictions = []
    for r, b, s in zip(rows, best, scores):
        pred = {"row": r, "label": labels[b], "scores": {lab: round(float(v), 6) for lab, v in zip(labels, s)}}
        if "id" in table.rows[r]:
            pred["id"] = table.rows[r]["id"]
        predictions.append(pred)
    result: dict = {"input": input_name, "labels": labels, "templates": templates or ["{}"],
                    "rows": len(rows), "predictions": predictions}
    if label_column:
        truth = [as_label(table.rows[r].get(label_column)).strip().lower() for r in rows]
        hit = np.array([t == labels[b].lower() for t, b in zip(truth, best)])
        result["accuracy"] = round(float(hit.mean()), 6)
        result["per_label_accuracy"] = {lab: round(float(hit[[t == lab.lower() for t in truth]].mean()), 6)
                                        for lab in labels if any(t == lab.lower() for t in truth)}
        unknown = sorted(set(truth) - {lab.lower() for lab in labels})
        if unknown:
            result["unknown_labels"] = unknown[:20]
    return result
