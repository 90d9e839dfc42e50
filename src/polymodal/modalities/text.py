"""Text: a string, or a path to a .txt file. Tokenised by a vocabulary learnt from the training text, or by a
pretrained Hugging Face tokenizer when the encoder is pretrained."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable

import torch
from pydantic import Field
from torch import Tensor

from .. import render
from ..errors import BadInput, RecipeError
from .base import MODALITIES, Drawn, Modality, ModalityConfig, resolve
from .corruptions import corruption

PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"


LANGUAGE_WORDS = 1000  # distinct words in a column's first values from which its text is taken for natural language


def looks_like_language(values: list[Any], sample: int = 2000) -> bool:
    """Whether a column's text is natural language (posts, captions, tickets: what sentence encoders were trained
    on) rather than a closed vocabulary (commands, generated questions, codes): LANGUAGE_WORDS or more distinct
    lower-cased words in its first `sample` values."""
    import re

    words: set[str] = set()
    for v in values[:sample]:
        if isinstance(v, str):
            words.update(re.findall(r"\w+", v.lower()))
            if len(words) >= LANGUAGE_WORDS:
                return True
    return False


class TextConfig(ModalityConfig):
    max_length: int = Field(64, ge=2, description="Tokens kept per text, [CLS] included (longer texts are "
                            "truncated).")
    vocab_size: int = Field(20000, ge=8, description="Largest learnt vocabulary (most frequent words first).")
    min_frequency: int = Field(1, ge=1, description="Words seen fewer times in training map to [UNK].")
    lowercase: bool = Field(True, description="Lower-case text before tokenising (learnt vocabulary only).")
    tokenizer: str | None = Field(
        None, description="A Hugging Face tokenizer (hub id or local directory); set from a pretrained encoder.")


@MODALITIES.register("text")
class TextModality(Modality):
    Config = TextConfig
    default_encoder = "text_transformer"
    suffixes = (".txt",)
    plain_values = True
    config: TextConfig

    def __init__(self, config: TextConfig) -> None:
        super().__init__(config)
        self.tokenizer = None  # tokenizers.Tokenizer (learnt) or a transformers tokenizer (pretrained)

    def key(self, value: Any, base_dir: Path) -> Hashable | None:
        return ("text", value) if isinstance(value, str) else None

    def opened_path(self, value: Any, base_dir: Path) -> Path | None:
        """A string ending in .txt (one line) names a text file; other strings are the text."""
        if isinstance(value, str) and value.endswith(".txt") and "\n" not in value:
            return resolve(value, base_dir)
        return None

    def decode(self, value: Any, base_dir: Path) -> str:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        path = self.opened_path(value, base_dir)
        if path is not None:
            if path.is_file():
                try:
                    return path.read_text(encoding="utf-8", errors="replace")
                except OSError as e:
                    raise BadInput(f"cannot read text file {path}: {e}") from None
        if isinstance(value, (str, int, float)):
            return str(value)
        raise BadInput(f"expected a string or a .txt path, got {type(value).__name__}")

    def placeholder(self) -> str:
        return ""

    def fit(self, items: list[str]) -> None:
        if self.config.tokenizer:
            self._load_pretrained(self.config.tokenizer)
            return
        from tokenizers import Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordLevel
        from tokenizers.trainers import WordLevelTrainer

        tok = Tokenizer(WordLevel(unk_token=UNK))
        norms = [normalizers.NFKC()] + ([normalizers.Lowercase()] if self.config.lowercase else [])
        tok.normalizer = normalizers.Sequence(norms)
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = WordLevelTrainer(
            vocab_size=self.config.vocab_size, min_frequency=self.config.min_frequency, special_tokens=[PAD, UNK, CLS]
        )
        tok.train_from_iterator(items, trainer=trainer)
        self._finish(tok)

    def _finish(self, tok: Any) -> None:
        from tokenizers import processors

        cls_id = tok.token_to_id(CLS)
        tok.post_processor = processors.TemplateProcessing(single=f"{CLS} $A", special_tokens=[(CLS, cls_id)])
        tok.enable_truncation(self.config.max_length)
        self.tokenizer = tok

    def _load_pretrained(self, source: str) -> None:
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise RecipeError(f"cannot load the tokenizer of '{source}': {e}") from None

    @property
    def pretrained(self) -> bool:
        return bool(self.config.tokenizer)

    def save_files(self, directory: Path, prefix: str) -> None:
        if self.pretrained:
            self.tokenizer.save_pretrained(str(directory / f"{prefix}tokenizer"))
        else:
            (directory / f"{prefix}tokenizer.json").write_text(self.tokenizer.to_str(), encoding="utf-8")

    def load_files(self, directory: Path, prefix: str) -> None:
        if self.pretrained:
            self._load_pretrained(str(directory / f"{prefix}tokenizer"))
        else:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(directory / f"{prefix}tokenizer.json"))

    def collate(self, items: list[str]) -> tuple[Tensor, Tensor]:
        if self.pretrained:
            enc = self.tokenizer(
                items, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
            )
            ids, mask = enc["input_ids"], enc["attention_mask"].bool()
            if ids.shape[1] == 0:  # a tokenizer that adds no special tokens, on empty text
                ids, mask = torch.zeros(len(items), 1, dtype=torch.long), torch.ones(len(items), 1, dtype=torch.bool)
            return ids, mask
        seqs = self._ids(items)
        length = max(len(x) for x in seqs)
        # one tensor from padded lists ([PAD] is id 0): a copy per row costs more than the model's step on short text
        ids = torch.tensor([x + [0] * (length - len(x)) for x in seqs], dtype=torch.long)
        mask = torch.arange(length) < torch.tensor([len(x) for x in seqs])[:, None]
        return ids, mask

    def _ids(self, items: list[str]) -> list[list[int]]:
        """Token ids per text, remembered (templated text repeats: a VQA question set has few distinct texts)."""
        cache = self.__dict__.setdefault("_cache", {})
        todo = [t for t in dict.fromkeys(items) if t not in cache]
        if todo:
            if len(cache) > 200_000:
                cache.clear()
            self.tokenizer.no_padding()
            for text, enc in zip(todo, self.tokenizer.encode_batch(todo)):
                cache[text] = enc.ids
        return [cache[t] for t in items]

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text, as the encoder sees them (for explanations)."""
        ids = self.collate([text])[0][0].tolist()
        return self.id_tokens(ids)

    def id_tokens(self, ids: list[int]) -> list[str]:
        if self.pretrained:
            return self.tokenizer.convert_ids_to_tokens(ids)
        return [self.tokenizer.id_to_token(i) for i in ids]

    def draw_attribution(self, name: str, value: Tensor, attr: Tensor, mask: Tensor | None, out: Path) -> Drawn:
        """Words coloured by their attribution (per token)."""
        ids = value[mask] if mask is not None else value
        tokens = self.id_tokens(ids.tolist())
        return Drawn(section=(f"{name}: words", f"<p>{render.text_html(tokens, attr[:len(tokens)])}</p>"),
                     tokens=list(zip(tokens, attr[:len(tokens)].tolist())))

    def describe(self) -> dict:
        size = len(self.tokenizer) if self.pretrained else self.tokenizer.get_vocab_size()
        return {"vocab_size": size, "max_length": self.config.max_length}


