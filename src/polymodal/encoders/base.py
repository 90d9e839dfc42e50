"""Encoders: one input's distinct values -> tokens, mask and a pooled vector; the wrapper maps them back to rows
and stands in a learnt "missing" embedding for rows without the input."""
from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from ..modalities.base import Modality
from ..registry import Registry
from ..types import Encoded, ModalityBatch

logger = logging.getLogger("polymodal")


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Encoder(nn.Module):
    """forward(data [U, ...], mask [U, T] | None) -> (tokens [U, T, dim], mask [U, T], pooled [U, dim])."""

    Config: ClassVar[type[EncoderConfig]] = EncoderConfig
    registry_name: ClassVar[str] = ""

    def __init__(self, config: EncoderConfig, modality: Modality, dim: int) -> None:
        super().__init__()
        self.config, self.dim = config, dim

    def forward(self, data: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def save_files(self, directory: Path, prefix: str) -> None:
        """Files besides the weights that rebuilding needs (a pretrained model's config)."""

    @classmethod
    def modality_options(cls, kind: str, options: dict[str, Any], encoder: dict[str, Any]) -> dict[str, Any]:
        """The input's modality options this encoder needs (a pretrained model's tokenizer, image size, sample
        rate), from the recipe's options and encoder fields; raise RecipeError for a modality it cannot take."""
        return options

    @classmethod
    def for_loading(cls, config: dict, directory: Path, prefix: str) -> dict:
        """Rewrite a saved encoder config so the encoder rebuilds from the model directory alone."""
        return config

    def caches_features(self) -> bool:
        """Whether a frozen network's features are computed once per distinct value and kept (`FeatureCache`):
        training augmentation that changes the values would defeat the cache, so it leaves such inputs alone."""
        return False

    def backbone_depths(self) -> tuple[dict[int, int], int] | None:
        """A pretrained backbone's trainable parameters by depth (id(param) -> 0 for the embeddings or stem, i for
        its i-th block, `top` after the last), and `top`: what layer-wise learning-rate decay and a frozen start
        (`training.layer_decay`, `training.backbone_frozen_epochs`) act on. None: no pretrained backbone learns."""
        return None


def block_depths(model: nn.Module, blocks: nn.ModuleList) -> tuple[dict[int, int], int]:
    """Each trainable parameter of `model` by depth: block i (0-based) at i + 1, parameters before the blocks (in
    registration order: embeddings, stem) at 0, after them (final norm, head, pooler) at len(blocks) + 1."""
    top = len(blocks) + 1
    inside = {id(p): i + 1 for i, b in enumerate(blocks) for p in b.parameters()}
    depths, seen_blocks = {}, False
    for p in model.parameters():
        if id(p) in inside:
            seen_blocks = True
            depth = inside[id(p)]
        else:
            depth = top if seen_blocks else 0
        if p.requires_grad:
            depths[id(p)] = depth
    return depths, top


def find_blocks(model: nn.Module) -> nn.ModuleList | None:
    """The list of a transformer's blocks, where Hugging Face models keep it (BERT-like encoder.layer, Whisper and
    wav2vec2 encoder.layers / layers, ViT encoder.layer, DistilBERT transformer.layer)."""
    for path in ("encoder.layer", "encoder.layers", "layers", "layer", "transformer.layer", "blocks"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList) and len(obj):
            return obj
    return None


ENCODERS: Registry[Encoder] = Registry("encoder")


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


class AttentionPool(nn.Module):
    """One learnt query attends over the valid tokens: a summary that can pick out the few tokens that matter (the
    one word of a sentence, the stroke of a gesture) where a mean dilutes them."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        logits = self.score(tokens).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0)  # a row with no valid token: zeros
        return (weights.unsqueeze(-1) * tokens).sum(1)


class InputEncoder(nn.Module):
    """Runs an encoder on an input's distinct values, expands to rows, and fills absent rows with a learnt
    missing embedding (one token, unmasked), so every fusion sees valid vectors and the `present` flags."""

    def __init__(self, encoder: Encoder, dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.missing = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.missing, std=0.02)

    def forward(self, batch: ModalityBatch) -> Encoded:
        tokens, mask, pooled = self.encoder(batch.data, batch.mask)
        return self.expand(tokens, mask, pooled, batch)

    def expand(self, tokens: Tensor, mask: Tensor, pooled: Tensor, batch: ModalityBatch) -> Encoded:
        idx, present = batch.index, batch.present
        tokens, mask, pooled = tokens[idx], mask[idx], pooled[idx]
        p = present[:, None]
        first = torch.zeros(mask.shape[1], dtype=torch.bool, device=mask.device)
        first[0] = True
        pooled = torch.where(p, pooled, self.missing.to(pooled.dtype))
        mask = torch.where(p, mask, first)
        missing_tokens = self.missing.to(tokens.dtype) * first[:, None].to(tokens.dtype)
        tokens = torch.where(p[..., None], tokens, missing_tokens)
        return Encoded(tokens, mask, pooled, present)


class FeatureCache:
    """What a frozen network gives each distinct value, kept for the process: every value (keyed by a hash of its
    content) is computed once, then served from here every epoch and in evaluation.

    With a cache directory set (`feature_cache_dir`, from `training.feature_cache`), values are also written there,
    one safetensors file each under a folder named by the network (its name and a fingerprint of its weights and
    settings, from `identity`), and a later run with the same network reads them instead of computing them. Reading
    a file runs no code; a file that fails to read is computed again and rewritten."""

    directory: ClassVar[Path | None] = None

    def __init__(self, name: str = "", identity: Callable[[], bytes] | None = None) -> None:
        self.store: dict[bytes, Any] = {}
        self.name, self.identity = name, identity
        self._folders: dict[Path, Path] = {}
        self.computed = self.read = 0

    def __len__(self) -> int:
        return len(self.store)

    def clear(self) -> None:
        self.store.clear()

    @staticmethod
    def key(value: Tensor | np.ndarray) -> bytes:
        array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
        return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()

    def folder(self) -> Path | None:
        """This network's folder in the cache directory (None without a directory or an identity)."""
        root = FeatureCache.directory
        if root is None or self.identity is None:
            return None
        if root not in self._folders:
            digest = hashlib.blake2b(self.identity(), digest_size=8).hexdigest()
            self._folders[root] = root / f"{self.name or 'features'}-{digest}"
        return self._folders[root]

    def get(self, keys: list[bytes], compute: Callable[[list[int]], Iterable[Any]]) -> list[Any]:
        """The stored value of each key; `compute(positions)` gives the values of the keys not stored yet."""
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        folder = self.folder() if todo else None
        if folder is not None:
            for i in todo:
                if keys[i] not in self.store:
                    value = _read_features(folder / f"{keys[i].hex()}.safetensors")
                    if value is not None:
                        self.store[keys[i]] = value
                        self.read += 1
            todo = [i for i in todo if keys[i] not in self.store]
        if todo:
            for i, value in zip(todo, compute(todo)):
                if keys[i] in self.store:  # the same value twice in one batch
                    continue
                self.store[keys[i]] = value
                self.computed += 1
                if folder is not None:
                    _write_features(folder / f"{keys[i].hex()}.safetensors", value)
        return [self.store[k] for k in keys]


@contextmanager
def feature_cache_dir(directory: str | Path | None) -> Iterator[None]:
    """Frozen encoders keep their features in `directory` (created if need be) while the block runs."""
    before = FeatureCache.directory
    FeatureCache.directory = None if directory is None else Path(directory).expanduser()
    try:
        yield
    finally:
        FeatureCache.directory = before


def fingerprint(*parts: Any) -> bytes:
    """Bytes that change when a network's weights or settings do: each module's state (names and values), each
    file's bytes (Path), anything else by its repr."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, nn.Module):
            for name, tensor in part.state_dict().items():
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(part, Path):
            with part.open("rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        else:
            h.update(repr(part).encode())
    return h.digest()


def _write_features(path: Path, value: Any) -> None:
    """One value (a tensor, or a tuple of tensors and Nones) as a safetensors file, written whole or not at all."""
    from safetensors.torch import save_file

    parts = value if isinstance(value, tuple) else (value,)
    tensors = {str(i): t.contiguous() for i, t in enumerate(parts) if t is not None}
    meta = {"kind": "tuple" if isinstance(value, tuple) else "tensor", "parts": str(len(parts))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except Exception as e:  # noqa: BLE001 - a full or read-only disk: the run goes on with the features in memory
        tmp.unlink(missing_ok=True)
        logger.warning("feature cache: could not write %s (%s)", path, e)


def _read_features(path: Path) -> Any:
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        parts = tuple(tensors.get(str(i)) for i in range(int(meta["parts"])))
    except Exception as e:  # noqa: BLE001 - a damaged file is computed again
        logger.warning("feature cache: %s unreadable (%s); computing it again", path, e)
        return None
    return parts if meta.get("kind") == "tuple" else parts[0]


def build_encoder(name: str, config: dict[str, Any], modality: Modality, dim: int) -> Encoder:
    cls = ENCODERS.get(name)
    return cls(cls.Config.model_validate(config), modality, dim)
