"""The `polymodal` command line: fit, evaluate, predict, info, explain, demo (and embed, index, search, zero-shot
from cli_retrieval). Errors print one message, never a traceback."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import PolymodalError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="polymodal: train, evaluate and use multimodal models.")


def parse_input(spec: str) -> dict:
    """`name=column[:modality]`, `column:modality` or `column`."""
    name, _, rest = spec.partition("=")
    if not rest:
        rest, name = name, ""
    column, _, modality = rest.partition(":")
    if not column:
        raise PolymodalError(f"--input '{spec}': expected NAME=COLUMN[:MODALITY]")
    return {"name": name or column, "column": column, "modality": modality or None}


@app.command()
def fit(
    recipe: Optional[Path] = typer.Argument(None, help="Recipe YAML (optional with the quick flags)."),
    out: Path = typer.Option(Path("runs/model"), "--out", "-o", help="Model directory to write."),
    set_: list[str] = typer.Option([], "--set", help="Override any recipe field: training.epochs=3."),
    train: Optional[str] = typer.Option(None, help="Training table (jsonl/csv/parquet)."),
    validation: Optional[str] = typer.Option(None, help="Validation table."),
    test: Optional[str] = typer.Option(None, help="Test table, evaluated after training."),
    input_: list[str] = typer.Option([], "--input", "-i", help="NAME=COLUMN[:MODALITY], repeatable."),
    target: Optional[str] = typer.Option(None, help="Target column."),
    task: Optional[str] = typer.Option(None, help="classification, multilabel or regression (default: inferred)."),
    fusion: Optional[str] = typer.Option(None, help="Fusion method."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs."),
    batch_size: Optional[int] = typer.Option(None, help="Rows per batch."),
    lr: Optional[float] = typer.Option(None, help="Learning rate."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    devices: Optional[str] = typer.Option(None, help="Lightning devices."),
    accelerator: Optional[str] = typer.Option(None, help="Lightning accelerator."),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy (ddp, fsdp, ...)."),
    precision: Optional[str] = typer.Option(None, help="Lightning precision (32-true, bf16-mixed, ...)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a model from a recipe and/or the quick flags; writes the model directory to --out."""
    from .api import fit as api_fit

    base: dict = {"data.train": train, "data.validation": validation, "data.test": test,
                  "target.task": task, "model.fusion.method": fusion, "training.epochs": epochs,
                  "training.batch_size": batch_size, "training.lr": lr, "training.seed": seed,
                  "training.accelerator": accelerator, "training.strategy": strategy,
                  "training.precision": precision}
    if devices is not None:
        base["training.devices"] = int(devices) if devices.isdigit() else devices
    if target:
        base["target.column"] = target
    if input_:
        base["inputs"] = [parse_input(s) for s in input_]
    if quiet:
        base["training.progress"] = False
    from .config import build_recipe

    rec = build_recipe(recipe, set_, {k: v for k, v in base.items() if v is not None})
    model = api_fit(rec, out=out, resume=resume)
    _print_summary(model.metrics, out)


def _print_summary(metrics: dict, out: Path) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    t = metrics.get("training", {})
    console.print(f"trained {t.get('epochs')} epochs in {t.get('seconds')} s; model saved to {out}")
    for split in ("validation", "test"):
        if split in metrics:
            shown = {k: v for k, v in metrics[split].items() if isinstance(v, (int, float))}
            console.print(f"{split}: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))


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
) -> None:
    """Metrics of a trained model on a labelled table, with modality reliance and optional robustness curves
    (retrieval recall for a contrastive model; generated-image scores for a text-to-image model)."""
    from rich.console import Console

    from .api import load

    err = Console(stderr=True)
    done = []

    def progress(name, kind) -> None:
        done.append(kind)
        err.print(f"  robustness: {name} / {kind}" if robustness else f"  generated {name} / {kind}", highlight=False)

    model = load(model_dir)
    if model.parts.task.generates:
        metrics = model.evaluate(data, out=out, classifier=classifier, contrastive=contrastive, steps=steps,
                                 guidance=guidance, limit=limit, progress=progress, sampler=sampler)
    else:
        metrics = model.evaluate(data, robustness=robustness, baseline=baseline, out=out,
                                 progress=progress if robustness else None)
    for warning in metrics.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    _print_metrics(metrics, f"{model_dir} on {data}")


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
        if k in ("warnings", "robustness"):
            continue
        if isinstance(v, dict):
            for kk, vv in _flat(v):
                table.add_row(escape(f"{k}[{kk}]"), f"{vv:.4f}" if isinstance(vv, float) else str(vv))
        else:
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
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
def predict(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    data: str = typer.Argument(..., help="Table of inputs (rows may lack some inputs)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write JSON lines here instead of stdout."),
) -> None:
    """Predict for every row of a table; one JSON line per row."""
    from .api import load

    preds = load(model_dir).predict(data)
    lines = "".join(json.dumps(p) + "\n" for p in preds)
    if out is None:
        sys.stdout.write(lines)
    else:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(lines)
        tmp.replace(out)
        typer.echo(f"{len(preds)} predictions written to {out}", err=True)


@app.command()
def info(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What a model takes, its classes and its metrics."""
    from .storage import read_config, read_metrics

    config = read_config(model_dir)
    recipe = config["recipe"]
    summary = {
        "inputs": {i["name"]: {"column": i["column"] or i["name"], "modality": i["modality"],
                               "encoder": i["encoder"].get("type", "default")} for i in recipe["inputs"]},
        "target": recipe["target"]["column"], "task": recipe["target"]["task"],
        "classes": config["task"]["state"].get("classes"), "fusion": recipe["model"]["fusion"],
        "metrics": read_metrics(model_dir)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console

    console = Console()
    what = f" of '{summary['target']}'" if summary["target"] else ""
    console.print(f"[bold]{model_dir}[/bold]: {summary['task']}{what}")
    for name, i in summary["inputs"].items():
        console.print(f"  input {name}: column '{i['column']}', {i['modality']}, encoder {i['encoder']}")
    if summary["task"] not in ("contrastive", "text_to_image"):
        console.print(f"  fusion: {summary['fusion']}")
    if summary["classes"]:
        console.print(f"  classes ({len(summary['classes'])}): {', '.join(summary['classes'])}")
    for split in ("validation", "test"):
        m = summary["metrics"].get(split)
        if m:
            console.print(f"  {split}: " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()
                                                     if isinstance(v, (int, float))))


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
    from .api import load

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


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Model directory to write."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe field."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train and evaluate an image+question model on easy-VQA, offline."""
    from .demo import run_demo

    run_demo(out, set_, progress=not quiet)


def main() -> None:
    try:
        app()
    except PolymodalError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


from . import cli_retrieval  # noqa: E402,F401  (registers embed, index, search, zero-shot)
