"""A pretrained Hugging Face generator that writes the text itself: an image captioner (VisionEncoderDecoder, BLIP),
a visual question answerer (BLIP), a speech recogniser (Whisper), or any encoder-decoder whose `generate` takes
`pixel_values`, `input_ids` or `input_features`. Loaded from a local directory or a hub id; zero-shot with
`training.epochs: 0`, or fine-tuned by `fit`. The model directory keeps its config, tokenizer and processor files
beside the weights (model.safetensors), so it reloads anywhere without the source and runs no code."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import PolymodalError, RecipeError
from ..types import Batch

FILES_DIR = "text_generator"
PROCESSOR_FILES = ("preprocessor_config.json",)


class TokenizerVocabulary:
    """The generator's own tokenizer standing in for a learnt vocabulary (targets keep its special tokens, as the
    model was trained with them)."""

    unit = "tokenizer"
    lowercase = False
    pad_id = -100  # ignored by Hugging Face losses

    def __init__(self, source: str) -> None:
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise RecipeError(f"cannot load the tokenizer of '{source}': {e}") from None
        self.tokens: list[str] = []

    def __len__(self) -> int:
        return len(self.tokenizer)

    def clean(self, text: Any) -> str:
        from .text import clean_text

        return clean_text(text)

    def units(self, text: Any) -> list[int]:
        return self.encode(text)

    def learn(self, texts: list[Any]) -> None:
        """Nothing to learn: the tokenizer is the model's."""

    def encode(self, text: Any) -> list[int]:
        return list(self.tokenizer(self.clean(text)).input_ids)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=True).strip()


def generator_class(config: Any, kinds: dict[str, str]):
    """The transformers class the config names (a class of the library, never remote code), else an Auto class
    chosen by the inputs."""
    import transformers

    for name in config.architectures or []:
        cls = getattr(transformers, name, None)
        if cls is not None and hasattr(cls, "generate"):
            return cls
    if "audio" in kinds.values():
        return transformers.AutoModelForSpeechSeq2Seq
    if "image" in kinds.values():
        return transformers.AutoModelForImageTextToText
    return transformers.AutoModelForSeq2SeqLM


class GeneratorTextNet(nn.Module):
    """The generator's inputs from polymodal's batches (pixels normalised as its processor says, its tokenizer's ids
    for a text input, its feature extractor's features for audio); `forward` generates token ids [B, max_length + 2]
    padded with -1."""

    def __init__(self, source: str, kinds: dict[str, str], max_length: int, from_config: bool = False) -> None:
        super().__init__()
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(source)
            cls = generator_class(config, kinds)
            self.model = cls.from_config(config) if from_config and hasattr(cls, "from_config") else \
                (cls(config) if from_config else cls.from_pretrained(source))
        except (OSError, ValueError) as e:
            raise RecipeError(f"cannot load the text generator '{source}': {e}") from None
        self.source, self.kinds, self.max_length = source, dict(kinds), max_length
        self.encoders = nn.ModuleDict()  # the generator encodes its inputs itself
        self.beam = 1
        from ..encoders.pretrained import image_stats

        mean, std = image_stats(source, default=([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]))  # Hugging Face's processors
        self.register_buffer("img_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.extractor = None
        if "audio" in kinds.values():
            from transformers import AutoFeatureExtractor

            self.extractor = AutoFeatureExtractor.from_pretrained(source)

    def model_inputs(self, batch: Batch) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, kind in self.kinds.items():
            mb = batch[name]
            if not bool(mb.present.all()):
                row = int((~mb.present).nonzero()[0])
                raise PolymodalError(f"row {row + 1} has no '{name}': a pretrained generator needs every input")
            if kind == "image":
                x = mb.data[mb.index]
                x = x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)
                out["pixel_values"] = (x - self.img_mean) / self.img_std
            elif kind == "text":
                out["input_ids"], out["attention_mask"] = mb.data[mb.index], mb.mask[mb.index].long()
            elif kind == "audio":
                lengths = mb.mask.sum(1).tolist()
                waves = [mb.data[i, :n, 0].cpu().numpy().astype(np.float32) for i, n in enumerate(lengths)]
                rate = self.extractor.sampling_rate
                feats = self.extractor([waves[i] for i in mb.index.tolist()], sampling_rate=rate,
                                       return_tensors="pt")
                out["input_features"] = feats.input_features.to(mb.data.device)
            else:
                raise PolymodalError(f"a pretrained text generator takes images, text or audio, not {kind} "
                                     f"(input '{name}')")
        return out

    def loss(self, batch: Batch, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        labels = target.masked_fill(target < 0, -100)
        return self.model(**self.model_inputs(batch), labels=labels).loss

    def forward(self, batch: Batch) -> Tensor:
        beam = self.beam if not self.training else 1
        ids = self.model.generate(**self.model_inputs(batch), max_new_tokens=self.max_length, num_beams=beam,
                                  do_sample=False)
        width = self.max_length + 2
        out = torch.full((ids.shape[0], width), -1.0)
        out[:, :min(width, ids.shape[1])] = ids[:, :width].float()
        return out.to(ids.device)

    def save_files(self, directory: Path, tokenizer: Any) -> None:
        target = directory / FILES_DIR
        target.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(str(target))
        if getattr(self.model, "generation_config", None) is not None:
            self.model.generation_config.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
        for name in PROCESSOR_FILES:
            if (Path(self.source) / name).is_file():
                shutil.copyfile(Path(self.source) / name, target / name)
        if self.extractor is not None:
            self.extractor.save_pretrained(str(target))
