"""Modalities: read, validate, batch. Importing this package registers every modality."""
from __future__ import annotations

from pathlib import Path

from . import audio, image, signal, tabular, text, video  # noqa: F401  (registration)
from .base import MODALITIES, Modality

__all__ = ["MODALITIES", "Modality", "infer_modality", "modality_of_suffix"]


def modality_of_suffix(path: str | Path) -> str | None:
    """The modality whose files carry this suffix (from each modality's `suffixes`), or None."""
    suffix = Path(path).suffix.lower()
    for name, cls in MODALITIES.items():
        if suffix in cls.suffixes:
            return name
    return None


def infer_modality(values: list) -> str | None:
    """Guess a column's modality from its first non-missing values: a file suffix a modality claims; a list (a
    modality whose values are lists); a plain string or number (the modality of plain values, text)."""
    plain = next((n for n, cls in MODALITIES.items() if cls.plain_values), None)
    for v in values[:50]:
        if v is None:
            continue
        if isinstance(v, str):
            kind = modality_of_suffix(v) if "\n" not in v else None
            return kind or plain
        if isinstance(v, (list, tuple)):
            return next((n for n, cls in MODALITIES.items() if cls.list_values), None)
        if isinstance(v, (int, float)):
            return plain
    return None
