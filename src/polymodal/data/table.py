"""Tables of examples: jsonl, csv, parquet or a pandas DataFrame. Missing = empty cell, null, NaN or absent key."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".pq"}


@dataclass
class Table:
    rows: list[dict[str, Any]]
    base_dir: Path  # cells holding relative paths are resolved against this folder
    source: str  # the file name (or "<dataframe>") used in error messages

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> set[str]:
        cols: set[str] = set()
        for r in self.rows[:1000]:
            cols.update(r)
        return cols

    def column(self, name: str) -> list[Any]:
        """Every row's cell in one column."""
        return [r.get(name) for r in self.rows]

    def subset(self, indices: list[int]) -> "Table":
        return Table([self.rows[i] for i in indices], self.base_dir, self.source)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def read_table(path: str | Path) -> Table:
    p = Path(path)
    if p.is_dir() and (p / "shards.json").is_file():  # a shard directory (`polymodal shard`): rows read on demand
        from .shards import ShardTable

        return ShardTable(p)
    if not p.is_file():
        raise DataError(f"table not found: {p}" + (" (a folder, but not a shard directory: no shards.json)"
                                                   if p.is_dir() else ""))
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{p}: unsupported table type '{suffix}' (use .jsonl, .csv or .parquet)")
    base = p.resolve().parent
    if suffix in (".jsonl", ".json"):
        table = Table(_read_jsonl(p), base, str(p))
    else:
        table = _read_frame(p, suffix, base)
    if not table.rows:
        raise DataError(f"{p}: the table has no rows")
    return table


def _read_frame(p: Path, suffix: str, base: Path) -> Table:
    import pandas as pd

    sep = "\t" if suffix == ".tsv" else ","
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        else:
            with p.open(encoding="utf-8", newline="") as f:  # the header as written (pandas renames duplicates)
                header = next(csv.reader(f, delimiter=sep), [])
            seen = set()
            for name in header:
                if name in seen:
                    raise DataError(f"{p}: duplicate column '{name}' in the header")
                seen.add(name)
            frame = pd.read_csv(p, sep=sep, keep_default_na=True)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: the table has no rows") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text (byte {e.start}): {e.reason}") from None
    except Exception as e:  # noqa: BLE001 - pandas/pyarrow raise many types
        raise DataError(f"{p}: cannot read table: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None
    return table_from_frame(frame, base, str(p))


def _read_jsonl(p: Path) -> list[dict]:
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{p}, line {line}: not UTF-8 text (byte {e.start}): {e.reason}") from None
    stripped = text.lstrip()
    if p.suffix.lower() == ".json" and stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}: invalid JSON: {e}") from None
        if not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{p}: a JSON table is a list of objects")
        return rows
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        row = _read_jsonl_line(p, i, line)
        if row is not None:
            rows.append(row)
    return rows


def _read_jsonl_line(p: Path, i: int, line: str | bytes, first: bool = False) -> dict | None:
    """One line of a jsonl table (None when blank); errors name the file and line."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8-sig" if first else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{p}, line {i}: not UTF-8 text (byte {e.start}): {e.reason}") from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{p}, line {i}: invalid JSON: {e.msg}") from None
    if not isinstance(row, dict):
        raise DataError(f"{p}, line {i}: each line must be a JSON object")
    return row


def table_from_frame(frame: Any, base_dir: Path | None = None, source: str = "<dataframe>") -> Table:
    import numpy as np

    records = frame.to_dict(orient="records")
    rows = []
    for r in records:
        row = {}
        for k, v in r.items():
            if isinstance(v, np.generic):
                v = v.item()
            row[str(k)] = None if (not isinstance(v, (list, np.ndarray)) and is_missing(v)) else v
        rows.append(row)
    return Table(rows, base_dir or Path.cwd(), source)


def as_table(data: Any, base_dir: Path | None = None) -> Table:
    """A path, a DataFrame, a list of dicts or a Table -> Table."""
    if isinstance(data, Table):
        return data
    if isinstance(data, (str, Path)):
        return read_table(data)
    if isinstance(data, list):
        return Table([dict(r) for r in data], base_dir or Path.cwd(), "<rows>")
    if hasattr(data, "to_dict"):
        return table_from_frame(data, base_dir)
    raise DataError(f"expected a table path, a DataFrame or a list of rows, got {type(data).__name__}")
