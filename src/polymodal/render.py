"""Render attributions in each modality's own form (heatmap over the image, highlighted words, saliency over the
spectrogram's time axis, per-frame strip, per-step bars) and write the figures and one self-contained HTML page."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
from torch import Tensor


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def image_figure(image: Tensor, attr: Tensor, path: Path, title: str) -> Path:
    """image [C,H,W] in [0,1]; attr [C,H,W] -> the image beside its |attribution| heatmap overlaid."""
    plt = _plt()
    heat = attr.abs().sum(0).numpy()
    img = image.permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
    axes[0].set_title("input")
    axes[1].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
    axes[1].imshow(heat, cmap="inferno", alpha=0.6)
    axes[1].set_title(title)
    for ax in axes:
        ax.axis("off")
    return _save(fig, path)


def sequence_figure(features: Tensor, attr: Tensor, path: Path, title: str, spectrogram: bool) -> Path:
    """features [T,F]; attr [T,F] -> the spectrogram (or signal) with saliency over time."""
    plt = _plt()
    sal = attr.abs().sum(-1).numpy()
    fig, axes = plt.subplots(2, 1, figsize=(7, 4), sharex=True, height_ratios=[2, 1])
    if spectrogram:
        axes[0].imshow(features.T.numpy(), aspect="auto", origin="lower", cmap="magma")
        axes[0].set_ylabel("mel band")
    else:
        axes[0].plot(features.numpy())
        axes[0].set_ylabel("value")
    axes[1].bar(np.arange(len(sal)), sal, width=1.0, color="tab:red")
    axes[1].set_ylabel("|attribution|")
    axes[1].set_xlabel("time step")
    axes[0].set_title(title)
    return _save(fig, path)


def video_figure(frames: Tensor, attr: Tensor, path: Path, title: str) -> Path:
    """frames [N,C,H,W]; attr same -> a strip of frames with per-frame attribution."""
    plt = _plt()
    n = frames.shape[0]
    per_frame = attr.abs().flatten(1).sum(1).numpy()
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3), height_ratios=[2, 1], squeeze=False)
    for i in range(n):
        f = frames[i].permute(1, 2, 0).numpy()
        axes[0, i].imshow(f.squeeze(-1) if f.shape[-1] == 1 else f, cmap="gray")
        axes[0, i].axis("off")
        axes[1, i].bar([0], [per_frame[i]], color="tab:red")
        axes[1, i].set_ylim(0, per_frame.max() * 1.1 + 1e-12)
        axes[1, i].axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def text_html(tokens: list[str], attr: Tensor) -> str:
    """Words highlighted by attribution: green pushes towards the prediction, red against."""
    scale = float(attr.abs().max()) or 1.0
    spans = []
    for tok, a in zip(tokens, attr.tolist()):
        alpha = min(1.0, abs(a) / scale)
        colour = f"rgba(0,160,0,{alpha:.2f})" if a >= 0 else f"rgba(220,0,0,{alpha:.2f})"
        spans.append(f'<span style="background:{colour};padding:1px 3px;margin:1px;border-radius:3px" '
                     f'title="{a:+.4f}">{html.escape(tok)}</span>')
    return " ".join(spans)


def bar_figure(values: dict[str, float], path: Path, title: str, xlabel: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(values)))
    names = list(values)
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.invert_yaxis()
    return _save(fig, path)


def heatmap_figure(matrix: Tensor, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(matrix.numpy(), aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, path)


def scatter_figure(points: np.ndarray, labels: list[str], path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    colours = plt.get_cmap("tab20").colors
    for k, lab in enumerate(sorted(set(labels))):
        idx = [i for i, x in enumerate(labels) if x == lab]
        ax.scatter(points[idx, 0], points[idx, 1], s=8, label=lab, color=colours[k % len(colours)])
    ax.legend(fontsize=7, markerscale=2)
    ax.set_title(title)
    return _save(fig, path)


def html_report(title: str, sections: list[tuple[str, str]], figures: list[Path], path: Path) -> Path:
    """One self-contained HTML page: sections of HTML, then the figures embedded as base64 PNG."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "img{max-width:100%;margin:0.5em 0}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    for fig in figures:
        data = base64.b64encode(Path(fig).read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(fig.stem)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(fig.stem)}</figcaption></figure>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def table_html(rows: dict[str, dict[str, float]] | dict[str, float], header: tuple[str, ...]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for key, val in rows.items():
        cells = val.values() if isinstance(val, dict) else [val]
        out.append(f"<tr><th>{html.escape(str(key))}</th>" + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>" for v in cells)
                   + "</tr>")
    return "".join(out) + "</table>"
