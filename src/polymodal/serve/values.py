"""Request bodies -> table rows. JSON carries text as strings, files as `{"base64": ...}` objects or `data:` URLs,
signals as lists and numbers as numbers; multipart carries one field per input (a file upload or a string). File
paths are followed only under an allowed root; every refusal names the row and the input."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.dataset import InputSpec, outside_roots
from ..errors import PolymodalError


class Rejected(PolymodalError):
    """A request the server refuses, with the HTTP status to answer (422 unless said)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PathPolicy:
    """Which file paths a request may name: none, unless under one of `roots` (symlinks and `..` resolved first)."""

    roots: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.roots = [Path(r).expanduser().resolve() for r in self.roots]

    @property
    def base_dir(self) -> Path:
        """Relative paths are resolved against the first allowed root."""
        return self.roots[0] if self.roots else Path.cwd()

    def check(self, path: Path, where: str) -> str:
        if not self.roots:
            raise Rejected(f"{where}: file paths are refused by this server; send the file's content (base64 in "
                           "JSON, or a multipart upload), or start the server with --allow-root DIR")
        if outside_roots(path, self.roots):
            raise Rejected(f"{where}: '{path}' is outside the allowed roots ({', '.join(map(str, self.roots))})")
        return str(path.resolve())


def decode_base64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise Rejected(f"{where}: 'base64' must be a string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"{where}: invalid base64") from None


def request_value(value: Any, spec: InputSpec, policy: PathPolicy, where: str) -> Any:
    """One JSON value of an input -> what the input's modality reads (bytes for files; paths checked)."""
    if isinstance(value, dict):
        if "base64" not in value or set(value) - {"base64", "filename", "type"}:
            raise Rejected(f"{where}: an object value is a file: {{\"base64\": \"...\", \"filename\": \"x.png\"}}")
        return decode_base64(value["base64"], where)
    if isinstance(value, str) and value.startswith("data:") and "," in value[:256]:
        header, _, data = value.partition(",")
        if not header.endswith(";base64"):
            raise Rejected(f"{where}: only base64 data URLs are read (data:<type>;base64,...)")
        return decode_base64(data, where)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    path = spec.modality.opened_path(value, policy.base_dir) if isinstance(value, str) else None
    if path is not None:
        return policy.check(path, where)
    return value


def request_rows(rows: Any, specs: list[InputSpec], policy: PathPolicy) -> list[dict]:
    """JSON rows ({input name or column: value}) -> table rows keyed by column. Unknown keys are refused, absent or
    null inputs are missing; `id` is passed through."""
    if not isinstance(rows, list) or not rows:
        raise Rejected("'rows' must be a non-empty list of objects")
    by_key = {s.name: s for s in specs} | {s.column: s for s in specs}
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise Rejected(f"row {i + 1}: expected an object of inputs, got {type(row).__name__}")
        table_row: dict[str, Any] = {}
        for key, value in row.items():
            if key == "id":
                table_row["id"] = value
                continue
            spec = by_key.get(key)
            if spec is None:
                raise Rejected(f"row {i + 1}: unknown input '{key}' (inputs: "
                               f"{', '.join(f'{s.name} ({s.modality.registry_name})' for s in specs)})")
            if value is not None:
                table_row[spec.column] = request_value(value, spec, policy, f"row {i + 1}, input '{spec.name}'")
        if not set(table_row) - {"id"}:
            raise Rejected(f"row {i + 1}: no inputs given (the model takes: {', '.join(s.name for s in specs)})")
        out.append(table_row)
    return out


def json_rows(body: Any, specs: list[InputSpec], policy: PathPolicy) -> list[dict]:
    """A JSON body's rows: `{"rows": [...]}` or `{"inputs": {...}}` (one row)."""
    if not isinstance(body, dict):
        raise Rejected("the body must be a JSON object with 'rows' (a list) or 'inputs' (one row)")
    unknown = set(body) - {"rows", "inputs", "model"}
    if unknown:
        raise Rejected(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}: the body takes 'rows' or 'inputs', "
                       "and 'model'")
    if ("rows" in body) == ("inputs" in body):
        raise Rejected("give one of 'rows' (a list of rows) or 'inputs' (one row)")
    return request_rows(body["rows"] if "rows" in body else [body["inputs"]], specs, policy)


def form_row(form: dict[str, Any], specs: list[InputSpec], policy: PathPolicy) -> list[dict]:
    """A multipart form (field -> bytes for uploads, str otherwise) -> one row. Uploaded files arrive as bytes;
    a string field is read like a JSON string (text, a number, or a path under an allowed root)."""
    row = {k: v for k, v in form.items() if k != "model" and not (isinstance(v, (str, bytes)) and len(v) == 0)}
    return request_rows([row], specs, policy)
