"""Errors a user can act on. The CLI prints their message alone, never a traceback."""
from __future__ import annotations


class PolymodalError(Exception):
    """Base class: the message names the file, row, column or field at fault."""


class RecipeError(PolymodalError):
    """An invalid recipe field or command-line override."""


class DataError(PolymodalError):
    """A table, file or cell that cannot be read."""


class BadInput(PolymodalError):
    """One value that a modality cannot read; the data layer adds the file, row and column."""


def where(file: object, row: int | None = None, column: str | None = None) -> str:
    """Format a location as `file, row N, column 'c'` for error messages (rows count from 1)."""
    parts = [str(file)]
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)
