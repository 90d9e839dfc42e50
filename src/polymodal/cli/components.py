"""`polymodal components`: every registered modality, encoder, fusion and task, with its config's fields (types,
defaults, descriptions: the pydantic JSON schema) and, for modalities and tasks, their facts."""
from __future__ import annotations

import inspect
import json

import typer

from .app import app

KINDS = ("modality", "encoder", "fusion", "task")


def component_table() -> dict[str, dict[str, dict]]:
    """kind -> name -> {summary, config (JSON schema), facts}: read from the registries, nothing hand-written."""
    from ..api import Model  # noqa: F401  (imports every component package, which registers its components)
    from ..registry import REGISTRIES

    table: dict[str, dict[str, dict]] = {}
    for kind in KINDS:
        entries = {}
        for name, cls in REGISTRIES[kind].items():
            doc = inspect.cleandoc(cls.__dict__.get("__doc__") or inspect.getmodule(cls).__doc__ or "")
            entry = {"summary": doc.split("\n\n")[0].replace("\n", " "), "config": cls.Config.model_json_schema()}
            if hasattr(cls, "facts"):
                entry["facts"] = cls.facts()
            entries[name] = entry
        table[kind] = entries
    return table


@app.command()
def components(
    as_json: bool = typer.Option(False, "--json", help="Print everything (config schemas included) as JSON."),
) -> None:
    """Every registered modality, encoder, fusion and task, with its config's fields."""
    table = component_table()
    if as_json:
        typer.echo(json.dumps(table, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for kind, entries in table.items():
        t = Table(title=f"{kind} ({len(entries)})", show_lines=False)
        for col in ("name", "fields (default)", "summary"):
            t.add_column(col)
        for name, entry in entries.items():
            props = entry["config"].get("properties", {})
            fields = ", ".join(f"{k}={json.dumps(v.get('default'))}" if "default" in v else k
                               for k, v in props.items())
            t.add_row(name, escape(fields), escape(entry["summary"]))
        console.print(t)
