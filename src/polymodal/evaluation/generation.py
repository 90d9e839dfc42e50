"""Evaluating a text-to-image model: images generated for held-out captions, scored by a classifier trained on real
images of the same data (attribute accuracy), a Fréchet distance in that classifier's feature space (the FID recipe
with our classifier in place of Inception: numbers are not comparable with published FIDs), and a CLIP-style score
when a contrastive model is given."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data import Collator, GroupedBatchSampler, ReadTable, Table
from ..errors import PolymodalError
from ..model import Parts


@torch.inference_mode()
def denoising_loss(parts: Parts, data: ReadTable, batch_size: int = 64, seed: int = 0) -> dict:
    """The denoising loss over a split at seeded noise levels (comparable between epochs and models)."""
    net = parts.net
    net.eval()
    collate = Collator(data, parts.modalities, None)
    device = next(net.parameters()).device
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    losses, rows = [], 0
    for batch_rows in GroupedBatchSampler(list(range(len(data))), batch_size, False, 0):
        batch, _ = collate(batch_rows)
        n = len(batch_rows)
        losses.append(float(net.loss(parts.task, {k: v.to(device) for k, v in batch.items()}, None)) * n)
        rows += n
    torch.random.set_rng_state(state)
    return {"rows": len(data), "denoising_loss": round(sum(losses) / max(1, rows), 6)}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


@torch.inference_mode()
def classifier_features(clf, table: Table) -> np.ndarray:
    """A classifier's fused representation (what its head reads) of a table's images, through its own data path."""
    read = clf._read(table, "none")
    net = clf.parts.net
    collate = Collator(read, clf.parts.modalities, None)
    feats = []
    for rows in GroupedBatchSampler(list(range(len(read))), 128, False, 0):
        batch, _ = collate(rows)
        feats.append(net.fuse(net.encode(batch)).pooled.float().numpy())
    return np.concatenate(feats)


def generation_report(parts: Parts, table: Table, load: Callable[[str | Path], Any],
                      classifier: str | Path | None = None, contrastive: str | Path | None = None,
                      steps: int | None = None, guidance: float | None = None,
                      seed: int = 0, limit: int | None = None, progress: Callable[[int, int], None] | None = None,
                      out: Path | None = None, sampler: str | None = None) -> dict:
    """Generate one image per held-out row's caption and score them (`load` opens the classifier as a Model)."""
    from ..generation import image_grid

    cond = next(s for s in parts.inputs if s.name == parts.net.condition)
    image_spec = next(s for s in parts.inputs if s.name == parts.net.image)
    rows = [r for r in table.rows if isinstance(r.get(cond.column), str) and r.get(cond.column)]
    if limit:
        rows = rows[:limit]
    captions = [r[cond.column] for r in rows]
    images = []
    for start in range(0, len(captions), 16):
        images.extend(parts.task.generate(parts, captions[start:start + 16], 1, steps, guidance, seed + start,
                                          sampler))
        if progress:
            progress(min(len(captions), start + 16), len(captions))
    result: dict = {"rows": len(images), "steps": steps or parts.task.config.steps,
                    "sampler": sampler or parts.task.config.sampler,
                    "guidance": parts.task.config.guidance if guidance is None else guidance}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        image_grid(images[:64], 8).save(out / "generated.png")
        result["grid"] = str(out / "generated.png")
    if classifier is not None:
        clf = load(classifier)
        column, target = clf.parts.inputs[0].column, clf.parts.recipe.target.column
        missing = [i + 1 for i, r in enumerate(rows) if r.get(target) in (None, "")]
        if missing:
            raise PolymodalError(f"{table.source}: the classifier's target column '{target}' is empty in row "
                                 f"{missing[0]}; the generated images are judged against it")
        generated = Table([{column: img} for img in images], Path.cwd(), "<generated>")
        preds = clf.predict(generated)
        truth = [str(r.get(target)) for r in rows]
        hits = [p["label"] == t for p, t in zip(preds, truth)]
        per_class: dict[str, list[int]] = {}
        confusions: Counter = Counter()
        for p, t, hit in zip(preds, truth, hits):
            per_class.setdefault(t, [0, 0])[0] += hit
            per_class[t][1] += 1
            if not hit:
                confusions[f"{t} -> {p['label']}"] += 1
        result["classifier"] = {"model": str(classifier), "target": target,
                                "attribute_accuracy": round(float(np.mean(hits)), 6),
                                "per_class_accuracy": {t: round(h / n, 4) for t, (h, n) in sorted(per_class.items())},
                                "confusions": dict(confusions.most_common()),
                                "note": "Fréchet distance in the classifier's feature space, not Inception FID"}
        real_rows = [r for r in rows if r.get(image_spec.column) not in (None, "")]
        if len(real_rows) > 1:  # the real images of the same rows, when the table has them
            real = Table([{column: r[image_spec.column], target: r.get(target)} for r in real_rows],
                         table.base_dir, table.source)
            result["classifier"]["accuracy_on_real"] = clf.evaluate(real).get("accuracy")
            result["classifier"]["frechet_distance"] = round(
                frechet_distance(classifier_features(clf, real), classifier_features(clf, generated)), 4)
    if contrastive is not None:
        from ..retrieval import open_embedder

        emb = open_embedder(contrastive)
        text_name = emb.input_for(None, "text")
        image_name = emb.input_for(None, "image")
        zt = emb.embed_values(text_name, captions)
        zi = emb.embed_values(image_name, images)
        result["clip_score"] = round(float(100 * np.clip((zt * zi).sum(1), 0, None).mean()), 4)
        result["contrastive"] = str(contrastive)
    return result
