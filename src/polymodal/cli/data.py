"""Commands over tables themselves: `shard` writes one as a directory of WebDataset shards, which `fit`, `evaluate`,
`predict`, `embed` and `index` read in place of the table, value by value."""
from __future__ import annotations

from pathlib import Path

import typer

from .app import app


@app.command()
def shard(
    table: Path = typer.Argument(..., help="The table (.jsonl, .csv or .parquet); files its cells name are embedded."),
    out: Path = typer.Option(..., "--out", "-o", help="The shard directory to write (replaced whole if it is one)."),
    rows_per_shard: int = typer.Option(10_000, "--rows-per-shard", help="Rows per tar shard."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar on the terminal."),
) -> None:
    """Write a table as WebDataset tar shards with an index, for training and inference on tables larger than
    memory: pass the directory wherever a table goes (--train, --test, --data)."""
    from ..data.shards import print_summary, write_shards

    meta = write_shards(table, out, rows_per_shard, show_progress=progress)
    print_summary(meta, out)
