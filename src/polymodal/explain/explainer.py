"""`model.explain(...)` and `polymodal explain`: one example (modality Shapley values, feature attributions in each
modality's form, cross-modal attention maps, a second-order interaction) or a whole table (per-class Shapley
shares, EMAP, the map of fused representations). Writes PNGs, report.html and explanation.json."""
from __future__ import annotations

import html
import itertools
import json
from pathlib import Path

import torch

from .. import render
from ..data import Collator, ReadTable
from ..errors import DataError
from ..evaluation.evaluate import run_outputs
from ..model import Parts
from .emap import emap
from .gradients import integrated_gradients, interaction
from .shapley import shapley, shares


def _row(data: ReadTable, index: int) -> ReadTable:
    if not 0 <= index < len(data):
        raise DataError(f"--index {index} is out of range: the table has {len(data)} usable rows")
    return data.take([index])


def explain_row(parts: Parts, data: ReadTable, index: int, out: Path | None = None) -> dict:
    row = _row(data, index)
    parts.net.eval()
    phi = {k: float(v[0]) for k, v in shapley(parts, row).items()}  # first: a task with nothing to explain says so
    full, _ = run_outputs(parts, row)
    decoded = parts.task.decode(full)[0]
    if not parts.task.attributes():  # decoded text: the inputs' Shapley values alone
        result = {"index": index, "row": row.rows[0], "prediction": decoded, "shapley": phi,
                  "shapley_share": shares({k: torch.tensor([x]) for k, x in phi.items()}),
                  "value": parts.task.explained,
                  "attribution_totals": {}, "attention": {}, "interactions": {}}
        if out is not None:
            _render_row(parts, None, row, {}, {}, result, Path(out))
        return result
    target = parts.task.attribution_target(full)
    batch, _ = Collator(row, parts.modalities, None)(range(1))
    attributions = integrated_gradients(parts, batch, target)
    with torch.no_grad():
        fused = parts.net.fuse(parts.net.encode(batch))
    result: dict = {"index": index, "row": row.rows[0], "prediction": decoded,
                    "shapley": phi, "shapley_share": shares({k: torch.tensor([x]) for k, x in phi.items()}),
                    "attribution_totals": {k: float(v.abs().sum()) for k, v in attributions.items()},
                    "attention": {k: [list(map(float, r)) for r in v[0]] for k, v in fused.attention.items()
                                  if v.dim() == 3},
                    "interactions": {}}
    names = [n for n in batch if batch[n].data.is_floating_point() and bool(batch[n].present[0])]
    for a, b in itertools.permutations(names, 2):
        inter = interaction(parts, batch, a, b, target)
        if inter is not None:
            result["interactions"][f"{a}->{b}"] = float(inter.abs().sum())
    if out is not None:
        _render_row(parts, batch, row, attributions, fused.attention, result, Path(out))
    return result


def _render_row(parts, batch, row, attributions, attention, result, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    figures, sections = [], []
    pred = result["prediction"]
    shown = pred.get('label', pred.get('labels', pred.get('value', pred.get('text'))))
    sections.append(("prediction", f"<p>row {result['index']} (table row {result['row'] + 1}): "
                                   f"<b>{html.escape(str(shown))}</b></p>"))
    figures.append(render.bar_figure(result["shapley"], out / "shapley.png", "modality Shapley values",
                                     parts.task.explained))
    sections.append(("modality importance (exact Shapley values)",
                     render.table_html({k: {"shapley": v, "share": result["shapley_share"][k]}
                                        for k, v in result["shapley"].items()}, ("input", "shapley", "share"))))
    for name, attr in attributions.items():
        mb = batch[name]
        row = int(mb.index[0])
        drawn = parts.modalities[name].draw_attribution(name, mb.data[row], attr,
                                                        None if mb.mask is None else mb.mask[row], out)
        if drawn.figure is not None:
            figures.append(drawn.figure)
        if drawn.section is not None:
            sections.append(drawn.section)
        if drawn.tokens is not None:
            result.setdefault("tokens", {})[name] = drawn.tokens
    for key, maps in attention.items():
        if maps.dim() == 3:
            figures.append(render.heatmap_figure(maps[0], out / f"attention_{key.replace('<-', '_from_')}.png",
                                                 f"cross-modal attention {key}", "source token", "target token"))
    if result["interactions"]:
        sections.append(("second-order interactions", render.table_html(result["interactions"],
                                                                         ("pair", "|d attribution|"))))
    render.html_report("polymodal explanation", sections, figures, out / "report.html")
    (out / "explanation.json").write_text(json.dumps(result, indent=2, default=str))


def explain_global(parts: Parts, data: ReadTable, out: Path | None = None, max_rows: int = 300) -> dict:
    sub = data.take(list(range(min(len(data), max_rows))))
    phi = shapley(parts, sub)
    full, target = run_outputs(parts, sub)
    # a share is the input's mean |Shapley value| over the rows, out of the sum over inputs
    result: dict = {"rows": len(sub), "shapley_share": shares(phi),
                    "shapley_mean": {k: float(v.mean()) for k, v in phi.items()}}
    classes = getattr(parts.task, "classes", None)
    predicted = parts.task.predicted_classes(full)
    if predicted is not None:
        names, pred = predicted
        result["shapley_share_per_class"] = {c: shares(phi, pred == i) for i, c in enumerate(names)
                                             if bool((pred == i).any())}
    points = None
    if parts.task.attributes():  # decoded text (False) is explained by the inputs' Shapley shares alone
        if len(sub.ids) == 2 and sub.targets is not None:
            result["emap"] = emap(parts, sub, max_rows)
        with torch.no_grad():  # the fused representation, projected to 2-D (PCA)
            collate = Collator(sub, parts.modalities, None)
            fused = torch.cat([parts.net.fuse(parts.net.encode(collate(list(range(s, min(len(sub), s + 256))))[0]))
                               .pooled for s in range(0, len(sub), 256)])
        centred = fused - fused.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        points = (centred @ v[:2].T).numpy()
        result["representation_2d"] = points.round(4).tolist()
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        figures = [render.bar_figure(result["shapley_share"], out / "shapley_share.png",
                                     "mean modality Shapley share", "share")]
        if points is not None:
            labels = [parts.task.decode(full[i:i + 1])[0].get("label", "?") for i in range(len(sub))] \
                if classes else ["row"] * len(sub)
            figures.append(render.scatter_figure(points, labels, out / "representation.png",
                                                 "fused representation (PCA), by predicted class"))
        sections = [("mean modality Shapley share", render.table_html(result["shapley_share"], ("input", "share")))]
        if "shapley_share_per_class" in result:
            names = list(result["shapley_share"])
            sections.append(("per predicted class", render.table_html(result["shapley_share_per_class"],
                                                                      ("class", *names))))
        if "emap" in result:
            e = result["emap"]
            sections.append(("EMAP (additive projection)", render.table_html(
                {e["metric"]: {"full model": e["full"], "additive projection": e["additive"], "gap": e["gap"]}},
                ("", "full model", "additive projection", "gap"))))
        render.html_report("polymodal global explanation", sections, figures, out / "report.html")
        (out / "explanation.json").write_text(json.dumps(result, indent=2))
    return result

