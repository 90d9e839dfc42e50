"""Deployment: `polymodal serve` (the HTTP API and web page over model directories and search indexes) and
`polymodal export` (torch.export or ONNX, with parity and latency)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import PolymodalError
from .app import app


@app.command()
def serve(
    models: List[Path] = typer.Argument(None, help="Model directories to serve (named after their folders)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="POLYMODAL_API_KEY",
                                          help="Require 'Authorization: Bearer KEY' on /v1 and /metrics "
                                               "(or set POLYMODAL_API_KEY)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Rows gathered from concurrent requests into one batch "
                                  "(1: no batching)."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a batch waits for more requests."),
    max_queue: int = typer.Option(1024, "--max-queue", help="Rows waiting per model before 429 (busy)."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", help="Largest request body; larger ones get 413."),
    allow_root: List[Path] = typer.Option([], "--allow-root", help="Requests may name files under this folder "
                                          "(repeat for several); without it, file paths in requests are refused."),
    index: List[Path] = typer.Option([], "--index", help="An index directory (`polymodal index`) for /v1/search; "
                                     "repeat for several."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads for the model (default: torch's)."),
) -> None:
    """Serve models over HTTP: a JSON/multipart API with micro-batching, metrics, and a web page at /."""
    import uvicorn

    from ..api import load
    from ..retrieval import VectorIndex, open_embedder
    from ..serve import ServeSettings, create_app, unique_names

    models = models or []
    if not models and not index:
        raise PolymodalError("give at least one model directory to serve (or --index DIR)")
    for d in models:
        if not (d / "config.json").is_file():
            raise PolymodalError(f"{d} is not a model directory (no config.json): train one with `polymodal fit`")
    for root in allow_root:
        if not root.is_dir():
            raise PolymodalError(f"--allow-root {root}: not a folder")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    loaded = {name: load(d) for name, d in zip(unique_names([str(d) for d in models]), models)}
    indexes = {}
    for name, d in zip(unique_names([str(d) for d in index]), index):
        idx = VectorIndex.open(d)
        indexes[name] = (idx, open_embedder(idx.meta["model"]))
    settings = ServeSettings(api_key=api_key or None, max_batch=max_batch, max_wait_ms=max_wait_ms,
                             max_queue=max_queue, max_body_mb=max_body_mb, allow_roots=list(allow_root))
    application = create_app(loaded, settings, indexes)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    typer.echo(f"serving {', '.join(list(loaded) + list(indexes))} at http://{shown}:{port} "
               f"(web page at /, API docs at /docs{', key required' if api_key else ''})", err=True)
    uvicorn.run(application, host=host, port=port, log_level=os.environ.get("POLYMODAL_LOG_LEVEL", "warning"),
                access_log=False)


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model directory (classification, multilabel, regression, contrastive)."),
    fmt: str = typer.Option("torch", "--format", "-f", help="torch (torch.export, model.pt2) or onnx (model.onnx)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default: MODEL/export-FORMAT)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Table whose first rows are the example inputs "
                                       "(parity and latency are measured on them; default: placeholder values)."),
    inputs: Optional[str] = typer.Option(None, "--inputs", help="Comma-separated inputs the exported graph takes "
                                         "(default: all the model encodes)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Export the network for deployment: parity against the eager model and latency are checked and printed."""
    import json

    from ..api import load

    if not (model / "config.json").is_file():
        raise PolymodalError(f"{model} is not a model directory (no config.json)")
    target = out or model / f"export-{fmt}"
    report = load(model).export(target, fmt, data, inputs.split(",") if inputs else None)
    if as_json:
        typer.echo(json.dumps(report))
        return
    diff = report.get("max_abs_diff")
    typer.echo(f"exported {model} as {fmt} to {target / report['file']}: inputs "
               f"{', '.join(i['name'] + str(i['shape']) for i in report['inputs'])}; max |difference| from the eager "
               f"model {'not checked' if diff is None else f'{diff:.2e}'}; latency per batch of {report['rows']} (ms) "
               f"{json.dumps(report['latency_ms'])}", err=True)
