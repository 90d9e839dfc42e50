"""Search for the output text: CTC greedy and prefix beam search (Hannun et al. 2014) over per-step
log-probabilities (optionally held to a lexicon and scored with a word bigram model of the training texts), and
batched beam search for an autoregressive decoder (beam 1 is greedy decoding)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

BLANK = 0


def ctc_greedy(log_probs: Tensor, lengths: Tensor) -> list[list[int]]:
    """The best token at each step, repeats merged, blanks dropped."""
    best = log_probs.argmax(-1).cpu().numpy()
    out = []
    for row, n in zip(best, lengths.tolist()):
        seq, last = [], BLANK
        for k in row[:n]:
            if k != last and k != BLANK:
                seq.append(int(k))
            last = k
        out.append(seq)
    return out


def _logadd(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


class WordModel:
    """What the training texts say about words, for a CTC search over characters: the words seen (a lexicon: the
    search spells only these) and a word bigram model with add-one smoothing (its log-probabilities, times
    `weight`, join the search's score at each word's end, as shallow fusion of an n-gram LM)."""

    START, END = "<s>", "</s>"

    def __init__(self, counts: dict[str, int], bigrams: dict[tuple[str, str], int], lexicon: bool,
                 weight: float, grammar: bool = False) -> None:
        self.counts, self.bigrams, self.lexicon, self.weight = counts, bigrams, lexicon, weight
        self.grammar = grammar  # only word pairs seen in training may follow each other (needs the lexicon)
        self.words = set(counts)
        self.prefixes = {w[:i] for w in self.words for i in range(len(w) + 1)}
        self.outgoing: dict[str, int] = {}
        self.after: dict[str, set[str]] = {}  # previous word -> the prefixes of the words seen after it
        for (a, b), c in bigrams.items():
            self.outgoing[a] = self.outgoing.get(a, 0) + c
            self.after.setdefault(a, set()).update(b[:i] for i in range(len(b) + 1))
        self.size = len(self.words) + 1  # the words and the end

    @classmethod
    def learn(cls, texts: list[str], lexicon: bool, weight: float, grammar: bool = False) -> "WordModel":
        counts: dict[str, int] = {}
        bigrams: dict[tuple[str, str], int] = {}
        for text in texts:
            words = text.split()
            for w in words:
                counts[w] = counts.get(w, 0) + 1
            for pair in zip([cls.START, *words], [*words, cls.END]):
                bigrams[pair] = bigrams.get(pair, 0) + 1
        return cls(counts, bigrams, lexicon, weight, grammar)

    def state(self) -> dict:
        return {"counts": self.counts, "bigrams": [[a, b, c] for (a, b), c in self.bigrams.items()],
                "lexicon": self.lexicon, "weight": self.weight, "grammar": self.grammar}

    @classmethod
    def from_state(cls, state: dict) -> "WordModel":
        return cls(dict(state["counts"]), {(a, b): int(c) for a, b, c in state["bigrams"]}, bool(state["lexicon"]),
                   float(state["weight"]), bool(state.get("grammar", False)))

    def score(self, previous: str, word: str) -> float:
        """weight x log P(word | previous)."""
        if self.weight == 0:
            return 0.0
        p = (self.bigrams.get((previous, word), 0) + 1) / (self.outgoing.get(previous, 0) + self.size)
        return self.weight * math.log(p)

    def allows(self, partial: str, previous: str | None = None) -> bool:
        """Whether `partial` can begin a word here (after `previous`, with the grammar)."""
        if not self.lexicon:
            return True
        if self.grammar and previous is not None:
            return partial in self.after.get(previous, ())
        return partial in self.prefixes

    def complete(self, partial: str, previous: str | None = None) -> bool:
        """Whether `partial` is a whole word here (after `previous`, with the grammar)."""
        if not self.lexicon:
            return True
        if self.grammar and previous is not None:
            return (previous, partial) in self.bigrams
        return partial in self.words

    def may_end(self, last: str) -> bool:
        return not (self.lexicon and self.grammar) or (last, self.END) in self.bigrams

    def neighbours(self, text: list[str]) -> list[list[str]]:
        """The texts one word away from `text` that the search could spell: each word in turn replaced by another
        word of the lexicon (with the grammar, one seen after the word before it and before the word after it, or
        at the end). None without the lexicon (an open vocabulary has no list of words to try): an empty list."""
        if not self.lexicon:
            return []
        out = []
        for i, word in enumerate(text):
            before = text[i - 1] if i else self.START
            after = text[i + 1] if i + 1 < len(text) else self.END
            for other in sorted(self.words):
                if other == word:
                    continue
                if self.grammar and ((before, other) not in self.bigrams or (other, after) not in self.bigrams):
                    continue
                out.append(text[:i] + [other] + text[i + 1:])
        return out


Spelling = tuple[str, str, float]  # (the word being spelt, the word before it, the words' score so far)


def ctc_prefix_beam(log_probs: np.ndarray, beam: int, prune: float = 10.0, words: WordModel | None = None,
                    chars: list[str | None] | None = None) -> list[int]:
    """The most probable label sequence (summed over its alignments) kept among `beam` prefixes at each step; tokens
    more than `prune` nats below the step's best are not tried. With `words` (and `chars`, each token id's
    character, None for special tokens), prefixes spell only words of the lexicon, and the word model's score of
    each finished word is added to the prefix's."""
    if chars is None:
        words = None  # without each token's character there is nothing to spell
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p blank-ended, other)
    spelt: dict[tuple[int, ...], Spelling] = {(): ("", WordModel.START, 0.0)}

    def extend(prefix: tuple[int, ...], k: int) -> bool:
        """Record what prefix + k spells; False where the lexicon has no such word."""
        if words is None or chars is None:
            return True
        partial, before, score = spelt[prefix]
        c = chars[k]
        if c is None:  # <unk> and the like: no letter of any word
            if words.lexicon:
                return False
            spelt[prefix + (k,)] = spelt[prefix]
            return True
        if c == " ":
            if not partial or not words.complete(partial, before):
                return False
            spelt[prefix + (k,)] = ("", partial, score + words.score(before, partial))
        elif words.allows(partial + c, before):
            spelt[prefix + (k,)] = (partial + c, before, score)
        else:
            return False
        return True

    def rank(prefix: tuple[int, ...], p: tuple[float, float] | list[float]) -> float:
        return _logadd(p[0], p[1]) + (spelt[prefix][2] if words is not None else 0.0)

    for step in log_probs:
        candidates = np.nonzero(step >= step.max() - prune)[0]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _logadd(pb, pnb)
            last = prefix[-1] if prefix else None
            for k in candidates:
                p = float(step[k])
                if k == BLANK:
                    entry = nxt.setdefault(prefix, [-math.inf, -math.inf])
                    entry[0] = _logadd(entry[0], total + p)
                    continue
                extended = prefix + (int(k),)
                if extended not in spelt and not extend(prefix, int(k)):
                    if k == last:  # the repeat still merges into the prefix
                        same = nxt.setdefault(prefix, [-math.inf, -math.inf])
                        same[1] = _logadd(same[1], pnb + p)
                    continue
                entry = nxt.setdefault(extended, [-math.inf, -math.inf])
                if k == last:  # a repeat extends only after a blank; without one it merges into the prefix
                    entry[1] = _logadd(entry[1], pb + p)
                    same = nxt.setdefault(prefix, [-math.inf, -math.inf])
                    same[1] = _logadd(same[1], pnb + p)
                else:
                    entry[1] = _logadd(entry[1], total + p)
        if not nxt:  # every token the step allows spells no word and the blank was pruned: all read it as blank
            nxt = {prefix: [_logadd(pb, pnb) + float(step[BLANK]), -math.inf] for prefix, (pb, pnb) in beams.items()}
        ranked = sorted(nxt.items(), key=lambda kv: rank(kv[0], kv[1]), reverse=True)[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    if words is None:
        return list(max(beams.items(), key=lambda kv: _logadd(*kv[1]))[0])
    finished = {}
    for prefix, p in beams.items():
        partial, before, score = spelt[prefix]
        if (partial and not words.complete(partial, before)) or (prefix and not partial):
            continue  # half a word; a trailing space
        if partial:
            score, before = score + words.score(before, partial), partial
        if not words.may_end(before):  # the grammar: no sentence seen in training ends on this word
            continue
        finished[prefix] = _logadd(*p) + score + words.score(before, WordModel.END)
    if not finished:  # no prefix ends on a whole word: the best one as it stands
        return list(max(beams.items(), key=lambda kv: rank(*kv))[0])
    return list(max(finished.items(), key=lambda kv: kv[1])[0])


def ctc_decode(log_probs: Tensor, lengths: Tensor, beam: int = 1, words: WordModel | None = None,
               chars: list[str | None] | None = None) -> list[list[int]]:
    if beam <= 1:
        return ctc_greedy(log_probs, lengths)
    lp = log_probs.float().cpu().numpy()
    return [ctc_prefix_beam(row[:n], beam, words=words, chars=chars) for row, n in zip(lp, lengths.tolist())]


def text_log_likelihood(log_probs: Tensor, lengths: Tensor, candidates: list[list[int]]) -> Tensor:
    """log P(candidate | input) under one CTC output, summed over every alignment (the CTC forward algorithm):
    `log_probs` [B, T, V] with `lengths` [B] steps, one candidate token sequence per row; -inf where a candidate
    cannot fit the row's steps."""
    targets = [torch.tensor(c, dtype=torch.long) for c in candidates]
    flat = torch.cat(targets) if any(len(c) for c in candidates) else torch.zeros(0, dtype=torch.long)
    sizes = torch.tensor([len(c) for c in candidates], dtype=torch.long)
    nll = torch.nn.functional.ctc_loss(log_probs.float().transpose(0, 1).cpu(), flat, lengths.cpu(), sizes,
                                       blank=BLANK, reduction="none", zero_infinity=False)
    return -nll


def spelt_words(seq: list[int], chars: list[str | None]) -> list[str]:
    """The words a token sequence spells (each token id's character; special tokens spell nothing)."""
    return "".join(c for c in (chars[k] for k in seq) if c is not None).split()


def words_score(seq: list[int], words: WordModel | None, chars: list[str | None] | None) -> float:
    """The word model's score of a whole text (its words' bigram scores and the end's), 0 without one."""
    if words is None or chars is None or words.weight == 0:
        return 0.0
    spelt = spelt_words(seq, chars)
    return sum(words.score(a, b) for a, b in zip([WordModel.START, *spelt], [*spelt, WordModel.END]))


def ctc_rescore(outputs: list[tuple[Tensor, Tensor]], hypotheses: list[list[list[int]]], words: WordModel | None = None,
                chars: list[str | None] | None = None,
                weights: Tensor | None = None) -> tuple[list[list[int]], Tensor]:
    """A sentence-level ensemble of CTC outputs: each row's candidates (`hypotheses[j][row]`: what search j read)
    ranked by the mean over the outputs (`(log_probs [B, T_m, V], lengths [B])` per member; `weights [B, M]`: a
    weighted mean, e.g. 0 for a member that does not see the row) of the candidate's log likelihood, plus the word
    model's score of its words. Returns each row's best candidate and the scores [B, candidates] (duplicates keep
    their first place)."""
    rows = len(hypotheses[0])
    scores = torch.full((rows, len(hypotheses)), -math.inf)
    for row in range(rows):
        seen: set[tuple[int, ...]] = set()
        keep = []
        for j, hyp in enumerate(hypotheses):
            if tuple(hyp[row]) not in seen:
                seen.add(tuple(hyp[row]))
                keep.append(j)
        total, weight = torch.zeros(len(keep)), 0.0
        for m, (log_probs, lengths) in enumerate(outputs):
            w = 1.0 if weights is None else float(weights[row, m])
            if w == 0.0:
                continue
            picked = log_probs[row:row + 1].expand(len(keep), -1, -1)
            total += w * text_log_likelihood(picked, lengths[row:row + 1].expand(len(keep)),
                                             [hypotheses[j][row] for j in keep])
            weight += w
        total /= weight
        for i, j in enumerate(keep):
            scores[row, j] = float(total[i]) + words_score(hypotheses[j][row], words, chars)
    best = scores.argmax(1).tolist()
    return [list(hypotheses[j][row]) for row, j in enumerate(best)], scores


def ctc_rescore_neighbours(outputs: list[tuple[Tensor, Tensor]], best: list[list[int]], words: WordModel | None,
                           chars: list[str | None] | None, weights: Tensor | None = None,
                           rounds: int = 3) -> list[list[int]]:
    """A local search around each row's text: its one-word changes that the word model allows
    (`WordModel.neighbours`) scored as `ctc_rescore` scores (the outputs' weighted mean log-likelihood plus the word
    model's score); the likeliest replaces it, and again from there, until it stays (at most `rounds` times). The
    searches' proposals hold one text each, so a word none of them spelt (a letter the noisy audio and the lips
    each put second) is never weighed; this weighs it. Rows whose text spells a word outside the lexicon, and texts
    without a lexicon, stay as they are."""
    if words is None or chars is None or not words.lexicon:
        return best
    ids = {c: k for k, c in enumerate(chars) if c is not None}
    out = [list(seq) for seq in best]
    for row, seq in enumerate(out):
        spelt = spelt_words(seq, chars)
        if not spelt or any(w not in words.words for w in spelt):
            continue
        single = [(lp[row:row + 1], st[row:row + 1]) for lp, st in outputs]
        w = None if weights is None else weights[row:row + 1]
        for _ in range(rounds):
            near = [[ids[c] for c in " ".join(text)] for text in words.neighbours(spelt)
                    if all(c in ids for c in " ".join(text))]
            if not near:
                break
            kept, _ = ctc_rescore(single, [[seq]] + [[n] for n in near], words, chars, w)
            if kept[0] == seq:
                break
            seq = kept[0]
            spelt = spelt_words(seq, chars)
        out[row] = seq
    return out


def ctc_decode_rescored(outputs: list[tuple[Tensor, Tensor]], beam: int, words: WordModel | None = None,
                        chars: list[str | None] | None = None,
                        first: list[list[int]] | None = None, weights: Tensor | None = None,
                        neighbours: bool = False) -> list[list[int]]:
    """Each output's own search proposes a text (after `first`'s readings, where given) and `ctc_rescore` over all
    the outputs (`weights` as there) keeps each row's likeliest; a single output with no `first` is read by its
    search alone. With `neighbours`, the kept text's one-word changes are weighed too
    (`ctc_rescore_neighbours`)."""
    reads = ([first] if first is not None else []) + [ctc_decode(lp, st, beam, words, chars) for lp, st in outputs]
    best = reads[0] if len(reads) == 1 else ctc_rescore(outputs, reads, words, chars, weights)[0]
    if neighbours and beam > 1:
        best = ctc_rescore_neighbours(outputs, best, words, chars, weights)
    return best


def beam_search(step: Callable[[Tensor, Tensor], Tensor], rows: int, bos: int, eos: int, max_length: int,
                beam: int = 1, device: torch.device | str = "cpu") -> list[list[int]]:
    """Autoregressive search. `step(sequences [R, t], origin [R])` gives the next token's log-probabilities [R, V] for
    each sequence (origin: the row it belongs to). Keeps `beam` sequences per row; a finished sequence (it produced
    eos) stays as it is. The answer is the finished sequence with the best mean log-probability per token."""
    seqs = torch.full((rows * beam, 1), bos, dtype=torch.long, device=device)
    origin = torch.arange(rows, device=device).repeat_interleave(beam)
    scores = torch.full((rows, beam), -math.inf, device=device)
    scores[:, 0] = 0.0
    done = torch.zeros(rows * beam, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows * beam, device=device)
    for _ in range(max_length):
        logp = step(seqs, origin).float()
        vocab = logp.shape[-1]
        frozen = torch.full_like(logp, -math.inf)
        frozen[:, eos] = 0.0  # a finished sequence only "continues" with eos at no cost
        logp = torch.where(done[:, None], frozen, logp)
        total = (scores.view(-1, 1) + logp).view(rows, beam * vocab)
        scores, flat = total.topk(beam, dim=-1)
        parent = (flat // vocab + torch.arange(rows, device=device)[:, None] * beam).view(-1)
        token = (flat % vocab).view(-1)
        seqs = torch.cat([seqs[parent], token[:, None]], 1)
        was_done = done[parent]
        lengths = lengths[parent] + (~was_done).float()
        done = was_done | (token == eos)
        if bool(done.all()):
            break
    normalised = (scores.view(-1) / lengths.clamp_min(1)).view(rows, beam)
    normalised = torch.where(torch.isfinite(scores), normalised, torch.full_like(normalised, -math.inf))
    best = normalised.argmax(-1) + torch.arange(rows, device=device) * beam
    out = []
    for seq in seqs[best, 1:].tolist():
        out.append(seq[:seq.index(eos)] if eos in seq else seq)
    return out
