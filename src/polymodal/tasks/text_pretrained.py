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


def is_assistant(config: Any) -> bool:
    """A decoder-only image-text-to-text model (LLaVA-style): its config names the token that stands for the image
    in the prompt, and it is not an encoder-decoder."""
    marker = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    return marker is not None and not getattr(config, "is_encoder_decoder", False)


class GeneratorTextNet(nn.Module):
    """The generator's inputs from polymodal's batches (pixels normalised as its processor says, its tokenizer's ids
    for a text input, its feature extractor's features for audio); `forward` generates token ids [B, max_length + 2]
    padded with -1.

    A LLaVA-style assistant (decoder-only, the image's tokens inside the prompt) is asked through its processor:
    the text input (or `prompt`) is the user's turn beside the image, wrapped by the processor's chat template; it
    learns to write the target after that prompt (the prompt's positions carry no loss), and what it generates
    after the prompt is the prediction."""

    def __init__(self, source: str, kinds: dict[str, str], max_length: int, from_config: bool = False,
                 prompt: str | None = None) -> None:
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
        self.assistant = is_assistant(config) and "image" in self.kinds.values()
        self.prompt, self.processor = prompt, None
        if prompt is not None and not self.assistant:
            raise RecipeError("field `target.options.prompt`: a prompt is for a LLaVA-style assistant (a decoder-only "
                              f"model that takes an image input); '{source}' is not one")
        if self.assistant:
            self.processor = load_processor(source)
            texts = [n for n, k in self.kinds.items() if k == "text"]
            if len(texts) > 1 or sorted(set(self.kinds.values()) - {"text"}) != ["image"] or \
                    sum(k == "image" for k in self.kinds.values()) != 1:
                raise RecipeError(f"an assistant such as '{source}' takes one image and at most one text input; "
                                  f"got {self.kinds}")
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
            if kind == "text" and self.assistant:
                tok = self.processor.tokenizer
                ids, mask = mb.data[mb.index], mb.mask[mb.index]
                out["text"] = [tok.decode(row[m].tolist(), skip_special_tokens=True).strip()  # type: ignore
                               for row, m in zip(ids, mask)]
            elif kind == "image":
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

    def chat_inputs(self, batch: Batch) -> dict[str, Tensor]:
        """The processor's inputs for the rows: each row's prompt (its chat template over the image and the user's
        text) with the image's tokens in place, left-padded, and the pixels as normalised here."""
        parts = self.model_inputs(batch)
        pixels = parts["pixel_values"]
        questions = parts.get("text") or [""] * pixels.shape[0]
        proc = self.processor
        prompts = []
        for q in questions:
            request = self.prompt.replace("{text}", q) if self.prompt is not None else (q or "Describe the image.")
            if getattr(proc, "chat_template", None):
                turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request}]}]
                prompts.append(proc.apply_chat_template(turn, add_generation_prompt=True))
            else:
                prompts.append(f"{proc.image_token}\n{request}")
        proc.tokenizer.padding_side = "left"
        inputs = proc(images=list(pixels.cpu()), text=prompts, padding=True, return_tensors="pt", do_resize=False,
                      do_center_crop=False, do_rescale=False, do_normalize=False, do_convert_rgb=False)
        return {k: v.to(pixels.device) for k, v in inputs.items()}

    def chat_loss(self, batch: Batch, target: Tensor) -> Tensor:
        """The assistant's loss on writing each row's target (and its end token) after the row's prompt."""
        inputs = self.chat_inputs(batch)
        tok = self.processor.tokenizer
        skip = set(tok.all_special_ids)
        eos = tok.eos_token_id if tok.eos_token_id is not None else self.model.generation_config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        rows = []
        for prompt, keep, answer in zip(inputs["input_ids"], inputs["attention_mask"], target.tolist()):
            said = [t for t in answer if t >= 0 and t not in skip] + ([eos] if eos is not None else [])
            rows.append((prompt[keep.bool()].tolist(), said))
        width = max(len(p) + len(a) for p, a in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (p, a) in enumerate(rows):  # left-padded, as the prompts are for generation
            n = len(p) + len(a)
            ids[i, width - n:] = torch.tensor(p + a)
            attention[i, width - n:] = 1
            labels[i, width - len(a):] = torch.tensor(a, dtype=torch.long)
        device = inputs["input_ids"].device
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        return self.model(input_ids=ids.to(device), attention_mask=attention.to(device), labels=labels.to(device),
                          **extra).loss

    def loss(self, batch: Batch, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        if self.assistant:
            return self.chat_loss(batch, target)
        labels = target.masked_fill(target < 0, -100)
        return self.model(**self.model_inputs(batch), labels=labels).loss

    def forward(self, batch: Batch) -> Tensor:
        beam = self.beam if not self.training else 1
        inputs = self.chat_inputs(batch) if self.assistant else self.model_inputs(batch)
        ids = self.model.generate(**inputs, max_new_tokens=self.max_length, num_beams=beam, do_sample=False)
        if self.assistant:  # a decoder-only model writes after its prompt
            ids = ids[:, inputs["input_ids"].shape[1]:]
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
        if self.processor is not None:
            self.processor.save_pretrained(str(target))


def load_processor(source: str) -> Any:
    """An assistant's processor (its tokenizer, image settings and chat template), from the generator's files."""
    from transformers import AutoProcessor

    try:
        proc = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise RecipeError(f"cannot load the processor of the assistant '{source}': {e}") from None
    if not hasattr(proc, "image_token") or not hasattr(proc, "tokenizer"):
        raise RecipeError(f"the assistant '{source}' has no processor that puts an image into its prompt "
                          "(processor_config.json with an image_token)")
    return proc
