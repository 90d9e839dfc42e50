"""Robustness: the score with every subset of inputs removed, and for each input the score at ten severities of
each of its corruptions; relative robustness (area under the curve over severity 0..1, as MultiBench computes
it) and effective robustness (area between the curve and the late-fusion curve shifted to the same clean score)."""
from __future__ import annotations

import itertools
import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data import ReadTable
from ..model import Parts
from .evaluate import score
from .reliance import without

LEVELS = [round(0.1 * i, 1) for i in range(11)]  # 0 = clean, then ten severities


def relative_robustness(curve: list[float], levels: list[float] = LEVELS) -> float:
    """Trapezoidal area under the score-vs-severity curve (severity spans [0, 1])."""
    y, x = np.asarray(curve, float), np.asarray(levels, float)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x) / 2))


def effective_robustness(curve: list[float], baseline: list[float], levels: list[float] = LEVELS) -> float:
    """Area of (curve - baseline shifted to the curve's clean score): > 0 degrades more gently than the baseline."""
    f, b = np.asarray(curve, float), np.asarray(baseline, float)
    return relative_robustness(list(f - (b + (f[0] - b[0]))), levels)


def corrupted(data: ReadTable, parts: Parts, name: str, fn, severity: float, seed: int = 0) -> ReadTable:
    """The same rows with one input's distinct values corrupted (each seeded by its position)."""
    modality = parts.modalities[name]
    items = [modality.features(fn(raw, severity, np.random.default_rng([seed, i, zlib.crc32(fn.__name__.encode())])))
             for i, raw in enumerate(data.raw[name])]
    return replace(data, items={**data.items, name: items})


def subset_scores(parts: Parts, data: ReadTable, metric: str) -> dict[str, float]:
    """Score for every subset of inputs kept (the rest removed), keyed 'a+b' ('none' for no input)."""
    names = list(data.ids)
    out = {}
    for k in range(len(names), -1, -1):
        for kept in itertools.combinations(names, k):
            removed = set(names) - set(kept)
            out["+".join(kept) or "none"] = score(parts, without(data, removed))[metric]
    return out


def robustness_report(parts: Parts, data: ReadTable, baseline: dict | None = None, seed: int = 0,
                      progress=None) -> dict:
    """Everything `evaluate --robustness` reports. `data` must be read with keep_raw=True. `baseline` is another
    model's report (late fusion) for effective robustness."""
    metric = parts.task.monitor
    clean = score(parts, data)[metric]
    report: dict = {"metric": metric, "clean": clean, "levels": LEVELS, "subsets": subset_scores(parts, data, metric),
                    "curves": {}, "relative_robustness": {}, "effective_robustness": {}}
    for name, modality in parts.modalities.items():
        kinds = modality.corruptions
        report["curves"][name], report["relative_robustness"][name] = {}, {}
        for kind, fn in kinds.items():
            curve = [clean] + [score(parts, corrupted(data, parts, name, fn, s, seed))[metric] for s in LEVELS[1:]]
            report["curves"][name][kind] = [round(v, 6) for v in curve]
            report["relative_robustness"][name][kind] = round(relative_robustness(curve), 6)
            base = ((baseline or {}).get("curves") or {}).get(name, {}).get(kind)
            if base:
                report["effective_robustness"].setdefault(name, {})[kind] = round(effective_robustness(curve, base), 6)
            if progress:
                progress(name, kind)
        if kinds:
            report["relative_robustness"][name]["mean"] = round(float(np.mean(
                [report["relative_robustness"][name][k] for k in kinds])), 6)
            if name in report["effective_robustness"]:
                eff = report["effective_robustness"][name]
                eff["mean"] = round(float(np.mean(list(eff.values()))), 6)
    return report


def plot_curves(report: dict, out: Path) -> list[Path]:
    """One PNG per input: score against severity for each corruption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, curves in report["curves"].items():
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
        for kind, curve in curves.items():
            rr = report["relative_robustness"][name][kind]
            ax.plot(report["levels"], curve, marker="o", ms=3, label=f"{kind} (RR {rr:.3f})")
        ax.set_xlabel("severity")
        ax.set_ylabel(report["metric"])
        ax.set_title(f"robustness of `{name}`")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"robustness_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    (out / "robustness.json").write_text(json.dumps(report, indent=2))
    return paths


def load_baseline(path: str | Path) -> dict:
    """A baseline's robustness report: a robustness.json, an `evaluate --json` output, or a directory with one."""
    p = Path(path)
    if p.is_dir():
        p = p / "robustness.json"
    data = json.loads(p.read_text())
    return data.get("robustness", data)
