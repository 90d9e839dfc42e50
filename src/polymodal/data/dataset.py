"""Read every value of a table once, through each input's modality, into memory; rows keep indices into the
distinct values so rows that share a file share its decoded value."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import BadInput, DataError, where
from ..modalities.base import Modality
from .table import Table, is_missing

log = logging.getLogger("polymodal")


class TargetCodec(Protocol):
    """What reading and batching need of a task: validate, encode and batch its targets."""

    def check(self, value: Any) -> Any: ...

    def encode(self, value: Any) -> Any: ...

    def collate(self, values: list[Any]) -> Any: ...


@dataclass
class InputSpec:
    name: str
    column: str
    modality: Modality


@dataclass
class ReadTable:
    """A table read through the inputs: per input, each row's id into that input's distinct items (-1 = absent)."""

    table: Table
    ids: dict[str, list[int]]
    items: dict[str, list[Any]]
    targets: list[Any] | None
    rows: list[int]  # positions in the source table of the kept rows
    skipped: list[str] = field(default_factory=list)
    raw: dict[str, list[Any]] | None = None  # decoded values before features (kept on request, for corruptions)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, positions: list[int]) -> "ReadTable":
        """A view of some rows (the distinct decoded values are shared, not copied)."""
        return ReadTable(self.table, {n: [ids[p] for p in positions] for n, ids in self.ids.items()}, self.items,
                         None if self.targets is None else [self.targets[p] for p in positions],
                         [self.rows[p] for p in positions], self.skipped, self.raw)


def progress(iterable, total: int, description: str, enabled: bool = True, minimum: int = 200):
    """A rich progress bar on stderr when it is a terminal or when asked; otherwise plain iteration. No bar for
    fewer than `minimum` steps."""
    if not enabled or total < minimum:
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for x in iterable:
            yield x
            bar.advance(task)


def read_inputs(table: Table, inputs: list[InputSpec], task: TargetCodec | None, target_column: str | None,
                on_bad_input: str = "error", require_target: bool = True, show_progress: bool = True,
                encode_targets: bool = True, keep_raw: bool = False,
                allow_roots: list[str | Path] | None = None) -> ReadTable:
    """Read all values of a table. `task` must be fitted when encode_targets is True. With keep_raw, the decoded
    values before feature extraction are kept too (a waveform besides its log-mel), for corruption sweeps. With
    `allow_roots`, a cell naming a file outside those folders (after symlinks and `..`) is a bad input."""
    roots = [Path(r).expanduser().resolve() for r in allow_roots or []]
    from .shards import ShardTable

    if isinstance(table, ShardTable):
        return _read_on_demand(table, inputs, task, target_column, on_bad_input, require_target, encode_targets,
                               keep_raw, roots)
    ids: dict[str, list[int]] = {s.name: [] for s in inputs}
    items: dict[str, list[Any]] = {s.name: [] for s in inputs}
    raws: dict[str, list[Any]] | None = {s.name: [] for s in inputs} if keep_raw else None
    caches: dict[str, dict[Any, int]] = {s.name: {} for s in inputs}
    targets: list[Any] | None = [] if target_column and (require_target or _has_column(table, target_column)) \
        else None
    kept, skipped = [], []
    for r, row in progress(enumerate(table.rows), len(table.rows), f"reading {table.source}", show_progress):
        try:
            row_ids = {}
            for s in inputs:
                row_ids[s.name] = _read_value(row, r, s, table, items[s.name], caches[s.name],
                                              None if raws is None else raws[s.name], roots)
            target = None
            if targets is not None:
                target = _target(task, row.get(target_column), table.source, r, target_column, encode_targets)
        except DataError as e:
            if on_bad_input == "error":
                raise
            skipped.append(str(e))
            continue
        for name, i in row_ids.items():
            ids[name].append(i)
        if targets is not None:
            targets.append(target)
        kept.append(r)
    if skipped:
        log.warning("skipped %d of %d rows of %s with unreadable values; first: %s", len(skipped), len(table.rows),
                    table.source, skipped[0])
    if not kept:
        raise DataError(f"{table.source}: no usable rows" + (f" (first problem: {skipped[0]})" if skipped else ""))
    return ReadTable(table, ids, items, targets, kept, skipped, raws)


def _target(task: TargetCodec, value: Any, source: str, r: int, column: str, encode: bool) -> Any:
    """A row's target, encoded (or only checked); a DataError names the row and column."""
    if is_missing(value):
        raise DataError(f"{where(source, r + 1, column)}: the target is empty")
    try:
        return task.encode(value) if encode else task.check(value)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where(source, r + 1, column)}: {e}") from None


