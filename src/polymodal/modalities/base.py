"""What every modality does: read one raw value, learn state from training values, batch distinct values."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Hashable

from pydantic import BaseModel, ConfigDict
from torch import Tensor

from ..registry import Registry


class ModalityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Drawn:
    """An attribution drawn for a report: a figure, an HTML section, and tokens with their scores (text)."""

    figure: Path | None = None
    section: tuple[str, str] | None = None  # (title, html)
    tokens: list[tuple[str, float]] | None = None


class Modality:
    """A kind of data. Instances hold per-input options and any state learnt from the training values. The class
    holds the modality's facts, one place each: file suffixes, whether values repeat and are worth grouping, the
    default encoder, the corruptions (registered with `@corruption(Class, name)`), and how an attribution's baseline
    is made and how it is drawn."""

    Config: ClassVar[type[ModalityConfig]] = ModalityConfig
    default_encoder: ClassVar[str] = ""
    registry_name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()  # file suffixes whose values this modality reads (lower case)
    groupable: ClassVar[bool] = False  # values repeat across rows (a VQA image) and are worth encoding once per batch
    list_values: ClassVar[bool] = False  # a list in a cell is one value (a signal's samples), not a missing value
    plain_values: ClassVar[bool] = False  # plain strings and numbers in a cell are this modality's values (text)
    corruptions: ClassVar[dict[str, Callable]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.corruptions = {}  # each modality its own list

    def __init__(self, config: ModalityConfig) -> None:
        self.config = config

    @classmethod
    def facts(cls) -> dict:
        """What `polymodal components` shows besides the config."""
        return {"default_encoder": cls.default_encoder, "suffixes": list(cls.suffixes), "groupable": cls.groupable,
                "corruptions": list(cls.corruptions)}

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

    def opened_path(self, value: Any, base_dir: Path) -> Path | None:
        """The file `decode` would open for this value (None: the value is the data itself). A server checks it
        against its allowed roots before anything is read."""
        return resolve(value, base_dir) if isinstance(value, (str, Path)) else None

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

    # -- explanations --------------------------------------------------------------------------------------------
    def attribution_baseline(self, x: Tensor) -> Tensor:
        """The input with its structure removed, for Integrated Gradients (default: each feature's mean over the
        first axis after the batch): attributions then say what departs from a flat input, not from zeros."""
        return x.mean(dim=1, keepdim=True).expand_as(x).contiguous()

    def draw_attribution(self, name: str, value: Tensor, attr: Tensor, mask: Tensor | None, out: Path) -> Drawn:
        """Draw one value's attribution (shaped like the value) for the explanation report; default: nothing."""
        return Drawn()


MODALITIES: Registry[Modality] = Registry("modality")


def looks_like_path(value: str) -> bool:
    """A string is treated as a path when it has a file suffix and no newline."""
    return "\n" not in value and len(value) < 1024 and Path(value).suffix != "" and " " not in Path(value).suffix


def resolve(value: str | Path, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base_dir / p
