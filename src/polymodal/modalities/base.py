"""What every modality does: read one raw value, learn state from training values, batch distinct values."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Hashable

from pydantic import BaseModel, ConfigDict
from torch import Tensor

from ..registry import Registry


class ModalityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Modality:
    """A kind of data. Instances hold per-input options and any state learnt from the training values."""

    Config: ClassVar[type[ModalityConfig]] = ModalityConfig
    default_encoder: ClassVar[str] = ""
    registry_name: ClassVar[str] = ""

    def __init__(self, config: ModalityConfig) -> None:
        self.config = config

    # -- reading -------------------------------------------------------------------------------------------------
    def key(self, value: Any, base_dir: Path) -> Hashable | None:
        """A key under which a read value may be cached and shared between rows (None: never shared)."""
        if isinstance(value, str):
            return str(resolve(value, base_dir)) if looks_like_path(value) else None
        return None

    def decode(self, value: Any, base_dir: Path) -> Any:
        """Decode and validate one raw value (path, bytes, array, ...) into the form corruptions act on (an image
        tensor, a waveform, a string); raise BadInput with the reason."""
        raise NotImplementedError

    def features(self, raw: Any) -> Any:
        """Decoded value -> the item the collate step batches (log-mel for audio; the value itself elsewhere)."""
        return raw

    def read(self, value: Any, base_dir: Path, corrupt: Callable[[Any], Any] | None = None) -> Any:
        """decode -> (corrupt) -> features."""
        raw = self.decode(value, base_dir)
        return self.features(raw if corrupt is None else corrupt(raw))

    def placeholder(self) -> Any:
        """A stand-in value for a batch in which no row has this input."""
        raise NotImplementedError

    # -- state ---------------------------------------------------------------------------------------------------
    def fit(self, items: list[Any]) -> None:
        """Learn state (a vocabulary, normalisation statistics) from the training items. Default: none."""

    def state(self) -> dict:
        """JSON-serialisable state saved in config.json."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def save_files(self, directory: Path, prefix: str) -> None:
        """Write state that lives in its own files (a tokenizer)."""

    def load_files(self, directory: Path, prefix: str) -> None:
        pass

    # -- batching ------------------------------------------------------------------------------------------------
    def collate(self, items: list[Any]) -> tuple[Tensor, Tensor | None]:
        """Batch distinct read items into (data [U, ...], mask [U, T] or None)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Facts an encoder needs (channels, feature count, vocabulary size)."""
        return {}


MODALITIES: Registry[Modality] = Registry("modality")


def looks_like_path(value: str) -> bool:
    """A string is treated as a path when it has a file suffix and no newline."""
    return "\n" not in value and len(value) < 1024 and Path(value).suffix != "" and " " not in Path(value).suffix


def resolve(value: str | Path, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base_dir / p
