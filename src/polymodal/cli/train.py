"""Training commands: fit (a recipe and/or quick flags), ensemble (trained models joined) and demo."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import PolymodalError
from .app import app


def parse_input(spec: str) -> dict:
    """`name=column[:modality]`, `column:modality` or `column`."""
    name, _, rest = spec.partition("=")
    if not rest:
        rest, name = name, ""
    column, _, modality = rest.partition(":")
    if not column:
        raise PolymodalError(f"--input '{spec}': expected NAME=COLUMN[:MODALITY]")
    return {"name": name or column, "column": column, "modality": modality or None}


def parse_threshold(value: str | None) -> str | float | None:
    """--threshold: a word (validation, argmax) or a probability."""
    if value is None or value in ("validation", "argmax"):
        return value
    try:
        return float(value)
    except ValueError:
        raise PolymodalError(f"--threshold '{value}': expected validation, argmax or a probability such as "
                             "0.3") from None


@app.command()
def fit(
    recipe: Optional[Path] = typer.Argument(None, help="Recipe YAML (optional with the quick flags)."),
    out: Path = typer.Option(Path("runs/model"), "--out", "-o", help="Model directory to write."),
    set_: list[str] = typer.Option([], "--set", help="Override any recipe field: training.epochs=3."),
    train: Optional[str] = typer.Option(None, help="Training table (jsonl/csv/parquet)."),
    validation: Optional[str] = typer.Option(None, help="Validation table."),
    validation_group: Optional[str] = typer.Option(None, "--validation-group", help="Without a validation table: "
                                                   "hold out whole groups of this column (event, subject)."),
    test: Optional[str] = typer.Option(None, help="Test table, evaluated after training."),
    input_: list[str] = typer.Option([], "--input", "-i", help="NAME=COLUMN[:MODALITY], repeatable."),
    target: Optional[str] = typer.Option(None, help="Target column."),
    task: Optional[str] = typer.Option(None, help="Task name (`polymodal components` lists them; default: "
                                       "inferred from the target's values)."),
    fusion: Optional[str] = typer.Option(None, help="Fusion method (`polymodal components` lists them)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="auto (the default), fast, balanced or best: the "
                                         "encoders of inputs the recipe gives none (see the README's measurements)."),
    threshold: Optional[str] = typer.Option(None, "--threshold", help="Two classes: validation (the decision "
                                            "threshold that scores best on the validation rows), argmax, or a "
                                            "probability (positive above it)."),
    positive_class: Optional[str] = typer.Option(None, "--positive-class", help="The class --threshold is about "
                                                 "(default: the rarer one)."),
    refit: bool = typer.Option(False, "--refit", help="After choosing epochs (and soup, threshold) on validation, "
                               "train again on training + validation rows for those epochs and keep that model."),
    ensemble: Optional[int] = typer.Option(None, "--ensemble", help="Train N models (seeds seed .. seed + N - 1) "
                                           "and keep them as one model of their mean probability."),
    fallback: bool = typer.Option(False, "--fallback", help="Also train a model of each input alone; a row that lost "
                                  "inputs is read by the models of the inputs it has (rows with every input: the "
                                  "full model, unchanged); costs those fits."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs."),
    batch_size: Optional[int] = typer.Option(None, help="Rows per batch."),
    lr: Optional[float] = typer.Option(None, help="Learning rate."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    devices: Optional[str] = typer.Option(None, help="Lightning devices."),
    accelerator: Optional[str] = typer.Option(None, help="Lightning accelerator."),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy (ddp, fsdp, deepspeed, ...)."),
    num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="Machines taking part (under torchrun or "
                                            "SLURM)."),
    precision: Optional[str] = typer.Option(None, help="Lightning precision (32-true, bf16-mixed, ...)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --out."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Stop training after SECONDS (the best "
                                               "weights so far are kept)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    allow_root: list[str] = typer.Option([], "--allow-root", help="File cells may name files only under this "
                                         "folder (repeat for several; symlinks and `..` resolved first)."),
) -> None:
    """Train a model from a recipe and/or the quick flags; writes the model directory to --out."""
    from ..api import fit as api_fit

    base: dict = {"data.train": train, "data.validation": validation, "data.test": test,
                  "data.validation_group": validation_group,
                  "target.task": task, "model.fusion.method": fusion, "model.preset": preset,
                  "training.epochs": epochs, "training.ensemble": ensemble,
                  "training.batch_size": batch_size, "training.lr": lr, "training.seed": seed,
                  "training.accelerator": accelerator, "training.strategy": strategy,
                  "training.num_nodes": num_nodes,
                  "training.precision": precision, "training.time_limit": time_limit,
                  "target.options.threshold": parse_threshold(threshold),
                  "target.options.positive_class": positive_class}
    if devices is not None:
        base["training.devices"] = int(devices) if devices.isdigit() else devices
    if target:
        base["target.column"] = target
    if input_:
        base["inputs"] = [parse_input(s) for s in input_]
    if quiet:
        base["training.progress"] = False
    if refit:
        base["training.refit"] = True
    if fallback:
        base["training.fallback"] = True
    if allow_root:
        base["data.allow_root"] = [str(Path(r).resolve()) for r in allow_root]
    from ..config import build_recipe

    rec = build_recipe(recipe, set_, {k: v for k, v in base.items() if v is not None})
    model = api_fit(rec, out=out, resume=resume)
    if model.metrics:  # under DDP the other processes return without a report: the first prints it
        _print_summary(model.metrics, out)


def parse_member(spec: str) -> tuple[str, list[str] | None]:
    """DIR, or DIR:INPUT[+INPUT...] for a member held to some of its inputs (a directory named with a colon is
    taken whole when it exists)."""
    if ":" in spec and not Path(spec).exists():
        path, _, reads = spec.rpartition(":")
        names = [r for r in reads.split("+") if r]
        if not path or not names:
            raise typer.BadParameter(f"'{spec}': expected DIR or DIR:INPUT[+INPUT...]")
        return path, names
    return spec, None


@app.command()
def ensemble(
    members: list[str] = typer.Argument(..., help="Model directories to join (two or more); DIR:lips reads that "
                                        "model's lips alone, DIR:lips+audio those two."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write (members under OUT/members/K)."),
    validation: Optional[str] = typer.Option(None, "--validation", help="Labelled table none of the members "
                                             "trained on: the ensemble's CTC search or decision threshold is "
                                             "chosen there (where its task chooses one), and it is scored."),
    test: Optional[str] = typer.Option(None, "--test", help="Labelled table scored once, after every choice."),
    batch_size: int = typer.Option(64, "--batch-size", help="Rows per batch when scoring."),
    allow_root: list[str] = typer.Option([], "--allow-root", help="File cells may name files only under this "
                                         "folder (repeat for several; symlinks and `..` resolved first)."),
    rows: str = typer.Option("all", "--rows", help="Which members read a row: all (every member that sees one of "
                             "its inputs in it); closest (the members whose inputs best match the row's: an audio + "
                             "image model for rows with both, an image model for rows without their audio); widest "
                             "(every member that sees it but those a wider member with all its inputs in the row "
                             "covers: rows with both, the audio + image model; rows without audio, the image model "
                             "and the audio + image model reading the image); first (the first member listed that "
                             "sees the row, alone)."),
) -> None:
    """Join trained models into one ensemble (late fusion of whole models): members may read different inputs
    (audio alone, lips alone, both); each row is combined over the members that see one of their inputs in it, or
    (--rows closest, widest, first) over the members that match it best."""
    from ..api import ensemble as api_ensemble
    from ..api import load

    joined = []
    for spec in members:
        path, reads = parse_member(spec)
        if not (Path(path) / "config.json").is_file():
            raise PolymodalError(f"{path}: not a polymodal model directory (no config.json)")
        joined.append((load(path), reads) if reads else load(path))
    model = api_ensemble(joined, validation=validation, test=test, out=out, batch_size=batch_size,
                         allow_roots=[str(Path(r).resolve()) for r in allow_root], rows=rows)
    typer.echo(f"ensemble of {len(members)} models saved to {out}", err=True)
    chosen = model.metrics["ensemble"].get("decoding", {}).get("chosen")
    if chosen:
        typer.echo(f"search chosen on validation: {chosen}", err=True)
    for line in _score_lines(model.metrics):
        typer.echo(line, err=True)


def _print_summary(metrics: dict, out: Path) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    t = metrics.get("training", {})
    console.print(f"trained {t.get('epochs')} epochs in {t.get('seconds')} s; model saved to {out}")
    for line in _score_lines(metrics):
        console.print(line)


def _score_lines(metrics: dict) -> list[str]:
    """A line of numeric scores per split the report has (validation, test)."""
    lines = []
    for split in ("validation", "test"):
        if split in metrics:
            shown = {k: v for k, v in metrics[split].items() if isinstance(v, (int, float))}
            lines.append(f"{split}: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    return lines


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Model directory to write."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe field."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train and evaluate an image+question model on easy-VQA, offline."""
    from ..demo import run_demo

    run_demo(out, set_, progress=not quiet)
