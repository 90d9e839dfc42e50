"""Trained models joined into one ensemble after the fact (`polymodal ensemble`, `pm.ensemble`): models that read
different inputs (audio alone, lips alone, both) or were trained apart, combined as the task combines ensembles
(the mean of their probabilities; text: CTC step probabilities averaged, or whole texts rescored). The ensemble's
own choices (a CTC search, a decision threshold) are made on a validation table none of the members trained on;
its test table is scored once."""
from __future__ import annotations

import time
from pathlib import Path

from ..data import ReadTable, Table, check_columns, read_inputs
from ..evaluation.evaluate import evaluate_parts
from ..model import Member, Parts, join_parts
from ..storage import save_parts
from .fit import calibrate, choose_decoding
from .progress_log import append_line


def read_for(parts: Parts, table: Table, allow_roots: list | None = None) -> ReadTable:
    """A table with the target, read through the ensemble's inputs (the union of its members'). The columns of the
    inputs some member reads are required; an input no member reads (a lips model's audio, held to its lips) may be
    absent from the table."""
    column = parts.recipe.target.column
    read = {name for m in parts.members or [] for name in (m.reads or [s.name for s in m.parts.inputs])}
    check_columns(table, [s for s in parts.inputs if s.name in read], column)
    return read_inputs(table, parts.inputs, parts.task, column, parts.recipe.data.on_bad_input,
                       show_progress=False, allow_roots=allow_roots or parts.recipe.data.allow_root)


def join_models(members: list[Member], out: Path | None = None, validation: Table | None = None,
                test: Table | None = None, batch_size: int = 64,
                allow_roots: list | None = None, rows: str = "all") -> tuple[Parts, dict]:
    """The members as one model; with `validation`, its search or threshold chosen there (where its task chooses
    one) and its validation report; with `test`, the test report. Saved to `out` (members under out/members/K, each a
    whole model directory) with a log of what was chosen (out/join.log). `rows`: which members read each row
    (`reading_members`: all, closest, widest, first)."""
    started = time.perf_counter()
    parts = join_parts(members, rows=rows)
    log_path = out / "join.log" if out is not None else None  # no directory: no log
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
        for k, m in enumerate(members):
            reads = m.reads or [s.name for s in m.parts.inputs]
            append_line(log_path, f"member {k}: {m.source} reads {', '.join(reads)}")
        append_line(log_path, f"rows read by: {rows}")
    metrics: dict = {"ensemble": {"rows": rows, "members": [
        {"source": m.source, "reads": list(m.reads) if m.reads else None, "validation": m.metrics.get("validation"),
         "test": m.metrics.get("test")} for m in members]}}
    if validation is not None:
        rows = read_for(parts, validation, allow_roots)
        if parts.task.decoding_candidates(parts.net):
            metrics["ensemble"]["decoding"] = choose_decoding(parts, rows, batch_size, log_path)
        if parts.task.calibrates():
            metrics["ensemble"]["calibrated"] = calibrate(parts, rows, batch_size, log_path)
        metrics["validation"] = evaluate_parts(parts, rows, batch_size)
    elif parts.task.decoding_candidates(parts.net) or parts.task.calibrates():
        metrics["ensemble"]["kept"] = ("no validation table: the ensemble keeps the first member's search or "
                                       "threshold")
    if test is not None:
        metrics["test"] = evaluate_parts(parts, read_for(parts, test, allow_roots), batch_size)
    metrics["ensemble"]["seconds"] = round(time.perf_counter() - started, 2)
    if out is not None:
        save_parts(parts, out, metrics)
        append_line(log_path, f"ensemble of {len(members)} models saved to {out}")
    return parts, metrics
