"""Embedders: a table column (or one query value) -> L2-normalised vectors in a joint space. Two kinds: a polymodal
contrastive model directory, and a Hugging Face dual encoder (CLIP and kin: anything with get_text_features /
get_image_features) by hub id or local directory. Both read values through polymodal's modalities, so errors name
the file, row and column."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data import InputSpec, Table, check_columns, read_inputs
from ..data.batching import collate_input
from ..data.dataset import progress
from ..errors import PolymodalError
from ..modalities import modality_of_suffix
from ..types import ModalityBatch

EMBED_CHUNK = 8192  # rows embedded (and written) per chunk when the table is read on demand


class Embedder:
    """Embeds the values of any of its inputs. Subclasses give `specs` (input name -> InputSpec) and embed_batch."""

    source: str
    specs: dict[str, InputSpec]
    batch_size = 128

    @property
    def inputs(self) -> dict[str, str]:
        return {n: s.modality.registry_name for n, s in self.specs.items()}

    def input_for(self, name: str | None, kind: str | None = None) -> str:
        """Resolve an input name; with none given, the only input of that modality (or the only input)."""
        if name is not None:
            if name not in self.specs:
                raise PolymodalError(f"{self.source} has no input '{name}' (inputs: {', '.join(self.specs)})")
            return name
        names = [n for n, k in self.inputs.items() if kind is None or k == kind]
        if len(names) != 1:
            what = f"{kind} input" if kind else "input"
            raise PolymodalError(f"{self.source}: name the {what} to use (inputs: "
                                 f"{', '.join(f'{n} ({k})' for n, k in self.inputs.items())})")
        return names[0]

    @torch.inference_mode()
    def embed_table(self, table: Table, name: str, column: str | None = None, on_bad_input: str = "error",
                    into: str | Path | None = None) -> tuple[np.ndarray, list[int]]:
        """Vectors [N, E] (float32, unit length) for the rows that have a value in the input's column, and those
        rows' positions in the table. With `into` (an .npy path), the vectors are also written there; for a table read
        on demand (a shard directory) they are written a chunk of rows at a time and returned memory-mapped, so it
        is embedded in bounded memory, with a progress bar."""
        spec = self.specs[name]
        spec = InputSpec(spec.name, column or spec.column, spec.modality)
        check_columns(table, [spec], None)
        read = read_inputs(table, [spec], None, None, on_bad_input, require_target=False, show_progress=True)
        ids = np.asarray(read.ids[name])
        keep = ids >= 0
        if not keep.any():
            raise PolymodalError(f"{table.source}: column '{spec.column}' has no values")
        rows = [r for r, k in zip(read.rows, keep) if k]
        items, wanted = read.items[name], ids[keep]
        if isinstance(items, list):  # all values in memory: each distinct one embedded once
            vectors = self._embed_items(name, items)[wanted]
            if into is not None:
                np.save(into, vectors)
            return vectors, rows
        out: np.ndarray | None = None
        chunks = range(0, len(wanted), EMBED_CHUNK)
        for start in progress(chunks, len(chunks), f"embedding {table.source}", minimum=2):
            part = wanted[start:start + EMBED_CHUNK]
            distinct, inverse = np.unique(part, return_inverse=True)
            vectors = self._embed_items(name, items, distinct.tolist())[inverse.reshape(-1)]
            if out is None:
                shape = (len(wanted), vectors.shape[1])
                out = np.lib.format.open_memmap(into, "w+", np.float32, shape) if into is not None \
                    else np.empty(shape, np.float32)
            out[start:start + len(part)] = vectors
        if isinstance(out, np.memmap):
            out.flush()
        return out, rows

    def embed_values(self, name: str, values: list[Any], base_dir: Path | None = None) -> np.ndarray:
        """Vectors for raw values (texts, file paths, arrays) of one input."""
        column = self.specs[name].column
        table = Table([{column: v} for v in values], base_dir or Path.cwd(), "<query>")
        return self.embed_table(table, name)[0]

    def _embed_items(self, name: str, items: Sequence, which: list[int] | None = None) -> np.ndarray:
        """Vectors of items (all, or those at `which`), a batch at a time."""
        modality = self.specs[name].modality
        which = list(range(len(items))) if which is None else which
        out = []
        for start in range(0, len(which), self.batch_size):
            ids = which[start:start + self.batch_size]
            z = self.embed_batch(name, collate_input(modality, ids, items))
            out.append(torch.nn.functional.normalize(z.float(), dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def embed_batch(self, name: str, batch: ModalityBatch) -> Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"source": self.source, "inputs": self.inputs}


class ModelEmbedder(Embedder):
    """A polymodal contrastive model directory."""

    def __init__(self, directory: str | Path) -> None:
        from ..storage import load_parts

        self.parts = load_parts(directory)
        if not hasattr(self.parts.net, "embed"):  # only a joint embedding space maps inputs to vectors
            raise PolymodalError(f"{directory}: a {self.parts.recipe.target.task} model has no joint embedding space "
                                 "(train one with target.task: contrastive)")
        self.source = str(directory)
        self.specs = {s.name: s for s in self.parts.inputs}

    def embed_batch(self, name: str, batch: ModalityBatch) -> Tensor:
        return self.parts.net.embed({name: batch})[name]


class HFDualEncoder(Embedder):
    """A Hugging Face dual encoder (CLIP, SigLIP, ...): inputs `text` and `image`."""

    def __init__(self, source: str) -> None:
        from transformers import AutoModel

        from ..encoders.pretrained import adjust_modality, image_stats, resolve_source
        from ..model import make_modality

        path = resolve_source(source)
        try:
            self.model = AutoModel.from_pretrained(path).eval()
        except (OSError, ValueError) as e:
            raise PolymodalError(f"cannot load '{source}' as a model directory, a polymodal model or a Hugging Face "
                                 f"dual encoder: {e}") from None
        if not (hasattr(self.model, "get_text_features") and hasattr(self.model, "get_image_features")):
            raise PolymodalError(f"{source}: a {type(self.model).__name__} is not a dual encoder (no "
                                 "get_text_features / get_image_features)")
        self.source = source
        size = getattr(getattr(self.model.config, "vision_config", None), "image_size", 224)
        text = make_modality("text", "text", adjust_modality("text", {}, {"path": path}))
        text.fit([])
        image_opts = adjust_modality("image", {"resize": "crop"}, {"path": path})
        image_opts.setdefault("size", size)
        image = make_modality("image", "image", image_opts)
        self.specs = {"text": InputSpec("text", "text", text), "image": InputSpec("image", "image", image)}
        mean, std = image_stats(path)
        self.mean, self.std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def embed_batch(self, name: str, batch: ModalityBatch) -> Tensor:
        if name == "text":
            out = self.model.get_text_features(input_ids=batch.data, attention_mask=batch.mask.long())
        else:
            x = batch.data if batch.data.shape[1] == 3 else batch.data.expand(-1, 3, -1, -1)
            out = self.model.get_image_features(pixel_values=(x - self.mean) / self.std)
        return out if isinstance(out, Tensor) else out.pooler_output


def open_embedder(source: str | Path) -> Embedder:
    """A polymodal model directory (a contrastive model) or a Hugging Face dual encoder (hub id or directory)."""
    path = Path(source)
    config = path / "config.json"
    if config.is_file():
        try:
            is_polymodal = json.loads(config.read_text()).get("format") == "polymodal-model"
        except json.JSONDecodeError as e:
            raise PolymodalError(f"{config}: corrupt config: {e}") from None
        if is_polymodal:
            return ModelEmbedder(path)
    elif path.exists() and not path.is_dir():
        raise PolymodalError(f"{source}: expected a model directory, not a file")
    return HFDualEncoder(str(source))


def modality_of_file(path: str) -> str:
    """The modality a query file holds, from its suffix (the same table `fit` reads by)."""
    kind = modality_of_suffix(path)
    if kind is None:
        raise PolymodalError(f"{path}: cannot tell the modality of a '{Path(path).suffix.lower()}' file; name the "
                             "input with --query-input")
    return kind


__all__ = ["Embedder", "HFDualEncoder", "ModelEmbedder", "modality_of_file", "open_embedder"]