def _read_on_demand(table, inputs: list[InputSpec], task: TargetCodec | None, target_column: str | None,
                    on_bad_input: str, require_target: bool, encode_targets: bool, keep_raw: bool,
                    roots: list[Path]) -> ReadTable:
    """A shard table's ReadTable: value ids from the index, values decoded when a batch asks (ShardValues), the
    target column read now (rows with an unusable target are skipped or stop the run, as `on_bad_input` says)."""
    from .shards import ShardValues

    items: dict[str, Any] = {s.name: ShardValues(table, s, True, on_bad_input, roots) for s in inputs}
    raw = {s.name: ShardValues(table, s, False, on_bad_input, roots) for s in inputs} if keep_raw else None
    all_ids = {s.name: table.value_ids(s.column) for s in inputs}
    kept, skipped, targets = list(range(len(table))), [], None
    if target_column and (require_target or target_column in table.columns()):
        targets, kept = [], []
        for r, value in enumerate(table.column(target_column)):
            try:
                targets.append(_target(task, value, table.source, r, target_column, encode_targets))
            except DataError as e:
                if on_bad_input == "error":
                    raise
                skipped.append(str(e))
                continue
            kept.append(r)
        if skipped:
            log.warning("skipped %d of %d rows of %s with unusable targets; first: %s", len(skipped), len(table),
                        table.source, skipped[0])
        if not kept:
            raise DataError(f"{table.source}: no usable rows" + (f" (first problem: {skipped[0]})" if skipped else ""))
    ids = {n: v if len(kept) == len(v) else [v[r] for r in kept] for n, v in all_ids.items()}
    return ReadTable(table, ids, items, targets, kept, skipped, raw)


def _has_column(table: Table, column: str) -> bool:
    return any(column in r for r in table.rows[:1000])


def outside_roots(path: Path, roots: list[Path]) -> bool:
    """Whether a file path leaves every allowed root once symlinks and `..` are resolved."""
    real = path.resolve()
    return not any(real == r or real.is_relative_to(r) for r in roots)


def _read_value(row: dict, r: int, spec: InputSpec, table: Table, items: list, cache: dict,
                raws: list | None = None, roots: list[Path] | None = None) -> int:
    value = row.get(spec.column)
    if isinstance(value, list) and not spec.modality.list_values and not value:
        value = None
    if value is None or (not isinstance(value, (list, tuple)) and _missing_scalar(value)):
        return -1
    if roots:
        path = spec.modality.opened_path(value, table.base_dir)
        if path is not None and outside_roots(path, roots):
            raise DataError(f"{where(table.source, r + 1, spec.column)}: '{value}' is outside the allowed roots "
                            f"({', '.join(map(str, roots))})")
    key = spec.modality.key(value, table.base_dir)
    if key is not None and key in cache:
        return cache[key]
    try:
        raw = spec.modality.decode(value, table.base_dir)
        item = spec.modality.features(raw)
    except BadInput as e:
        raise DataError(f"{where(table.source, r + 1, spec.column)}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a decoder library's unforeseen error still names the cell
        detail = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"{where(table.source, r + 1, spec.column)}: cannot read this {spec.modality.registry_name} "
                        f"value ({type(e).__name__}{': ' + detail if detail else ''})") from None
    items.append(item)
    if raws is not None:
        raws.append(raw)
    if key is not None:
        cache[key] = len(items) - 1
    return len(items) - 1


def _missing_scalar(value: Any) -> bool:
    try:
        return is_missing(value)
    except (TypeError, ValueError):
        return False


def check_columns(table: Table, inputs: list[InputSpec], target_column: str | None) -> None:
    cols = table.columns()
    missing = [s.column for s in inputs if s.column not in cols]
    if target_column and target_column not in cols:
        missing.append(target_column)
    if missing:
        raise DataError(f"{table.source}: no column {', '.join(repr(m) for m in missing)} "
                        f"(columns: {', '.join(sorted(cols))})")
