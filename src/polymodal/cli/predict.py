"""Using a model: predict and info."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .app import app, check_has_inputs, write_text_atomic


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    data: str = typer.Argument(..., help="Table of inputs (rows may lack some inputs)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write JSON lines here instead of stdout."),
    allow_root: list[Path] = typer.Option([], "--allow-root", help="File cells may name files only under this "
                                          "folder (repeat for several; symlinks and `..` resolved first)."),
) -> None:
    """Predict for every row of a table; one JSON line per row."""
    from ..api import load

    model = load(model_dir)
    model.allow_roots = list(allow_root)
    check_has_inputs(model, data)
    preds = model.predict(data)
    lines = "".join(json.dumps(p) + "\n" for p in preds)
    if out is None:
        sys.stdout.write(lines)
    else:
        write_text_atomic(out, lines)
        typer.echo(f"{len(preds)} predictions written to {out}", err=True)


@app.command()
def info(
    model_dir: Path = typer.Argument(..., help="Model directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What a model takes, its classes and its metrics."""
    from ..storage import read_config, read_metrics
    from ..tasks import TASKS

    config = read_config(model_dir)
    recipe = config["recipe"]
    summary = {
        "inputs": {i["name"]: {"column": i["column"] or i["name"], "modality": i["modality"],
                               "encoder": i["encoder"].get("type", "default")} for i in recipe["inputs"]},
        "target": recipe["target"]["column"], "task": recipe["target"]["task"],
        "classes": config["task"]["state"].get("classes"), "fusion": recipe["model"]["fusion"],
        "decision": ({"positive_class": config["task"]["state"]["positive"],
                      "threshold": config["task"]["state"]["threshold"]}
                     if config["task"]["state"].get("threshold") is not None else None),
        "architecture": TASKS.get(recipe["target"]["task"]).architecture(recipe),
        "search": config["task"]["state"].get("search"),  # a text model's CTC search chosen on validation
        "ensemble": recipe["training"].get("ensemble", 1), "refit": bool(recipe["training"].get("refit")),
        "joined": [{"source": m.get("source"), "reads": m.get("reads")} for m in
                   config.get("ensemble", {}).get("members", [])] or None,  # a `polymodal ensemble` of models
        "rows": config.get("ensemble", {}).get("rows"),  # which of them read a row (all, closest, widest, first)
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
    for part, spec in summary["architecture"].items():
        console.print(f"  {part}: {spec}")
    if summary["classes"]:
        console.print(f"  classes ({len(summary['classes'])}): {', '.join(summary['classes'])}")
    if summary["decision"]:
        d = summary["decision"]
        console.print(f"  decision: '{d['positive_class']}' when its probability is above {d['threshold']:.4g}")
    if summary["search"]:
        console.print("  search (chosen on validation): " + ", ".join(f"{k} {v}" for k, v in summary["search"].items()))
    for k, m in enumerate(summary["joined"] or []):
        console.print(f"  member {k}: {m['source']}" + (f", reading {', '.join(m['reads'])}" if m["reads"] else ""))
    if summary["joined"] and summary["rows"]:
        console.print(f"  rows read by: {summary['rows']} (" + {
            "closest": "the members whose inputs best match the row's)",
            "widest": "the members that see a row, but those a wider member with all its inputs there covers)",
            "first": "the first member that sees a row)"}.get(
            summary["rows"], "the members that see a row)"))
    if summary["ensemble"] > 1 or summary["refit"]:
        console.print(f"  trained: {summary['ensemble']} model(s) (training.ensemble)"
                      + (", each trained again on training + validation rows (training.refit)" if summary["refit"]
                         else ""))
    for split in ("validation", "test"):
        m = summary["metrics"].get(split)
        if m:
            console.print(f"  {split}: " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()
                                                     if isinstance(v, (int, float))))
