"""The Typer app, the one error handler, and helpers the commands share. Commands live in modules by topic and
register on `app` when the package is imported. Errors print one message, never a traceback."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import PolymodalError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="polymodal: train, evaluate and use multimodal models.")


def main() -> None:
    try:
        app()
    except PolymodalError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def check_has_inputs(model, data: str) -> None:
    """A table holding none of the model's input columns is a mistake (the wrong table), not rows to predict from
    nothing: say which columns were expected and which are there."""
    from ..data import as_table

    table = as_table(data)
    cols = table.columns()
    wanted = {s.column for s in model.parts.inputs} | {s.name for s in model.parts.inputs}
    if table.rows and not cols & wanted:
        raise PolymodalError(f"{table.source}: none of the model's input columns "
                             f"({', '.join(s.column for s in model.parts.inputs)}) is in the table "
                             f"(columns: {', '.join(sorted(cols)) or 'none'})")
