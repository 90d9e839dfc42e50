"""The score of a model against the signal-to-noise ratio of its audio input: white noise at each SNR, for the audio
alone, the other inputs alone and all inputs together (the curve that shows what lips add to noisy speech)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import ReadTable
from ..errors import PolymodalError
from ..modalities.audio import add_white_noise
from ..model import Parts
from .evaluate import score
from .reliance import without
from .robustness import corrupted


def white_noise_snr(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    return add_white_noise(wave, snr_db, rng)


def noise_curve(parts: Parts, data: ReadTable, snrs: list[float], noise_input: str | None = None,
                progress: Any = None, out: Path | None = None, metric: str | None = None) -> dict:
    """{"snr_db": ["clean", ...snrs], metric: ..., "<audio>": [...], "<others>": [...], "all": [...]}; `data` must be
    read with keep_raw=True. Noise is seeded per clip, so every subset hears the same noise."""
    kinds = {s.name: s.modality.registry_name for s in parts.inputs}
    audio = [n for n, k in kinds.items() if k == "audio"]
    name = noise_input or (audio[0] if len(audio) == 1 else None)
    if name is None or kinds.get(name) != "audio":
        raise PolymodalError(f"noise_input: name the audio input to add noise to (inputs: "
                             f"{', '.join(f'{n} ({k})' for n, k in kinds.items())})")
    if data.raw is None or name not in data.raw:
        raise PolymodalError("the SNR curve needs the raw audio (read the table with keep_raw)")
    metric = metric or parts.task.monitor
    others = [n for n in kinds if n != name]
    subsets = {name: set(others)} | ({"+".join(others): {name}, "all": set()} if others else {})
    curve: dict[str, Any] = {"snr_db": ["clean", *snrs], "metric": metric, **{k: [] for k in subsets}}
    for snr in [None, *snrs]:
        noisy = data if snr is None else corrupted(data, parts, name, white_noise_snr, snr)
        for key, removed in subsets.items():
            if key == "+".join(others) and snr is not None:  # the audio is absent: noise changes nothing
                curve[key].append(curve[key][0])
                continue
            curve[key].append(round(score(parts, without(noisy, removed))[metric], 6))
        if progress is not None:
            progress(1, "snr")
    if out is not None:
        curve["plot"] = str(plot_curve(curve, out))
    return curve


def plot_curve(curve: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    labels = [str(s) for s in curve["snr_db"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, values in curve.items():
        if key in ("snr_db", "metric", "plot"):
            continue
        ax.plot(range(len(values)), [100 * v for v in values], marker="o", label=key)
    ax.set_xticks(range(len(labels)), [f"{s} dB" if s != "clean" else s for s in labels])
    ax.set_xlabel("audio signal-to-noise ratio")
    ax.set_ylabel(f"{curve['metric'].upper()} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "wer_vs_snr.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
