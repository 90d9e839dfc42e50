"""Commands over tables themselves: `shard` writes one as a directory of WebDataset shards, which `fit`, `evaluate`,
`predict`, `embed` and `index` read in place of the table, value by value."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app


@app.command()
def shard(
    table: Path = typer.Argument(..., help="The table (.jsonl, .csv or .parquet); files its cells name are embedded."),
    out: Path = typer.Option(..., "--out", "-o", help="The shard directory to write (replaced whole if it is one)."),
    rows_per_shard: int = typer.Option(10_000, "--rows-per-shard", help="Rows per tar shard."),
    image_size: Optional[int] = typer.Option(
        None, "--image-size", min=1, help="Store image files decoded: RGB pixels, the shorter side resized to this "
        "(use the model's image size). Larger shards; no image decoding while training."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar on the terminal."),
) -> None:
    """Write a table as WebDataset tar shards with an index, for training and inference on tables larger than
    memory: pass the directory wherever a table goes (--train, --test, --data)."""
    from ..data.shards import print_summary, write_shards

    meta = write_shards(table, out, rows_per_shard, show_progress=progress, image_size=image_size)
    print_summary(meta, out)
