"""Text outputs from any inputs: speech recognition, lip reading, audio-visual speech recognition, captioning,
answers in words.

Two decoders over the encoders' tokens:
- `ctc` for inputs aligned in time with the words (audio, video, signals): every input's tokens are pooled to the
  time steps of one input (`align_to`; lips at 25 fps, audio frames averaged to the same rate), fused frame by frame
  (concatenated, projected), a bidirectional GRU reads the fused frames and a CTC head gives each step's token.
  An absent input contributes its learnt "missing" vector at every step (modality dropout trains that path).
- `attention`: a transformer decoder that cross-attends to every input's tokens (each marked with its input's
  embedding) and writes the text token by token.
Decoding: greedy, or beam search (`beam`). Tokens: characters or words learnt from the training text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ..errors import PolymodalError, RecipeError
from ..fusion import FUSIONS
from ..registry import validate_config
from ..types import Batch, Encoded, member_inputs, reading_members, restrict_batch
from .base import TASKS, StepRNG, Task, TaskConfig, TrainingPlan, present_weights
from .text_decoding import WordModel, beam_search, ctc_decode, ctc_decode_rescored
from .text_metrics import CharErrorRate, ExactMatch, WordErrorRate, edit_distance, text_scores, word_errors

PAD, BOS, EOS, UNK = 0, 1, 2, 3  # PAD is also the CTC blank
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
TIME_ALIGNED = {"audio", "video", "signal"}
DISTILL_NEEDS = ("target.options.distill_from needs a CTC head per input: a ctc decoder over 2 or more inputs with "
                 "model.unimodal_heads > 0")


class TextConfig(TaskConfig):
    decoder: Literal["auto", "ctc", "attention", "pretrained"] = Field(
        "auto", description="ctc: per-step tokens for inputs aligned in time with the words (speech, lips); "
        "attention: a transformer decoder over every input's tokens (captions, answers); pretrained: the Hugging Face "
        "generator named by `model` writes the text. auto: pretrained when `model` is set, else ctc when every input "
        "is audio, video or a signal, else attention.")
    model: str | None = Field(None, description="A Hugging Face generator (local directory or hub id): "
                              "VisionEncoderDecoder or BLIP (captions), BLIP question answering (image + question), "
                              "Whisper (speech), any encoder-decoder taking pixel_values / input_ids / "
                              "input_features, or a decoder-only image-text-to-text assistant (LLaVA-style: its "
                              "processor puts the image's tokens into a chat prompt). training.epochs: 0 scores it "
                              "zero-shot; more fine-tunes it.")
    prompt: str | None = Field(None, description="A LLaVA-style assistant's request, the user's turn beside the "
                               "image; `{text}` stands for the text input (the question). Default: the text input "
                               "itself, or 'Describe the image.' when there is none. The assistant's chat template "
                               "wraps it.")
    unit: Literal["char", "word", "subword"] = Field(
        "char", description="Output tokens: characters, whole words (a closed vocabulary: words unseen in training "
        "come out as <unk>), or a pretrained tokenizer's pieces (`tokenizer`; an open vocabulary with short "
        "sequences, for captions and answers).")
    tokenizer: str = Field("all-minilm-l6-v2", description="unit subword: the pretrained tokenizer (a local "
                           "directory, a hub id, or a shipped short name: all-minilm-l6-v2's WordPiece, offline). "
                           "The model directory keeps a copy.")
    lowercase: bool = Field(False, description="Lower-case the target text before learning its tokens.")
    align_to: str | None = Field(None, description="ctc: the input whose time steps are the output steps "
                                 "(default: the video input if there is one, else the first input).")
    layers: int = Field(2, ge=1, description="GRU layers (ctc) or transformer decoder layers (attention).")
    heads: int = Field(4, ge=1, description="Attention heads of the decoder.")
    dropout: float = Field(0.1, ge=0, lt=1)
    beam: int = Field(1, ge=1, description="Beam width for predict and evaluate (1: greedy). Validation during "
                      "training decodes greedily.")
    lexicon: bool = Field(False, description="ctc over characters, beam > 1: the search spells only words seen in "
                          "the training texts (a closed vocabulary: commands, fixed grammars).")
    grammar: bool = Field(False, description="ctc over characters, beam > 1, with lexicon: only word pairs seen in "
                          "the training texts may follow each other, and a text ends only on a word some training "
                          "text ends on (a fixed grammar such as GRID's: a letter always follows the preposition).")
    lm_weight: float = Field(0.0, ge=0, description="ctc over characters, beam > 1: weight of a word bigram model of "
                             "the training texts (add-one smoothing) in the search's score; 0: off.")
    distill_from: str | None = Field(
        None, description="ctc with a head per input (2+ inputs, model.unimodal_heads): the input whose own head "
        "teaches the other inputs' heads step by step while training: each learns, besides the text, the teacher "
        "head's token distribution at every step (KL divergence, on rows that have both inputs; the teacher is not "
        "changed by it). Cross-modal distillation: audio that a model reads well tells the lips' head what is said "
        "when, so a model trained on both reads the lips alone better. Inference does not need the teacher input.")
    distill_weight: float = Field(1.0, ge=0, description="Weight of the distillation loss (`distill_from`) beside "
                                  "the CTC losses.")
    distill_augmented: bool = Field(False, description="`distill_from` with `training.augment`: whether the teacher "
                                    "also teaches on rows whose teacher input augmentation corrupted (a noisy audio "
                                    "track's head is a wrong teacher for the lips; off: those rows train every head "
                                    "on the text, and the teacher teaches only from its uncorrupted rows).")
    read_by: Literal["fused", "confident", "rescore"] = Field(
        "fused", description="ctc with a head per input (2+ inputs, model.unimodal_heads): which head reads a row "
        "that has every input. fused: the fused head; confident: whichever of the fused head and the inputs' own "
        "heads is surest of its best path (the mean over its steps of the largest log-probability), so a clean "
        "audio track is read by the audio's head and a noisy one by the fused head; rescore: every head that may "
        "read the row (the fused one and each present input's own) proposes a text with its search, and the text "
        "with the highest mean log-likelihood over those heads (each summed over its alignments, plus the word "
        "model's score) is kept: evidence from the lips and from a noisy audio track multiplied, not picked.")
    search: Literal["fixed", "validation"] = Field(
        "fixed", description="ctc over characters: fixed: the search the fields above set; validation: after training "
        "the search that gives the lowest WER on the validation rows is chosen and kept (greedy, or a beam of "
        "`beam` (8 when 1) held to the training words, or to their word pairs, with the word bigram at weights "
        "0, 0.5, 1 and 2; with a CTC head per input, each of those read by the fused head, the surest one, or "
        "every head rescored). `metrics.training.decoding` lists what each scored.")
    combine: Literal["mean", "rescore"] = Field(
        "rescore", description="ctc with training.ensemble: rescore: each member's search (and the mean's) proposes "
        "a text and the one the members find most likely (the mean of their log-likelihoods, each summed over its "
        "alignments, plus the word model's score) is kept; mean: the members' per-step token probabilities are "
        "averaged and one search reads them (members whose CTC spikes fall on neighbouring steps blur into the "
        "blank). With `search: validation` both are tried.")
    neighbours: bool = Field(
        False, description="ctc with a text kept by rescoring (read_by: rescore, or an ensemble's combine: rescore), "
        "beam > 1 and lexicon: also weigh the kept text's one-word changes that the lexicon (and grammar) allows, "
        "scored the same way, and keep the likeliest, until it stays: a word that no head's search spelt first (a "
        "letter the noisy audio and the lips each rank second) is still weighed. With `search: validation` both "
        "are tried.")
    max_length: int | None = Field(None, ge=1, description="Most tokens a prediction has (default: 1.5 x the longest "
                                   "training text, plus 4).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="attention: cross-entropy label smoothing.")


def clean_text(text: Any, lowercase: bool = False) -> str:
    """A target text with single spaces (lower-cased on request); ValueError for a value that is not text."""
    if isinstance(text, (dict, list, tuple, set)) or isinstance(text, bool):
        raise ValueError(f"a text target is a string, got {type(text).__name__} {text!r}")
    text = " ".join(str(text).split())
    return text.lower() if lowercase else text


class Vocabulary:
    """Characters or words, learnt from the training text; ids 0-3 are pad/blank, start, end and unknown."""

    def __init__(self, unit: str, lowercase: bool, tokens: list[str] | None = None) -> None:
        self.unit, self.lowercase = unit, lowercase
        self.tokens = list(tokens or [])
        self.index = {t: i + len(SPECIALS) for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.tokens)

    def clean(self, text: Any) -> str:
        return clean_text(text, self.lowercase)

    def units(self, text: Any) -> list[str]:
        text = self.clean(text)
        return list(text) if self.unit == "char" else text.split()

    def learn(self, texts: list[Any]) -> None:
        seen = sorted({u for t in texts for u in self.units(t)})
        self.tokens = seen
        self.index = {t: i + len(SPECIALS) for i, t in enumerate(seen)}

    def encode(self, text: Any) -> list[int]:
        return [self.index.get(u, UNK) for u in self.units(text)]

    def decode(self, ids: list[int]) -> str:
        parts = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                parts.append(self.tokens[i - len(SPECIALS)])
            elif i == UNK:
                parts.append("<unk>")
        return ("" if self.unit == "char" else " ").join(parts)


TOKENIZER_DIR = "target_tokenizer"


class SubwordVocabulary:
    """A pretrained tokenizer's pieces as output tokens for the decoders trained here: its ids shifted past
    polymodal's four special ids (pad/blank, start, end, unknown), its own special tokens left out."""

    unit = "subword"

    def __init__(self, source: str, lowercase: bool) -> None:
        from transformers import AutoTokenizer

        from ..encoders.pretrained import resolve_source

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolve_source(source))
        except (OSError, ValueError) as e:
            raise RecipeError(f"field `target.options.tokenizer`: cannot load the tokenizer '{source}': {e}") from None
        self.lowercase = lowercase
        self.tokens: list[str] = []  # the tokenizer's files hold them (saved beside the weights)
        self.special = set(self.tokenizer.all_special_ids)

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.tokenizer)

    def clean(self, text: Any) -> str:
        return clean_text(text, self.lowercase)

    def units(self, text: Any) -> list[int]:
        return self.encode(text)

    def learn(self, texts: list[Any]) -> None:
        """Nothing to learn: the pieces are the tokenizer's."""

    def encode(self, text: Any) -> list[int]:
        ids = self.tokenizer(self.clean(text), add_special_tokens=False).input_ids
        return [i + len(SPECIALS) for i in ids if i not in self.special]

    def decode(self, ids: list[int]) -> str:
        ended = ids.index(EOS) if EOS in ids else len(ids)
        pieces = [i - len(SPECIALS) for i in ids[:ended] if i >= len(SPECIALS)]
        return self.tokenizer.decode(pieces, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()


def pool_to(tokens: Tensor, lengths: Tensor, target: Tensor, steps: int) -> Tensor:
    """Resample each row's first lengths[b] tokens to target[b] steps (of `steps` in all) by averaging the tokens
    that fall in each step's window (or repeating the nearest when there are fewer tokens than steps)."""
    b, _, d = tokens.shape
    cum = torch.cat([tokens.new_zeros(b, 1, d), tokens.float().cumsum(1)], 1)  # [B, T+1, D]
    j = torch.arange(steps, device=tokens.device)[None].float()
    n, m = lengths[:, None].float(), target[:, None].float().clamp_min(1)
    start = torch.floor(j * n / m).long().clamp(max=lengths[:, None] - 1)
    end = torch.maximum(torch.floor((j + 1) * n / m).long().clamp(max=lengths[:, None]), start + 1)
    total = cum.gather(1, end[..., None].expand(-1, -1, d)) - cum.gather(1, start[..., None].expand(-1, -1, d))
    return (total / (end - start)[..., None]).to(tokens.dtype)


def distill_divergence(teacher: tuple[Tensor, Tensor], student: tuple[Tensor, Tensor], rows: Tensor) -> Tensor:
    """Mean over `rows` of KL(teacher || student) per output step: each head's (log-probabilities [B, T, V], steps
    [B]); the teacher's steps are resampled to the student's (averaged probabilities) when their rates differ, and
    the teacher gets no gradient. 0 (with a graph) when no row has both."""
    (t_lp, t_steps), (s_lp, s_steps) = teacher, student
    probs = t_lp.detach().exp()
    if not torch.equal(t_steps, s_steps) or probs.shape[1] != s_lp.shape[1]:
        probs = pool_to(probs, t_steps.clamp_min(1), s_steps, s_lp.shape[1])
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)
    valid = torch.arange(s_lp.shape[1], device=s_lp.device)[None] < s_steps[:, None]  # [B, T]
    per_step = (probs * (probs.clamp_min(1e-12).log() - s_lp)).sum(-1)  # [B, T]
    per_row = (per_step * valid).sum(1) / s_steps.clamp_min(1)
    used = rows.float()
    return (per_row * used).sum() / used.sum().clamp_min(1)


