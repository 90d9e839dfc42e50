"""Shard directories: a table written as WebDataset tar shards, read back value by value in DataLoader workers.

`write_shards(table, out)` (the `polymodal shard` command) streams a table (jsonl, csv or parquet, never held whole)
into `shard-00000.tar`, `shard-00001.tar`, ... in WebDataset's layout: per row a sample `KEY.json` (the source row
number and its cells as written, file paths included) and `KEY.x<column>.<suffix>` holding the bytes of each file a
cell names. Beside them, `index.npz` gives every row's byte range in its shard (so a row is one read, in any
order), which of its cells are present, and for each file or text column the first row holding the same bytes or
text (rows that share an image share one decoded value in a batch, batches can be grouped by it, and a text
vocabulary counts each distinct text once, as when the table is read into memory). `shards.json` says what the
directory holds.

`ShardTable(directory)` is a Table whose rows are read on demand; `read_inputs` on it returns a ReadTable whose
values are decoded when a batch asks for them, so memory stays flat in the number of rows and the batch sampler
(seeded shuffle, grouping, DDP sharding, resume) is the in-memory one."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import BadInput, DataError, where
from .table import SUFFIXES, Table, _read_jsonl_line, is_missing, table_from_frame

log = logging.getLogger("polymodal")

FORMAT = "polymodal-shards"
VERSION = 1
DEFAULT_ROWS_PER_SHARD = 10_000
RECENT_ROWS = 1024  # parsed rows a ShardTable keeps (a batch's rows, read once for all inputs)


def is_shard_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "shards.json").is_file()


# -- writing ----------------------------------------------------------------------------------------------------


def iter_table_rows(path: Path, chunk_rows: int = 4096) -> Iterator[dict]:
    """The rows of a jsonl, csv or parquet table, a few thousand at a time (never the whole table)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported table type '{suffix}' (use .jsonl, .csv or .parquet)")
    if suffix in (".jsonl", ".json"):
        with path.open("rb") as f:
            first = f.read(1 << 16).decode("utf-8-sig", errors="ignore").lstrip()
        if suffix == ".json" and first.startswith("["):  # a JSON array has to be read whole
            from .table import read_table

            yield from read_table(path).rows
            return
        with path.open("rb") as f:
            for i, line in enumerate(f, 1):
                row = _read_jsonl_line(path, i, line, first=i == 1)
                if row is not None:
                    yield row
        return
    import pandas as pd

    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield from table_from_frame(batch.to_pandas(), path.parent, str(path)).rows
        return
    try:
        for frame in pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", chunksize=chunk_rows):
            yield from table_from_frame(frame, path.parent, str(path)).rows
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the table has no rows") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}): {e.reason}") from None