# -- corruptions -----------------------------------------------------------------------------------
QWERTY = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
_POS = {ch: (r, c) for r, row in enumerate(QWERTY) for c, ch in enumerate(row)}


def _neighbours(ch: str) -> str:
    if ch.lower() not in _POS:
        return ch
    r, c = _POS[ch.lower()]
    near = [QWERTY[rr][cc] for rr in (r - 1, r, r + 1) for cc in (c - 1, c, c + 1)
            if 0 <= rr < 3 and 0 <= cc < len(QWERTY[rr]) and (rr, cc) != (r, c)]
    return "".join(near)


def _per_word(text: str, s: float, rng, edit) -> str:
    words = text.split(" ")
    return " ".join(edit(w) if len(w) > 1 and rng.random() < s else w for w in words)


@corruption(TextModality, "swap")
def text_swap(text: str, s: float, rng) -> str:
    """In a fraction `s` of words, two adjacent characters swapped."""
    def edit(w):
        i = int(rng.integers(0, len(w) - 1))
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]
    return _per_word(text, s, rng, edit)


@corruption(TextModality, "typo")
def text_typo(text: str, s: float, rng) -> str:
    """In a fraction `s` of words, one character replaced by a QWERTY neighbour."""
    def edit(w):
        i = int(rng.integers(0, len(w)))
        near = _neighbours(w[i])
        return w[:i] + near[int(rng.integers(0, len(near)))] + w[i + 1:] if near != w[i] else w
    return _per_word(text, s, rng, edit)


@corruption(TextModality, "omission")
def text_omission(text: str, s: float, rng) -> str:
    """In a fraction `s` of words, one character deleted."""
    def edit(w):
        i = int(rng.integers(0, len(w)))
        return w[:i] + w[i + 1:]
    return _per_word(text, s, rng, edit)


@corruption(TextModality, "word_dropout")
def text_word_dropout(text: str, s: float, rng) -> str:
    """A fraction `s` of words removed."""
    return " ".join(w for w in text.split(" ") if rng.random() >= s)
