"""Evaluation commands: evaluate (the options follow the model's task) and explain."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import app, check_has_inputs


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    data: str = typer.Option(..., "--data", "-d", help="Labelled table to evaluate on."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of metrics on stdout."),
    robustness: bool = typer.Option(False, "--robustness", help="Add inputs-removed scores and corruption curves."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write robustness.json and curve PNGs here."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A late-fusion model's robustness.json (or its "
                                            "--out folder) for effective robustness."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Text-to-image: a classifier trained on real "
                                              "images; scores images generated for the table's captions."),
    contrastive: Optional[str] = typer.Option(None, "--contrastive", help="Text-to-image: a contrastive model (or "
                                              "CLIP) for a CLIP-style score of the generated images."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Text-to-image: sampling steps."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Text-to-image: guidance scale."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Text-to-image: ddim, ddpm or dpm_solver."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Text-to-image: generate for the first N rows only."),
    snr: Optional[str] = typer.Option(None, "--snr", help="Text: WER with white noise on the audio input at these "
                                      "signal-to-noise ratios (dB, comma-separated: 10,5,0,-5), for the audio alone, "
                                      "the other inputs alone and all together (a PNG into --out)."),
    noise_input: Optional[str] = typer.Option(None, "--noise-input", help="Text: the audio input that gets the noise "
                                              "(default: the only audio input)."),
    beam: Optional[int] = typer.Option(None, "--beam", help="Text: beam width (default: the recipe's; 1: greedy)."),
    by: Optional[str] = typer.Option(None, "--by", help="Also the metrics of each group of rows sharing a value in "
                                     "this column of the table (an event, a speaker, a source)."),
    allow_root: list[Path] = typer.Option([], "--allow-root", help="File cells may name files only under this "
                                          "folder (repeat for several; symlinks and `..` resolved first)."),
) -> None:
    """The model's evaluation report on a table. The options follow the task: metrics, modality reliance and
    optional robustness curves for a predictive model; retrieval recall for a contrastive model; the denoising loss
    and generated-image scores for a text-to-image model. An option the task does not take is an error."""
    from rich.console import Console

    from ..api import load

    err = Console(stderr=True)
    label = "robustness: " if robustness else "generated "

    def progress(name, kind) -> None:
        err.print(f"  {label}{name} / {kind}", highlight=False)

    model = load(model_dir)
    model.allow_roots = list(allow_root)
    check_has_inputs(model, data)
    given = {"robustness": robustness or None, "baseline": baseline, "out": out, "classifier": classifier,
             "contrastive": contrastive, "steps": steps, "guidance": guidance, "sampler": sampler, "limit": limit,
             "snr": None if snr is None else _numbers(snr, "--snr"), "noise_input": noise_input, "beam": beam,
             "by": by}
    options = {k: v for k, v in given.items() if v is not None}  # the model's task says which it takes
    if "progress" in model.evaluation_options():
        options["progress"] = progress
    metrics = model.evaluate(data, **options)
    for warning in metrics.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    _print_metrics(metrics, f"{model_dir} on {data}")


def _numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{flag} takes numbers separated by commas, got '{text}'") from None


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _print_metrics(metrics: dict, title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if k in ("warnings", "robustness", "examples", "confusion", "word_errors", "by"):
            continue
        if isinstance(v, dict):
            for kk, vv in _flat(v):
                table.add_row(escape(f"{k}[{kk}]"), f"{vv:.4f}" if isinstance(vv, float) else str(vv))
        else:
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    confusion = metrics.get("confusion")
    if confusion and len(next(iter(confusion.values()))) <= 30:  # wider ones: --json
        t = Table(title="confusion (rows: true class; columns: predicted)")
        predicted = list(next(iter(confusion.values())))
        t.add_column("true")
        for c in predicted:
            t.add_column(escape(str(c)), justify="right")
        for c, row in confusion.items():
            t.add_row(escape(str(c)), *(str(row[p]) for p in predicted))
        console.print(t)
    groups = metrics.get("by")
    if groups:
        first = next(iter(groups.values()))
        shown = [k for k, v in first.items() if k != "rows" and isinstance(v, (int, float))][:4]
        t = Table(title="by group")
        for col in ["group", "rows", *shown]:
            t.add_column(escape(col), justify="left" if col == "group" else "right")
        for value, scores in groups.items():
            t.add_row(escape(value), str(scores["rows"]), *(f"{scores[k]:.4f}" if isinstance(scores.get(k), float)
                                                              else str(scores.get(k, "")) for k in shown))
        console.print(t)
    errors = metrics.get("word_errors")
    if errors and any(errors.values()):
        t = Table(title="commonest word errors")
        for col in ("substituted", "n", "deleted", "n ", "inserted", " n"):
            t.add_column(col, justify="right" if col.strip() == "n" else "left")
        rows = [list(errors[k].items()) for k in ("substituted", "deleted", "inserted")]
        for i in range(min(10, max(len(r) for r in rows))):
            cells = []
            for r in rows:
                cells += [escape(r[i][0]), str(r[i][1])] if i < len(r) else ["", ""]
            t.add_row(*cells)
        console.print(t)
    rob = metrics.get("robustness")
    if rob:
        t = Table(title=f"robustness ({rob['metric']}; clean {rob['clean']:.4f})")
        t.add_column("inputs kept")
        t.add_column(rob["metric"], justify="right")
        for subset, value in rob["subsets"].items():
            t.add_row(subset, f"{value:.4f}")
        console.print(t)
        t = Table(title="relative robustness (area under the curve over severity 0..1)")
        for col in ("input", "corruption", "relative", "effective", "at severity 1"):
            t.add_column(col)
        for name, kinds in rob["relative_robustness"].items():
            for kind, rr in kinds.items():
                eff = rob["effective_robustness"].get(name, {}).get(kind)
                last = rob["curves"][name].get(kind, [None])[-1]
                t.add_row(name, kind, f"{rr:.4f}", "" if eff is None else f"{eff:+.4f}",
                          "" if last is None else f"{last:.4f}")
        console.print(t)
        for p in rob.get("plots", []):
            console.print(f"curve: {p}")


@app.command()
def explain(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    data: str = typer.Option(..., "--data", "-d", help="Table holding the example(s)."),
    index: int = typer.Option(0, "--index", "-n", help="Row to explain (0-based, among the table's usable rows)."),
    global_: bool = typer.Option(False, "--global", help="Explain the whole table: Shapley shares per class, EMAP, "
                                 "representation map (needs the target column)."),
    out: Path = typer.Option(Path("explanation"), "--out", "-o", help="Folder for PNGs, report.html and JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON on stdout."),
) -> None:
    """Explain a prediction (or the model, with --global): which input, which pixels/words/frames, which
    interactions."""
    from ..api import load

    result = load(model_dir).explain(data, index=index, out=out, global_=global_)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "representation_2d"}, default=str))
        return
    from rich.console import Console

    console = Console()
    shares = result.get("shapley_share", {})
    if not global_:
        pred = result["prediction"]
        console.print(f"prediction: {pred.get('label', pred.get('labels', pred.get('value')))}")
    for name, share in shares.items():
        extra = f" (shapley {result['shapley'][name]:+.4f})" if "shapley" in result else ""
        console.print(f"  {name}: share {share:.3f}{extra}")
    if "emap" in result:
        e = result["emap"]
        console.print(f"EMAP: full {e['metric']} {e['full']:.4f}, additive projection {e['additive']:.4f}, "
                      f"gap {e['gap']:+.4f}")
    console.print(f"report: {out / 'report.html'}")