def _count_rows(path: Path) -> int:
    """About how many rows a table has (for the progress bar): parquet's metadata, else its lines."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
    return lines - (path.suffix.lower() in (".csv", ".tsv"))


def _file_of(value: Any, base: Path) -> Path | None:
    """The file a cell names, when it names one that exists."""
    from ..modalities.base import looks_like_path, resolve

    if not isinstance(value, str) or not looks_like_path(value):
        return None
    p = resolve(value, base)
    return p if p.is_file() else None


def _plain(value: Any) -> Any:
    """A cell as JSON can hold it (arrays from parquet become lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _pixels(data: bytes, size: int, src: Path, row: int, column: str) -> bytes:
    """An image file's pixels, decoded to RGB and resized so its shorter side is `size`, as .npy bytes."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        raise DataError(f"{where(src, row + 1, column)}: cannot decode this image ({e})") from None
    img = img.convert("RGB")
    scale = size / min(img.size)
    if scale != 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    np.save(buf, np.asarray(img, dtype=np.uint8), allow_pickle=False)
    return buf.getvalue()


def write_shards(table: str | Path, out: str | Path, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
                 show_progress: bool = True, image_size: int | None = None) -> dict:
    """Write `table` as a shard directory at `out` (atomically: a crash leaves no half directory). Returns the
    description written to shards.json. With `image_size`, image files are stored decoded (RGB pixels, the shorter
    side resized to image_size): larger shards, and no image decoding while training (the decoding of a PNG or a
    JPEG is most of what reading a row costs; at the model's image size, nothing is left but a copy)."""
    import webdataset as wds

    from ..modalities.image import ImageModality

    image_suffixes = set(ImageModality.suffixes)
    from .dataset import progress

    src = Path(table)
    if not src.is_file():
        raise DataError(f"table not found: {src}")
    if rows_per_shard < 1:
        raise DataError("--rows-per-shard must be at least 1")
    out = Path(out)
    if out.exists() and not is_shard_dir(out):
        raise DataError(f"{out} exists and is not a shard directory: choose another --out")
    base = src.resolve().parent
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    columns: dict[str, int] = {}
    shard_of, start, head_end, end = [], [], [], []
    present_rows: list[list[int]] = []  # per row, the column numbers it has a value in
    same_as: dict[int, list[int]] = {}  # column -> per row, the first row with the same file bytes or text
    file_columns: set[int] = set()
    seen: dict[tuple[int, bytes], int] = {}
    files_bytes = 0
    writer, shard, n = None, -1, 0
    handle = None
    try:
        for row in progress(iter_table_rows(src), _count_rows(src), f"sharding {src}", show_progress):
            if n % rows_per_shard == 0:
                if writer is not None:
                    writer.close()
                    handle.close()
                shard += 1
                handle = open(tmp / f"shard-{shard:05d}.tar", "wb")
                writer = wds.TarWriter(handle, mtime=0, format=tarfile.USTAR_FORMAT)  # one header per member
            sample: dict[str, Any] = {"__key__": f"{n:09d}"}
            cells, have = {}, []
            digests: dict[int, bytes] = {}
            for name, value in row.items():
                c = columns.setdefault(str(name), len(columns))
                missing = value is None or (not isinstance(value, (list, tuple, np.ndarray)) and is_missing(value))
                if not missing:
                    have.append(c)
                cells[str(name)] = None if missing else _plain(value)
                path = None if missing else _file_of(value, base)
                if path is not None:
                    data, suffix = path.read_bytes(), path.suffix.lower()
                    if image_size and suffix in image_suffixes:
                        data, suffix = _pixels(data, image_size, src, n, str(name)), ".npy"
                    sample[f"x{c}{suffix}"] = data  # sorts after "json": the row's cells come first
                    digests[c] = hashlib.blake2b(data, digest_size=16).digest()
                    files_bytes += len(data)
                    file_columns.add(c)
                elif isinstance(value, str) and not missing:  # equal texts share a value, as when read into memory
                    digests[c] = hashlib.blake2b(value.encode("utf-8"), digest_size=16).digest()
            sample["json"] = json.dumps({"row": n, "cells": cells}, ensure_ascii=False).encode("utf-8")
            begin = writer.tarstream.offset
            writer.write(sample)
            shard_of.append(shard)
            start.append(begin)
            head_end.append(begin + 512 + -(-len(sample["json"]) // 512) * 512)
            end.append(writer.tarstream.offset)
            present_rows.append(have)
            for c, digest in digests.items():
                same_as.setdefault(c, [-1] * n)  # a column first seen with a file or a text at row n
                column_rows = same_as[c]
                column_rows.extend([-1] * (n - len(column_rows)))
                column_rows.append(seen.setdefault((c, digest), n))
            n += 1
    except BaseException:
        if writer is not None:
            writer.close()
            handle.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if writer is not None:
        writer.close()
        handle.close()
    if n == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{src}: the table has no rows")
    present = np.zeros((n, len(columns)), dtype=bool)
    for r, have in enumerate(present_rows):
        present[r, have] = True
    arrays = {"shard": np.asarray(shard_of, np.int32), "start": np.asarray(start, np.int64),
              "head_end": np.asarray(head_end, np.int64), "end": np.asarray(end, np.int64), "present": present}
    for c, column_rows in same_as.items():
        column_rows.extend([-1] * (n - len(column_rows)))
        arrays[f"same_as_{c}"] = np.asarray(column_rows, np.int64)
    np.savez(tmp / "index.npz", **arrays)
    meta = {"format": FORMAT, "version": VERSION, "source": str(src.resolve()), "rows": n, "shards": shard + 1,
            "rows_per_shard": rows_per_shard, "columns": list(columns),
            "file_columns": sorted(name for name, c in columns.items() if c in file_columns),
            "file_bytes": files_bytes, "layout": "webdataset", "image_size": image_size}
    (tmp / "shards.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return meta


# -- reading ----------------------------------------------------------------------------------------------------


def _members(data: bytes) -> dict[str, bytes]:
    """The members of one sample's bytes (name after the key -> content). TarWriter's ustar headers are parsed
    directly (a header block, then the content padded to 512 bytes); anything else goes through tarfile."""
    out, pos = {}, 0
    while pos + 512 <= len(data):
        header = data[pos:pos + 512]
        if header[156:157] not in (b"0", b"\0") or header[257:262] != b"ustar":
            if not header.strip(b"\0"):
                break  # end-of-archive blocks
            return _members_tarfile(data)
        name = header[:100].split(b"\0", 1)[0].decode("utf-8")
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
        out[name.split(".", 1)[1]] = data[pos + 512:pos + 512 + size]
        pos += 512 + -(-size // 512) * 512
    return out


def _members_tarfile(data: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            f = tar.extractfile(info)
            if f is not None:
                out[info.name.split(".", 1)[1]] = f.read()
    return out


class ShardRows(Sequence):
    """A shard table's rows as written (file cells hold their paths), read on demand."""

    def __init__(self, table: "ShardTable") -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.table.head(j) for j in range(*i.indices(self.table.n))]
        return self.table.head(int(i))

    def __iter__(self):
        for i in range(self.table.n):
            yield self.table.head(i)


class ShardTable(Table):
    """A Table over a shard directory: nothing but the small index is held; rows and values are read when asked."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        meta_path = directory / "shards.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{meta_path}: cannot read the shard description ({e})") from None
        if meta.get("format") != FORMAT:
            raise DataError(f"{meta_path}: not a polymodal shard directory")
        if meta.get("version", 0) > VERSION:
            raise DataError(f"{meta_path}: written by a newer polymodal (format version {meta['version']})")
        with np.load(directory / "index.npz", allow_pickle=False) as z:
            self.index = {k: z[k] for k in z.files}
        self.meta, self.directory, self.n = meta, directory, int(meta["rows"])
        if len(self.index["start"]) != self.n:
            raise DataError(f"{directory}/index.npz: {len(self.index['start'])} rows for the {self.n} of shards.json")
        self.column_number = {c: i for i, c in enumerate(meta["columns"])}
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()
        super().__init__(ShardRows(self), directory.resolve(), str(directory))  # type: ignore[arg-type]

    def __getstate__(self) -> dict:  # to DataLoader workers: without open files or rows read
        return {**self.__dict__, "_files": {}, "_recent": {}}

    def __len__(self) -> int:
        return self.n

    def columns(self) -> set[str]:
        return set(self.meta["columns"])

    def subset(self, indices: list[int]) -> Table:
        return Table([self.head(i) for i in indices], self.base_dir, self.source)

    def _read(self, i: int, stop: np.ndarray) -> bytes:
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        shard = int(self.index["shard"][i])
        f = self._files.get(shard)
        if f is None:
            path = self.directory / f"shard-{shard:05d}.tar"
            try:
                f = self._files[shard] = open(path, "rb")
            except OSError as e:
                raise DataError(f"{path}: cannot open shard ({e.strerror})") from None
        begin = int(self.index["start"][i])
        return os.pread(f.fileno(), int(stop[i]) - begin, begin)

    def head(self, i: int) -> dict:
        """Row i's cells as written."""
        if not 0 <= i < self.n:
            raise IndexError(i)
        members = _members(self._read(i, self.index["head_end"]))
        if "json" not in members:
            raise DataError(f"{self.source}: row {i + 1} has no json member (a damaged shard?)")
        return json.loads(members["json"])["cells"]

    def column(self, name: str) -> list[Any]:
        """Every row's cell in one column (read once, then kept: targets and group keys are small)."""
        cache = self.__dict__.setdefault("_columns", {})
        if name not in cache:
            from .dataset import progress

            cache[name] = [self.head(i).get(name) for i in progress(range(self.n), self.n,
                                                                    f"reading column '{name}' of {self.source}")]
        return cache[name]

    def value(self, i: int, column: str) -> Any:
        """Row i's value in a column: a file's bytes for a file cell, else the cell. The last rows read are kept
        parsed (a batch reads each row once for all its inputs)."""
        recent = self.__dict__.setdefault("_recent", {})
        if i in recent:
            members, cells = recent[i]
        else:
            members = _members(self._read(i, self.index["end"]))
            cells = json.loads(members["json"])["cells"]
            if len(recent) >= RECENT_ROWS:
                del recent[next(iter(recent))]
            recent[i] = members, cells
        c = self.column_number.get(column)
        for name, data in members.items():
            if c is not None and name.startswith(f"x{c}."):
                return data
        return cells.get(column)

    def value_ids(self, column: str) -> list[int]:
        """Per row: the row whose decoded value it uses (itself, or the first row with the same file bytes or text),
        -1 when absent."""
        c = self.column_number.get(column)
        if c is None:
            return [-1] * self.n
        own = np.arange(self.n, dtype=np.int64)
        ids = self.index.get(f"same_as_{c}")
        ids = own if ids is None else np.where(ids >= 0, ids, own)  # a value not shared (a number) is its row's own
        return np.where(self.index["present"][:, c], ids, -1).tolist()


class Unreadable:
    """A value that could not be decoded when its batch was made (with on_bad_input: skip it counts as missing)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class ShardValues:
    """One input's values of a shard table, decoded (and turned into features) when indexed."""

    def __init__(self, table: ShardTable, spec: Any, features: bool = True, on_bad_input: str = "error",
                 roots: list[Path] | None = None) -> None:
        self.table, self.spec, self.features, self.on_bad_input = table, spec, features, on_bad_input
        self.roots = roots or []

    def __len__(self) -> int:
        return self.table.n

    def __getitem__(self, i: int) -> Any:
        modality = self.spec.modality
        try:
            value = self.table.value(int(i), self.spec.column)
            if self.roots and isinstance(value, str):  # a path the shards do not hold the bytes of
                from .dataset import outside_roots

                path = modality.opened_path(value, self.table.base_dir)
                if path is not None and outside_roots(path, self.roots):
                    raise BadInput(f"'{value}' is outside the allowed roots")
            raw = modality.decode(value, self.table.base_dir)
            return modality.features(raw) if self.features else raw
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - any decoder's error names the cell
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            what = detail if isinstance(e, BadInput) else f"cannot read this {modality.registry_name} value " \
                f"({type(e).__name__}{': ' + detail if detail else ''})"
            message = f"{where(self.table.source, int(i) + 1, self.spec.column)}: {what}"
            if self.on_bad_input == "error":
                raise DataError(message) from None
            log.warning("%s (counted as missing)", message)
            return Unreadable(message)


def sample_positions(n: int, limit: int, seed: int = 0) -> list[int]:
    """At most `limit` of n positions, seeded, in order."""
    if n <= limit:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, limit, replace=False).tolist())


def print_summary(meta: dict, out: Path) -> None:
    size = sum(p.stat().st_size for p in out.glob("shard-*.tar"))
    print(f"{meta['rows']} rows in {meta['shards']} shards ({size / 2**20:.1f} MiB) written to {out}; file columns: "
          f"{', '.join(meta['file_columns']) or 'none'}", file=sys.stderr)