class CTCHead(nn.Module):
    """Frame-by-frame fusion of time-aligned inputs, a bidirectional GRU and per-step token scores."""

    def __init__(self, names: list[str], align_to: str, dim: int, vocab: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.names, self.align_to = list(names), align_to
        self.proj = nn.Sequential(nn.Linear(len(names) * dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.rnn = nn.GRU(dim, dim // 2, layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(2 * (dim // 2), vocab)
        # steps of `align_to` per token of each input, learnt from training rows that have both (used when the
        # reference input is absent and the row's length must come from another input)
        self.register_buffer("ratio", torch.zeros(len(names)))

    def steps(self, encoded: dict[str, Encoded]) -> Tensor:
        """Output steps per row: the reference input's length, or another present input's scaled by the ratio."""
        ref = encoded[self.align_to]
        ref_len = ref.mask.sum(1)
        lengths = ref_len.clone()
        have = ref.present.clone()
        for i, name in enumerate(self.names):
            enc = encoded[name]
            n = enc.mask.sum(1)
            if self.training and name != self.align_to:
                both = ref.present & enc.present
                if bool(both.any()):
                    r = (ref_len[both].float() / n[both].float()).mean().detach()
                    self.ratio[i] = r if self.ratio[i] == 0 else 0.9 * self.ratio[i] + 0.1 * r
            if name == self.align_to:
                continue
            fill = ~have & enc.present
            if bool(fill.any()):
                if float(self.ratio[i]) <= 0:
                    raise PolymodalError(f"input '{self.align_to}' is absent and the model never saw it beside "
                                         f"'{name}' in training, so it cannot tell the output length")
                lengths = torch.where(fill, (n.float() * self.ratio[i]).round().long().clamp_min(1), lengths)
                have = have | fill
        return lengths.clamp_min(1)

    def forward(self, encoded: dict[str, Encoded]) -> tuple[Tensor, Tensor]:
        lengths = self.steps(encoded)
        steps = int(lengths.max())
        frames = [pool_to(encoded[n].tokens, encoded[n].mask.sum(1).clamp_min(1), lengths, steps) for n in self.names]
        x = self.proj(torch.cat(frames, -1))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
        return self.out(out).float().log_softmax(-1), lengths


class AttentionDecoder(nn.Module):
    """A transformer decoder cross-attending to the fused representation (the recipe's fusion, one token: where
    the inputs' interactions are, as a classifier's head sees them) and to every input's tokens."""

    def __init__(self, names: list[str], dim: int, vocab: int, layers: int, heads: int, dropout: float,
                 max_length: int, fusion: nn.Module) -> None:
        super().__init__()
        self.names = list(names)
        self.fusion = fusion
        self.fused = nn.Linear(fusion.out_dim, dim)
        self.source = nn.Embedding(len(names), dim)
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(max_length + 2, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)

    def memory(self, encoded: dict[str, Encoded]) -> tuple[Tensor, Tensor]:
        """Every input's tokens side by side (an absent input: its one "missing" token) and their padding mask."""
        fused = self.fused(self.fusion(encoded).pooled)[:, None]
        tokens = [fused] + [encoded[n].tokens + self.source.weight[i] for i, n in enumerate(self.names)]
        masks = [torch.ones_like(fused[..., 0], dtype=torch.bool)] + [encoded[n].mask for n in self.names]
        return torch.cat(tokens, 1), ~torch.cat(masks, 1)

    def forward(self, memory: Tensor, padding: Tensor, ids: Tensor) -> Tensor:
        """Next-token log-probabilities at every position of `ids` [B, L] (causal)."""
        length = ids.shape[1]
        x = self.embed(ids) + self.position.weight[:length]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=ids.device), 1)
        h = self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=padding)
        return self.out(self.norm(h)).float().log_softmax(-1)


class TextNet(nn.Module):
    """Encoders -> a CTC head or an attention decoder. `forward` decodes: token ids [B, max_length] (0-padded)."""

    def __init__(self, encoders: dict[str, nn.Module], head: nn.Module, max_length: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = head
        self.max_length = max_length
        self.beam = 1
        self.words: WordModel | None = None  # the CTC search's lexicon and word model
        self.chars: list[str | None] | None = None  # each token id's character
        # with 2+ inputs and a CTC head: each input's own CTC head (training: auxiliary losses, so no input is left
        # to lean on the other; with alone_by_head, a row with one input left is read by that input's head)
        self.aux: nn.ModuleDict | None = None
        self.alone_by_head = False
        self.read_by = "fused"  # "confident": read by the surest head; "rescore": the heads' texts rescored by all
        self.neighbours = False  # rescore: the kept text's one-word changes weighed too
        self.distill_from: str | None = None  # the input whose head teaches the others' heads (training only)
        self.distill_augmented = False  # whether it teaches on rows where augmentation corrupted its input

    def encode(self, batch: Batch) -> dict[str, Encoded]:
        return {name: enc(batch[name]) for name, enc in self.encoders.items()}

    def loss(self, batch: Batch, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        return self.losses(batch, target, label_smoothing)[0]

    def losses(self, batch: Batch, target: Tensor,
               label_smoothing: float = 0.0) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The loss; the mean over inputs of each auxiliary CTC head's loss on the rows that have its input (None
        without auxiliary heads); the distillation loss of the other inputs' heads from `distill_from`'s (None
        without a teacher input)."""
        encoded = self.encode(batch)
        main = self._loss(encoded, target, label_smoothing)
        if self.aux is None:
            return main, None, None
        lengths = (target != PAD).sum(1)
        names = list(self.aux)
        weights = present_weights([encoded[n].present for n in names], len(target))
        parts, heads = [], {}
        for n, w in zip(names, weights):
            p = encoded[n].present
            if w == 0:  # no process has this input in the batch
                continue
            log_probs, steps = heads[n] = self.aux[n](encoded)
            per_row = F.ctc_loss(log_probs.transpose(0, 1), target, steps, lengths, blank=PAD, reduction="none",
                                 zero_infinity=True) / lengths.clamp_min(1)
            parts.append((per_row * p).sum() * w)  # the mean over present rows (0 where this process has none)
        distill = None
        if self.distill_from is not None and self.distill_from in heads:
            teacher = heads[self.distill_from]
            rows = encoded[self.distill_from].present
            corrupted = batch[self.distill_from].augmented
            if corrupted is not None and not self.distill_augmented:
                rows = rows & ~corrupted
            kl = [distill_divergence(teacher, heads[n], rows & encoded[n].present)
                  for n in heads if n != self.distill_from]
            distill = torch.stack(kl).mean() if kl else None
        return main, (torch.stack(parts).mean() if parts else None), distill

    def _loss(self, encoded: dict[str, Encoded], target: Tensor, label_smoothing: float) -> Tensor:
        lengths = (target != PAD).sum(1)
        if isinstance(self.head, CTCHead):
            log_probs, steps = self.head(encoded)
            short = steps < lengths
            if int(short.sum()) * 2 > len(short):
                raise PolymodalError(
                    f"the CTC head has {int(steps[short][0])} steps for a text of {int(lengths[short][0])} tokens "
                    f"({int(short.sum())} of {len(short)} rows in a batch are too short): input "
                    f"'{self.head.align_to}' sets the steps and its encoder reduces time too much (give its encoder "
                    "fewer blocks, set target.options.align_to to another input, or use unit: word)")
            return F.ctc_loss(log_probs.transpose(0, 1), target, steps, lengths, blank=PAD, zero_infinity=True)
        memory, padding = self.head.memory(encoded)
        rows = torch.arange(len(target), device=target.device)
        inp = torch.cat([torch.full_like(target[:, :1], BOS), target], 1)[:, :self.max_length + 1]
        out = torch.cat([target, torch.zeros_like(target[:, :1])], 1)
        out[rows, lengths] = EOS
        out = out[:, :self.max_length + 1]
        logp = self.head(memory, padding, inp)
        return F.nll_loss(logp.transpose(1, 2), out, ignore_index=PAD) if label_smoothing == 0 else \
            F.cross_entropy(logp.transpose(1, 2), out, ignore_index=PAD, label_smoothing=label_smoothing)

    def decode_ids(self, batch: Batch, beam: int) -> list[list[int]]:
        encoded = self.encode(batch)
        if isinstance(self.head, CTCHead):
            log_probs, steps = self.head(encoded)
            if self.aux is not None and self.read_by in ("confident", "rescore"):
                read = self._confident if self.read_by == "confident" else self._rescore
                return [seq[:self.max_length] for seq in read(encoded, log_probs, steps, beam)]
            seqs = ctc_decode(log_probs, steps, beam, self.words, self.chars)
            if self.aux is not None and self.alone_by_head:
                present = torch.stack([encoded[n].present for n in self.aux], 1)  # [B, inputs]
                for i, n in enumerate(self.aux):
                    alone = (present[:, i] & (present.sum(1) == 1)).nonzero().flatten().tolist()
                    if alone:  # rows with this input only: its own head reads them
                        own = ctc_decode(*self.aux[n](encoded), beam, self.words, self.chars)
                        for row in alone:
                            seqs[row] = own[row]
            return [seq[:self.max_length] for seq in seqs]
        memory, padding = self.head.memory(encoded)
        rows = memory.shape[0]

        def step(seqs: Tensor, origin: Tensor) -> Tensor:
            return self.head(memory[origin], padding[origin], seqs)[:, -1]

        return beam_search(step, rows, BOS, EOS, self.max_length, beam, memory.device)

    def _heads(self, encoded: dict[str, Encoded], log_probs: Tensor,
               steps: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(log-probabilities, steps, which rows it may read) of the fused head and of each input's own head: the
        fused head reads every row (with alone_by_head, those with 2+ inputs), an input's head the rows that have it."""
        assert self.aux is not None
        present = torch.stack([encoded[n].present for n in self.aux], 1)  # [B, inputs]
        fused_reads = present.sum(1) > 1 if self.alone_by_head else torch.ones_like(present[:, 0])
        return [(log_probs, steps, fused_reads)] + [(*self.aux[n](encoded), present[:, i])
                                                    for i, n in enumerate(self.aux)]

    def _rescore(self, encoded: dict[str, Encoded], log_probs: Tensor, steps: Tensor, beam: int) -> list[list[int]]:
        """Each row: every head that may read it proposes its search's text, and the text with the highest mean
        log-likelihood over those heads (plus the word model's score) is kept (`ctc_rescore`)."""
        heads = self._heads(encoded, log_probs, steps)
        may = torch.stack([m for _, _, m in heads], 1)  # [B, heads]
        seqs: list[list[int]] = [[] for _ in range(len(steps))]
        for pattern in torch.unique(may, dim=0):
            rows = (may == pattern).all(1).nonzero().flatten()
            used = [h for h in range(len(heads)) if bool(pattern[h])] or [0]
            outputs = [(heads[h][0][rows], heads[h][1][rows]) for h in used]
            for row, seq in zip(rows.tolist(), ctc_decode_rescored(outputs, beam, self.words, self.chars,
                                                                   neighbours=self.neighbours)):
                seqs[row] = seq
        return seqs

    def _confident(self, encoded: dict[str, Encoded], log_probs: Tensor, steps: Tensor, beam: int) -> list[list[int]]:
        """Each row read by the head (the fused one, or a present input's own) surest of its best path."""
        heads = self._heads(encoded, log_probs, steps)
        sureness = []
        for lp, st, may in heads:
            valid = torch.arange(lp.shape[1], device=lp.device)[None] < st[:, None]
            best = (lp.max(-1).values * valid).sum(1) / st.clamp_min(1)
            sureness.append(torch.where(may, best, torch.full_like(best, float("-inf"))))
        chosen = torch.stack(sureness, 1).argmax(1)
        seqs: list[list[int]] = [[] for _ in range(len(steps))]
        for h, (lp, st, _) in enumerate(heads):
            rows = (chosen == h).nonzero().flatten()
            if len(rows):
                for row, seq in zip(rows.tolist(), ctc_decode(lp[rows], st[rows], beam, self.words, self.chars)):
                    seqs[row] = seq
        return seqs

    def forward(self, batch: Batch) -> Tensor:
        ids = self.decode_ids(batch, self.beam if not self.training else 1)
        out = torch.zeros(len(ids), self.max_length)
        for i, seq in enumerate(ids):
            out[i, :len(seq)] = torch.tensor(seq[:self.max_length], dtype=torch.float32)
        return out.to(next(iter(batch.values())).present.device)


class CTCEnsembleNet(nn.Module):
    """CTC networks trained apart (training.ensemble) as one. combine "mean": at every step the members' token
    probabilities are averaged (each member's steps resampled to the first's where they differ), then one search
    reads the mean. combine "rescore": each member's search and the mean's propose a text, and the text with the
    highest mean log-likelihood over the members (each summed over its own alignments) plus the word model's
    score is kept: members whose CTC spikes fall on neighbouring steps agree on the text, not the step.
    A row left with one input is read, in each member, by that input's own head (as the member alone would).
    Members joined by `polymodal ensemble` may read different inputs (`views[m]` may hold member m to some of its
    own): each row is read from the members that see one of their inputs in it."""

    def __init__(self, members: list[TextNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.views: list[tuple[str, ...] | None] = [None] * len(members)
        self.rows = "all"  # or closest, widest, first (`reading_members`)
        first = members[0]
        self.max_length, self.beam, self.words, self.chars = first.max_length, first.beam, first.words, first.chars
        self.aux = None  # the members' own heads are read inside `log_probs`; there is no surest head to pick
        self.read_by = "fused"
        self.combine = "rescore"
        self.neighbours = False

    @property
    def encoders(self) -> nn.ModuleDict:
        return self.members[0].encoders

    @staticmethod
    def member_log_probs(member: TextNet, batch: Batch) -> tuple[Tensor, Tensor]:
        encoded = member.encode(batch)
        log_probs, steps = member.head(encoded)
        if member.aux is None or not member.alone_by_head:
            return log_probs, steps
        present = torch.stack([encoded[n].present for n in member.aux], 1)
        for i, n in enumerate(member.aux):
            alone = present[:, i] & (present.sum(1) == 1)
            if bool(alone.any()):
                own, own_steps = member.aux[n](encoded)
                width = max(log_probs.shape[1], own.shape[1])
                log_probs = F.pad(log_probs, (0, 0, 0, width - log_probs.shape[1]), value=0.0)
                own = F.pad(own, (0, 0, 0, width - own.shape[1]), value=0.0)
                log_probs = torch.where(alone[:, None, None], own, log_probs)
                steps = torch.where(alone, own_steps, steps)
        return log_probs, steps

    def member_outputs(self, batch: Batch) -> list[tuple[Tensor, Tensor]]:
        return [self.member_log_probs(m, restrict_batch(batch, v)) for m, v in zip(self.members, self.views)]

    def sees(self, batch: Batch) -> Tensor:
        """[B, M]: the members that read each row: those that see it (one of the inputs they read has a value in
        it), or with `rows: closest` / `widest` / `first` those of them that match it best (`reading_members`)."""
        return reading_members(batch, member_inputs(list(self.members), self.views), self.rows)

    def log_probs(self, batch: Batch, outputs: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
        """The log of the mean per-step token probabilities of the members that see each row, and the steps per
        row (of the first member that sees it)."""
        outputs = outputs or self.member_outputs(batch)
        weights = self.sees(batch).float()
        first_seeing = weights.argmax(1)
        steps = torch.stack([st for _, st in outputs], 1).gather(1, first_seeing[:, None]).squeeze(1)
        # the first member's width where it sees every row (as training.ensemble's members do), else the widest
        width = outputs[0][0].shape[1] if bool((first_seeing == 0).all()) else max(lp.shape[1] for lp, _ in outputs)
        total = 0.0
        for m, (lp, st) in enumerate(outputs):
            probs = lp.exp()
            if not torch.equal(st, steps) or probs.shape[1] != width:
                probs = pool_to(probs, st.clamp_min(1), steps, width)
            total = total + probs * weights[:, m, None, None]
        return (total / weights.sum(1)[:, None, None]).clamp_min(1e-30).log(), steps

    def decode_ids(self, batch: Batch, beam: int) -> list[list[int]]:
        outputs = self.member_outputs(batch)
        seqs = ctc_decode(*self.log_probs(batch, outputs), beam, self.words, self.chars)
        if self.combine == "rescore":
            seqs = ctc_decode_rescored(outputs, beam, self.words, self.chars, first=seqs, weights=self.sees(batch),
                                       neighbours=self.neighbours)
        return [seq[:self.max_length] for seq in seqs]

    forward = TextNet.forward

    def encode(self, batch: Any) -> Any:
        raise PolymodalError("an ensemble (training.ensemble) has no single network to look inside; train one member "
                             "(training.ensemble: 1) for gradient explanations")


@TASKS.register("text")
class TextTask(Task):
    Config = TextConfig
    config: TextConfig
    monitor, monitor_mode = "cer", "min"  # finer than WER early on (a sentence with one wrong letter per word)
    explained = "contribution to the text (1 - character edit distance to the full model's, over its length)"

    def __init__(self, config: TextConfig) -> None:
        super().__init__(config)
        self.vocab: Any = Vocabulary(config.unit, config.lowercase) if config.unit != "subword" else None
        self.max_length = config.max_length or 0
        self.generator_files: Path | None = None  # a loaded model's copy of the generator's files
        self.tokenizer_files: Path | None = None  # a loaded model's copy of the subword tokenizer
        self.words: WordModel | None = None
        self.chosen: dict | None = None  # the CTC search chosen on validation (search: validation)
        self.aux: bool | None = None  # auxiliary CTC heads: decided when the net is first built, then kept

    @property
    def pretrained(self) -> bool:
        return self.config.decoder == "pretrained" or (self.config.decoder == "auto" and bool(self.config.model))

    @property
    def target_pad(self) -> int:
        return getattr(self.vocab, "pad_id", PAD)

    def generator_source(self) -> str:
        if self.generator_files is not None:
            return str(self.generator_files)
        if not self.config.model:
            raise RecipeError("field `target.options.model`: decoder pretrained needs the generator's directory or "
                              "hub id")
        from ..encoders.pretrained import resolve_source

        return resolve_source(self.config.model)

    @classmethod
    def resolve_input(cls, kind: str, options: dict[str, Any], encoder: dict[str, Any], task_options: dict) -> None:
        """Defaults for a time-aligned input read by CTC (in place, only where the recipe is silent): video keeps
        every frame and gets the lip-reading encoder; audio log-mel goes through two conv blocks (25 steps a second,
        the rate of 25 fps lips)."""
        decoder = task_options.get("decoder", "auto")
        if task_options.get("model") and decoder in ("auto", "pretrained"):
            from ..encoders.pretrained import adjust_modality, resolve_source

            options.update(adjust_modality(kind, options, {"path": resolve_source(task_options["model"])}))
            return
        if decoder == "attention":
            return
        if kind == "video":
            options.setdefault("frames", "all")
            if not encoder.get("type"):
                encoder["type"] = "lip_cnn"
        elif kind == "audio" and not encoder.get("type") and options.get("features", "logmel") == "logmel":
            encoder.update(type="conv1d", channels=[128, 128])

    def training_plan(self, cfg: Any, inputs: int) -> TrainingPlan:
        # a pretrained generator needs every input (it has no "missing" path): no modality dropout
        return TrainingPlan(steps_per_call=cfg.steps_per_call,
                            modality_dropout=0.0 if self.pretrained else cfg.modality_dropout,
                            alone_scores=cfg.select == "robust" and inputs > 1 and not self.pretrained)

    # -- targets -----------------------------------------------------------------------------------------------------
    def check(self, value: Any) -> Any:
        clean_text(value)
        return value

    def fit(self, targets: list[Any]) -> None:
        if self.pretrained:
            from .text_pretrained import TokenizerVocabulary

            self.vocab = TokenizerVocabulary(self.generator_source())
        elif self.config.unit == "subword":
            self.vocab = SubwordVocabulary(self.config.tokenizer, self.config.lowercase)
        self.vocab.learn(targets)
        if len(self.vocab) <= len(SPECIALS):
            raise ValueError("the training texts are all empty")
        if not self.config.max_length:
            self.max_length = int(1.5 * max(len(self.vocab.units(t)) for t in targets)) + 4
        if self.config.grammar and not self.config.lexicon:
            raise RecipeError("field `target.options.grammar`: the grammar holds the search to the lexicon's words; "
                              "set `lexicon: true` too")
        searched = self.config.search == "validation"
        if self.config.neighbours and not searched and not (self.config.lexicon and self.config.beam > 1):
            raise RecipeError("field `target.options.neighbours`: the one-word changes are words of the lexicon, "
                              "weighed after a beam search; set `lexicon: true` and `beam` > 1 too (or `search: "
                              "validation`, which tries them where they apply)")
        if self.config.lexicon or self.config.lm_weight or searched:
            if self.vocab.unit != "char" or self.config.decoder not in ("auto", "ctc"):
                raise RecipeError("fields `target.options.lexicon`, `lm_weight` and `search` steer the CTC search "
                                  "over characters (unit: char, decoder: ctc)")
            self.words = WordModel.learn([self.vocab.clean(t) for t in targets], self.config.lexicon,
                                         self.config.lm_weight, self.config.grammar)
        self.chosen = None  # a search chosen on validation replaces the fixed one

    # -- the search chosen on validation -----------------------------------------------------------------------------
    LM_WEIGHTS = (0.0, 0.5, 1.0, 2.0)

    def decoding_candidates(self, net: nn.Module | None = None) -> list[dict]:
        """The CTC searches `search: validation` tries, the plainest first (ties go to it); an ensemble has no
        surest head to read by."""
        if self.config.search != "validation" or self.pretrained:
            return []
        beam = self.config.beam if self.config.beam > 1 else 8
        tried = [{"beam": 1, "lexicon": False, "grammar": False, "lm_weight": 0.0}]
        tried += [{"beam": beam, "lexicon": True, "grammar": g, "lm_weight": w} for g in (False, True)
                  for w in self.LM_WEIGHTS]
        if self.aux and not isinstance(net, CTCEnsembleNet):
            tried += [{**t, "read_by": r} for r in ("confident", "rescore") for t in tried]
        if isinstance(net, CTCEnsembleNet):
            tried = [{**t, "combine": c} for c in ("mean", "rescore") for t in tried]
        rescored = [t for t in tried if t["lexicon"] and "rescore" in (t.get("read_by"), t.get("combine"))]
        tried += [{**t, "neighbours": True} for t in rescored]  # after the plainer ones: ties go to those
        return [{"read_by": "fused", **t} for t in tried]

    @staticmethod
    def decoding_name(settings: dict) -> str:
        name = "greedy" if settings["beam"] == 1 else \
            f"{'grammar' if settings['grammar'] else 'lexicon'}_lm{settings['lm_weight']}_beam{settings['beam']}"
        read_by = {"fused": "", "confident": "_confident", "rescore": "_heads_rescored"}[
            settings.get("read_by", "fused")]
        return name + read_by + ("_rescore" if settings.get("combine") == "rescore" else "") + \
            ("_neighbours" if settings.get("neighbours") else "")

    def use_decoding(self, net: nn.Module, settings: dict) -> None:
        """Decode with these search settings from now on (and keep them in the task's state)."""
        base = self.words
        if settings["lexicon"] and base is not None:
            self.words = WordModel(base.counts, base.bigrams, True, settings["lm_weight"], settings["grammar"])
        elif base is not None:
            self.words = WordModel(base.counts, base.bigrams, False, 0.0, False)
        self.chosen = dict(settings)
        self._apply_search(net)

    def ensemble_net(self, members: list[nn.Module]) -> nn.Module | None:
        """CTC members' per-step probabilities averaged before the search; other text models are refused (with no
        members: refused now when the recipe's decoder is not CTC)."""
        ctc = all(isinstance(m, TextNet) and isinstance(m.head, CTCHead) for m in members)
        if self.pretrained or self.config.decoder == "attention" or not ctc:
            raise RecipeError("field `training.ensemble`: text models ensemble with a CTC decoder only (their "
                              "per-step probabilities are averaged); an attention or pretrained decoder writes "
                              "token by token")
        if not members:
            return None
        if self.chosen is not None and self.chosen.get("read_by", "fused") != "fused":  # (a refit member's choice)
            self.chosen = {**self.chosen, "read_by": "fused"}  # an ensemble has no surest head to read by
        net = CTCEnsembleNet(members)
        net.combine, net.neighbours = self.config.combine, self.config.neighbours
        self._apply_search(net)
        return net

    def _apply_search(self, net: nn.Module) -> None:
        if self.chosen is None or not isinstance(net, (TextNet, CTCEnsembleNet)):
            return
        net.beam = self.chosen["beam"]
        net.words = self.words if self.chosen["lexicon"] else None
        net.chars = [None] * len(SPECIALS) + list(self.vocab.tokens)
        if getattr(net, "aux", None) is not None:
            net.read_by = self.chosen.get("read_by", "fused")
        if isinstance(net, CTCEnsembleNet):
            net.combine = self.chosen.get("combine", self.config.combine)
        net.neighbours = bool(self.chosen.get("neighbours", False))

    def decoding_score(self, out: Tensor, target: Tensor) -> float:
        """The WER of decoded outputs against the targets (what `search: validation` minimises)."""
        from .text_metrics import error_rate

        refs = [self.vocab.decode([i for i in row if i >= 0]) for row in target.tolist()]
        return error_rate(self.texts(out), refs, "word")

    def encode(self, value: Any) -> list[int]:
        return self.vocab.encode(value)

    def collate(self, values: list[list[int]]) -> Tensor:
        out = torch.full((len(values), max(1, max(len(v) for v in values))), self.target_pad, dtype=torch.long)
        for i, v in enumerate(values):
            out[i, :len(v)] = torch.tensor(v, dtype=torch.long)
        return out

    def outputs_key(self) -> Any:
        return [self.vocab.unit, self.vocab.lowercase, list(getattr(self.vocab, "tokens", None) or [])]

    def state(self) -> dict:
        state = {"unit": self.vocab.unit, "lowercase": self.vocab.lowercase, "tokens": self.vocab.tokens,
                 "max_length": self.max_length}
        if self.words is not None:
            state["words"] = self.words.state()
        if self.aux:
            state["aux"] = True
        if getattr(self, "chosen", None):
            state["search"] = self.chosen
        return state

    def load_state(self, state: dict) -> None:
        if state["unit"] == "tokenizer":
            from .text_pretrained import TokenizerVocabulary

            self.vocab = TokenizerVocabulary(self.generator_source())
        elif state["unit"] == "subword":
            self.vocab = SubwordVocabulary(str(self.tokenizer_files or self.config.tokenizer), state["lowercase"])
        else:
            self.vocab = Vocabulary(state["unit"], state["lowercase"], state["tokens"])
        self.max_length = state["max_length"]
        self.words = WordModel.from_state(state["words"]) if "words" in state else None
        self.aux = bool(state.get("aux"))  # model directories from before auxiliary CTC heads have none
        self.chosen = state.get("search")

    def save_files(self, net: nn.Module, directory: Path) -> None:
        if hasattr(net, "save_files"):
            net.save_files(directory, self.vocab.tokenizer)
        if isinstance(self.vocab, SubwordVocabulary):
            self.vocab.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))

    def load_files(self, directory: Path) -> None:
        from .text_pretrained import FILES_DIR

        if (directory / FILES_DIR).is_dir():
            self.generator_files = directory / FILES_DIR
        if (directory / TOKENIZER_DIR).is_dir():
            self.tokenizer_files = directory / TOKENIZER_DIR

    def describe(self) -> dict:
        described = {"unit": self.vocab.unit, "tokens": len(self.vocab.tokens) or len(self.vocab),
                     "max_length": self.max_length}
        if self.chosen:
            described["search (chosen on validation)"] = self.decoding_name(self.chosen)
        return described

    # -- the network -------------------------------------------------------------------------------------------------
    def encoded_inputs(self, kinds: dict[str, str]) -> list[str]:
        return [] if self.pretrained else list(kinds)

    def decoder_kind(self, kinds: dict[str, str]) -> str:
        if self.pretrained:
            return "pretrained"
        if self.config.decoder != "auto":
            return self.config.decoder
        return "ctc" if all(k in TIME_ALIGNED for k in kinds.values()) else "attention"

    def build_net(self, encoders: dict[str, nn.Module], kinds: dict[str, str], modalities: dict[str, Any],
                  recipe: Any) -> TextNet:
        torch.manual_seed(recipe.training.seed)
        names, dim, c = list(kinds), recipe.model.dim, self.config
        if c.distill_from is not None and (self.pretrained or self.decoder_kind(kinds) != "ctc"):
            raise RecipeError(DISTILL_NEEDS)
        if self.pretrained:
            from .text_pretrained import GeneratorTextNet

            net: nn.Module = GeneratorTextNet(self.generator_source(), kinds, self.max_length,
                                              from_config=self.generator_files is not None, prompt=c.prompt)
            net.beam = c.beam
            return net
        if self.decoder_kind(kinds) == "ctc":
            videos = [n for n, k in kinds.items() if k == "video"]
            align = c.align_to or (videos[0] if videos else names[0])
            if align not in kinds:
                raise ValueError(f"target.options.align_to: no input '{align}' (inputs: {', '.join(names)})")
            head: nn.Module = CTCHead(names, align, dim, len(self.vocab), c.layers, c.dropout)
        else:
            if dim % c.heads:
                raise ValueError(f"target.options.heads: {c.heads} heads do not divide model.dim {dim}")
            fusion_cfg = dict(recipe.model.fusion)
            fcls = FUSIONS.get(fusion_cfg.get("method", "concat"), "model.fusion.method")
            fusion = fcls(validate_config(fcls.Config, fusion_cfg, "model.fusion"), names, dim)
            head = AttentionDecoder(names, dim, len(self.vocab), c.layers, c.heads, c.dropout, self.max_length,
                                    fusion)
        net = TextNet(encoders, head, self.max_length)
        net.beam = c.beam
        if isinstance(head, CTCHead) and self.words is not None:
            net.words = self.words
            net.chars = [None] * len(SPECIALS) + list(self.vocab.tokens)
        if self.aux is None:  # the recipe decides for a new model: model.unimodal_heads (default 1.0 for 2+ inputs)
            self.aux = isinstance(head, CTCHead) and len(names) > 1 and (recipe.model.unimodal_heads or 0) > 0
        if self.aux:
            net.aux = nn.ModuleDict({n: CTCHead([n], n, dim, len(self.vocab), 1, c.dropout) for n in names})
            net.alone_by_head = recipe.model.alone == "head"
            net.read_by, net.neighbours = c.read_by, c.neighbours
            if c.distill_from is not None:
                if c.distill_from not in kinds:
                    raise RecipeError(f"target.options.distill_from: no input '{c.distill_from}' (inputs: "
                                      f"{', '.join(names)})")
                net.distill_from, net.distill_augmented = c.distill_from, c.distill_augmented
        elif c.distill_from is not None:
            raise RecipeError(DISTILL_NEEDS)
        self._apply_search(net)
        return net

    @classmethod
    def architecture(cls, recipe: dict) -> dict:
        opts = recipe["target"]["options"]
        keys = ("decoder", "model", "unit", "layers", "beam")
        search = {k: opts[k] for k in ("lexicon", "grammar", "lm_weight") if opts.get(k)}
        return {"decoder": {**{k: opts[k] for k in keys if opts.get(k) is not None}, **search},
                "fusion (attention decoder)": recipe["model"]["fusion"]}

    # -- training ----------------------------------------------------------------------------------------------------
    def training_loss(self, net: TextNet, inputs: dict, target: Tensor | None, unimodal_weight: float,
                      rng: StepRNG) -> tuple[Tensor, dict[str, tuple[Tensor, int]]]:
        if not isinstance(net, TextNet):
            loss = net.loss(inputs, target, self.config.label_smoothing)
            return loss, {"train_loss": (loss, len(target))}
        loss, aux, distill = net.losses(inputs, target, self.config.label_smoothing)
        logged = {"train_loss": (loss, len(target))}
        if aux is not None and unimodal_weight > 0:
            logged["train_unimodal_loss"] = (aux, len(target))
            loss = loss + unimodal_weight * aux
        if distill is not None and self.config.distill_weight > 0:
            logged["train_distill_loss"] = (distill, len(target))
            loss = loss + self.config.distill_weight * distill
        return loss, logged

    def validation_loss(self, net: nn.Module, inputs: dict, out: Tensor, target: Tensor | None) -> Tensor:
        return net.loss(inputs, target)

    def metrics(self) -> MetricCollection:
        return MetricCollection({"wer": WordErrorRate(), "cer": CharErrorRate(), "exact_match": ExactMatch()})

    def texts(self, ids: Tensor) -> list[str]:
        return [self.vocab.decode([i for i in row if i >= 0]) for row in ids.long().tolist()]

    def update_metrics(self, metrics: nn.Module, out: Tensor, target: Tensor | None) -> None:
        metrics.update(self.texts(out), self.texts(target))

    # -- evaluation, prediction --------------------------------------------------------------------------------------
    def report(self, out: Tensor, target: Tensor) -> dict:
        hyps, refs = self.texts(out), self.texts(target)
        result = {k: round(v, 6) for k, v in text_scores(hyps, [[r] for r in refs]).items()}
        result["word_errors"] = word_errors(hyps, refs)
        result["examples"] = [{"reference": r, "prediction": h} for h, r in list(zip(hyps, refs))[:5]]
        return result

    def evaluate(self, run: Any, *, snr: list[float] | None = None, noise_input: str | None = None,
                 beam: int | None = None, out: str | Path | None = None, progress: Any = None,
                 by: str | None = None) -> dict:
        """WER, CER, BLEU, ROUGE-L, CIDEr-D and exact match, and modality reliance. snr: also the WER with white
        noise added to the audio input (`noise_input`, default the only audio input) at each signal-to-noise ratio
        (dB), for that input alone, the other inputs alone and all together (a PNG into `out`). beam: the beam
        width (default: the recipe's). by: also the scores of each group of rows sharing a value in that column."""
        if beam is not None and beam < 1:
            raise PolymodalError(f"beam must be at least 1, got {beam}")
        net = run.parts.net
        kept = net.beam
        net.beam = beam or kept
        try:
            data = run.read("required", keep_raw=snr is not None)
            result = run.score(data)
            if by is not None:
                result["by"] = run.by_group(data, by)
            if not self.pretrained:  # a pretrained generator has no path for a missing input
                run.add_reliance(data, result)
            if snr is not None:
                result["wer_vs_snr"] = run.noise_curve(data, [float(s) for s in snr], noise_input, progress, out,
                                                     metric="wer")
        finally:
            net.beam = kept
        return result

    def decode(self, out: Tensor) -> list[dict]:
        return [{"text": t} for t in self.texts(out)]

    def explained_value(self, out: Tensor, reference: Tensor) -> Tensor:
        """How much of the full model's text a subset of inputs writes: 1 - the character edit distance between the
        two texts over the longer one's length (1: the same text; 0: nothing of it)."""
        if self.pretrained:
            raise PolymodalError("a pretrained generator needs every input, so there is no subset of inputs to "
                                 "weigh: explanations are for the text decoders trained here")
        values = []
        for text, full in zip(self.texts(out), self.texts(reference)):
            longest = max(len(text), len(full))
            values.append(1.0 - edit_distance(text, full) / longest if longest else 1.0)
        return torch.tensor(values)

    def attributes(self) -> bool:
        return False
