"""Modalities: read, validate, batch. Importing this package registers every modality."""
from . import audio, image, signal, text, video  # noqa: F401  (registration)
from .base import MODALITIES, Modality

__all__ = ["MODALITIES", "Modality", "infer_modality"]

_SUFFIXES = {
    "image": {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"},
    "audio": {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".aiff"},
    "video": {".mp4", ".webm", ".avi", ".mkv", ".mov"},
    "signal": {".npy", ".csv", ".tsv"},
    "text": {".txt"},
}


def infer_modality(values: list) -> str | None:
    """Guess a column's modality from its first non-missing values (file suffix, or plain strings = text)."""
    from pathlib import Path

    for v in values[:50]:
        if v is None:
            continue
        if isinstance(v, str):
            suffix = Path(v).suffix.lower() if "\n" not in v else ""
            for name, suffixes in _SUFFIXES.items():
                if suffix in suffixes:
                    return name
            return "text"
        if isinstance(v, (list, tuple)):
            return "signal"
        if isinstance(v, (int, float)):
            return "text"
    return None
