"""Commands of the joint embedding space: embed, index, search and zero-shot, over a polymodal contrastive model
directory or a Hugging Face dual encoder such as CLIP (hub id or local directory)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import PolymodalError
from .app import app, write_text_atomic


def _resolve_input(embedder, table, given: str) -> tuple[str, str]:
    """`--input` names an input of the model, or a table column (its values' modality picks the input)."""
    from ..modalities import infer_modality

    if given in embedder.specs:
        spec = embedder.specs[given]
        column = spec.column if spec.column in table.columns() or given not in table.columns() else given
        return given, column
    for name, spec in embedder.specs.items():
        if spec.column == given:
            return name, given
    if given not in table.columns():
        raise PolymodalError(f"'{given}' is neither an input of {embedder.source} ({', '.join(embedder.specs)}) nor a "
                             f"column of {table.source} ({', '.join(sorted(table.columns()))})")
    kind = infer_modality([r[given] for r in table.rows[:200] if r.get(given) not in (None, "")])
    return embedder.input_for(None, kind), given


def _items(table, rows: list[int], column: str):
    """What each vector stands for (its row, id, value and table), one row at a time."""
    source = str(Path(table.source).resolve()) if Path(table.source).exists() else table.source
    for r in rows:
        src = table.rows[r]
        value = src.get(column)
        yield {"row": r, "id": src.get("id"), "value": value if isinstance(value, str) else None, "table": source}


def _model_ref(model: str) -> str:
    """An index remembers its model: a local directory as an absolute path, a hub id as it is."""
    p = Path(model)
    return str(p.resolve()) if p.exists() else model


@app.command()
def embed(
    model: str = typer.Argument(..., help="Contrastive model directory, or a Hugging Face dual encoder (CLIP)."),
    data: str = typer.Option(..., "--data", "-d", help="Table whose column to embed."),
    input_: str = typer.Option(..., "--input", "-i", help="The model input (or the table column) to embed."),
    out: Path = typer.Option(Path("embeddings.npy"), "--out", "-o", help="Where to write the [rows, dim] array; "
                             "the rows and ids go beside it as .json."),
) -> None:
    """Embed a column into the joint space: a float32 .npy of unit vectors, one per row with a value."""
    from ..data import as_table
    from ..retrieval import open_embedder

    embedder = open_embedder(model)
    table = as_table(data)
    name, column = _resolve_input(embedder, table, input_)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npy")
    try:  # written a chunk at a time into the file: bounded memory for tables read on demand
        emb, rows = embedder.embed_table(table, name, column, into=tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    side = out.with_suffix(".json")
    side.write_text(json.dumps({"model": model, "input": name, "column": column, "table": table.source,
                                "rows": rows, "ids": [table.rows[r].get("id") for r in rows]}))
    typer.echo(f"{emb.shape[0]} embeddings of width {emb.shape[1]} written to {out} (rows in {side})", err=True)


@app.command()
def index(
    model: str = typer.Argument(..., help="Contrastive model directory, or a Hugging Face dual encoder (CLIP)."),
    data: str = typer.Option(..., "--data", "-d", help="Table whose column to index."),
    input_: str = typer.Option(..., "--input", "-i", help="The model input (or the table column) to index."),
    out: Path = typer.Option(..., "--out", "-o", help="Index directory to write."),
    kind: str = typer.Option("auto", "--kind", help="exact, ivf, ivfpq, or auto (exact below 50,000 rows, else "
                             "ivf)."),
    nlist: Optional[int] = typer.Option(None, help="IVF lists (default about 4*sqrt(rows))."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists searched per query (default 16)."),
    pq_m: Optional[int] = typer.Option(None, "--pq-m", help="IVF-PQ sub-quantizers (must divide the width)."),
    add: bool = typer.Option(False, "--add", help="Add these rows to the existing index at --out."),
    rerank: int = typer.Option(0, "--rerank", min=0, help="Keep the vectors (float16, on disk) and score the "
                               "k * N nearest exactly at search time: an IVF-PQ index's recall back, for 2 bytes a "
                               "dimension of disk (0: off)."),
) -> None:
    """Build a faiss index over a column (ids and source rows stored beside it), or add rows to one."""
    from ..data import as_table
    from ..retrieval import VectorIndex, open_embedder
    from ..retrieval.index import write_index

    if kind not in ("auto", "exact", "ivf", "ivfpq"):
        raise PolymodalError(f"--kind '{kind}': choose auto, exact, ivf or ivfpq")
    existing = None
    if add:
        existing = VectorIndex.open(out)
        model = existing.meta["model"] if model in ("", "-") else model
    elif (out / "meta.json").exists():
        raise PolymodalError(f"{out} already holds an index: pass --add to add rows to it, or choose another --out")
    embedder = open_embedder(model)
    table = as_table(data)
    name, column = _resolve_input(embedder, table, input_)
    if existing is not None:
        emb, rows = embedder.embed_table(table, name, column)
        items = list(_items(table, rows, column))
        if existing.meta["input"] != name:
            raise PolymodalError(f"{out} indexes input '{existing.meta['input']}', not '{name}'")
        held = {(it.get("table"), it.get("row")) for it in existing.items}
        new = [i for i, it in enumerate(items) if (it["table"], it["row"]) not in held]  # a rerun adds nothing twice
        if new:
            existing.add(emb[new], [items[i] for i in new])
            existing.save(out)
        again = f" ({len(items) - len(new)} already in the index, skipped)" if len(new) < len(items) else ""
        typer.echo(f"added {len(new)} rows to {out}{again}: {len(existing)} vectors", err=True)
        return
    meta = {"model": _model_ref(model), "input": name, "modality": embedder.inputs[name]}
    out.parent.mkdir(parents=True, exist_ok=True)
    vectors = out.with_name(out.name + ".vectors.tmp.npy")  # the embeddings, on disk while the index is built
    try:
        emb, rows = embedder.embed_table(table, name, column, into=vectors)
        meta = write_index(out, emb, _items(table, rows, column), meta, kind=kind, nlist=nlist,  # type: ignore
                           nprobe=nprobe, pq_m=pq_m, progress=True, rerank=rerank)
        del emb
    finally:
        vectors.unlink(missing_ok=True)
    typer.echo(f"indexed {len(rows)} rows of {table.source} ({meta['kind']}, width {meta['dim']}) into {out}",
               err=True)


@app.command()
def search(
    index_dir: Path = typer.Argument(..., help="Index directory written by `polymodal index`."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="A text query."),
    query_file: Optional[str] = typer.Option(None, "--query-file", help="A file to search with (.png, .wav, ...)."),
    query_input: Optional[str] = typer.Option(None, "--query-input", help="The model input that embeds the query "
                                              "(default: the model's only input of the query's modality)."),
    k: int = typer.Option(5, "-k", help="Results to return."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists searched (default: the index's)."),
    rerank: Optional[int] = typer.Option(None, "--rerank", min=0, help="Candidates scored exactly, times k, for an "
                                         "index built with --rerank (default: its setting; 0: off)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search an index with a text or a file: the k nearest items, best first."""
    from ..retrieval import VectorIndex, modality_of_file, open_embedder

    if (query is None) == (query_file is None):
        raise PolymodalError("give one of --query TEXT or --query-file PATH")
    idx = VectorIndex.open(index_dir)
    embedder = open_embedder(idx.meta["model"])
    kind = "text" if query is not None else modality_of_file(query_file)
    name = embedder.input_for(query_input, None if query_input else kind)
    if query_file is not None and not Path(query_file).is_file():
        raise PolymodalError(f"query file not found: {query_file}")
    value = query if query is not None else str(Path(query_file).resolve())
    vector = embedder.embed_values(name, [value])
    scores, positions = idx.search(vector, k, nprobe, rerank)
    results = [{"rank": i + 1, "score": round(float(s), 6), **idx.items[p]}
               for i, (s, p) in enumerate(zip(scores[0], positions[0])) if p >= 0]
    if as_json:
        typer.echo(json.dumps({"query": value, "query_input": name, "results": results}))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{value!r} in {index_dir} ({len(idx)} items)")
    for col in ("rank", "score", "row", "id", "value"):
        t.add_column(col)
    for r in results:
        t.add_row(str(r["rank"]), f"{r['score']:.4f}", str(r["row"]), str(r.get("id") or ""), str(r.get("value") or ""))
    Console().print(t)


@app.command("zero-shot")
def zero_shot_cmd(
    model: str = typer.Argument(..., help="Contrastive model directory, or a Hugging Face dual encoder (CLIP)."),
    data: str = typer.Option(..., "--data", "-d", help="Table of values to classify."),
    labels: str = typer.Option(..., "--labels", help="Class names, comma-separated: circle,triangle,rectangle."),
    template: list[str] = typer.Option([], "--template", "-t", help="Prompt with {} for the label; repeat to "
                                       "average several (default: the label alone)."),
    input_: Optional[str] = typer.Option(None, "--input", "-i", help="The input to classify (default: the model's "
                                         "non-text input)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Column with true labels: prints "
                                               "accuracy."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write predictions as JSON lines here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (predictions included)."),
) -> None:
    """Classify with text prompts instead of training a classifier."""
    from ..data import as_table
    from ..retrieval import open_embedder, zero_shot

    embedder = open_embedder(model)
    table = as_table(data)
    name = None
    if input_ is not None:
        name = _resolve_input(embedder, table, input_)[0]
    result = zero_shot(embedder, table, labels.split(","), template or None, name, None, label_column)
    if out is not None:
        write_text_atomic(out, "".join(json.dumps(p) + "\n" for p in result["predictions"]))
    if as_json:
        typer.echo(json.dumps(result))
        return
    summary = f"{result['rows']} rows of {table.source} classified among {len(result['labels'])} labels"
    if "accuracy" in result:
        summary += f": accuracy {result['accuracy']:.4f}"
        for lab, acc in result["per_label_accuracy"].items():
            summary += f"\n  {lab}: {acc:.4f}"
    if out is None:
        sys.stdout.write("".join(json.dumps(p) + "\n" for p in result["predictions"]))
    typer.echo(summary, err=True)
