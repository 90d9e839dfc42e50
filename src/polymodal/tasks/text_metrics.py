"""Scores of generated text against references: word and character error rates (edit distance), exact match,
corpus BLEU-4 (Papineni et al. 2002), ROUGE-L (Lin 2004, with the recall weight beta = 1.2 that the COCO caption
evaluation uses) and CIDEr-D (Vedantam et al. 2015, as the COCO caption code computes it: tf-idf n-gram vectors,
n = 1..4, counts clipped to the reference's, a Gaussian length penalty with sigma 6, times 10).

Texts are compared after `normalize` (lower case, punctuation removed, single spaces). Every function takes one
hypothesis per row and a list of references per row."""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import torch
from torchmetrics import Metric

_PUNCT = re.compile(r"[^\w\s']", re.UNICODE)


def normalize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", str(text).lower()).split())


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def word_edits(hyp: str, ref: str) -> list[tuple[str | None, str | None]]:
    """The edits of one least-cost alignment of the normalised words (as WER counts them): (reference word,
    hypothesis word) for a substitution, (word, None) for a deletion, (None, word) for an insertion. Where several
    alignments cost the same, substitutions are preferred, then deletions."""
    h, r = normalize(hyp).split(), normalize(ref).split()
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(len(h) + 1)] for i in range(len(r) + 1)]
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            cost[i][j] = min(cost[i - 1][j - 1] + (r[i - 1] != h[j - 1]), cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    edits: list[tuple[str | None, str | None]] = []
    i, j = len(r), len(h)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (r[i - 1] != h[j - 1]):
            if r[i - 1] != h[j - 1]:
                edits.append((r[i - 1], h[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            edits.append((r[i - 1], None))
            i -= 1
        else:
            edits.append((None, h[j - 1]))
            j -= 1
    return edits[::-1]


def word_errors(hyps: list[str], refs: list[str], top: int = 20) -> dict[str, dict[str, int]]:
    """The commonest word errors over a corpus (what WER is made of): `substituted` {"ref -> hyp": count},
    `deleted` and `inserted` {word: count}, each the `top` most frequent, most frequent first."""
    substituted: Counter = Counter()
    deleted: Counter = Counter()
    inserted: Counter = Counter()
    for hyp, ref in zip(hyps, refs):
        for a, b in word_edits(hyp, ref):
            if a is not None and b is not None:
                substituted[f"{a} -> {b}"] += 1
            elif a is not None:
                deleted[a] += 1
            else:
                inserted[b] += 1
    return {name: dict(counter.most_common(top))
            for name, counter in (("substituted", substituted), ("deleted", deleted), ("inserted", inserted))}


def error_counts(hyp: str, ref: str, unit: str) -> tuple[int, int]:
    """(edits, reference length) in words or characters."""
    h, r = normalize(hyp), normalize(ref)
    if unit == "word":
        h, r = h.split(), r.split()  # type: ignore[assignment]
    return edit_distance(h, r), len(r)


def error_rate(hyps: list[str], refs: list[str], unit: str = "word") -> float:
    """Corpus WER (unit word) or CER (unit char): total edits over total reference length."""
    counts = [error_counts(h, r, unit) for h, r in zip(hyps, refs)]
    return sum(c[0] for c in counts) / max(1, sum(c[1] for c in counts))


def exact_match(hyps: list[str], refs: list[list[str]]) -> float:
    return sum(normalize(h) in {normalize(r) for r in rs} for h, rs in zip(hyps, refs)) / max(1, len(hyps))


def ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(hyps: list[str], refs: list[list[str]], max_n: int = 4) -> float:
    """Corpus BLEU: clipped n-gram precisions over the corpus (n = 1..max_n, geometric mean), brevity penalty
    against the reference closest in length to each hypothesis; 0 when some order has no match (no smoothing). An
    order no hypothesis is long enough to have (4-grams of three-word captions, one-word answers) is left out of
    the mean rather than making the score 0."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, rs in zip(hyps, refs):
        h = normalize(hyp).split()
        rws = [normalize(r).split() for r in rs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rws)[1]
        for n in range(1, max_n + 1):
            counts = ngrams(h, n)
            most = Counter()
            for r in rws:
                most |= ngrams(r, n)
            matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[n - 1] += max(0, len(h) - n + 1)
    orders = [(m, t) for m, t in zip(matches, totals) if t > 0]  # texts shorter than n words have no n-grams
    if hyp_len == 0 or any(m == 0 for m, _ in orders):
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in orders) / len(orders)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


def lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(hyps: list[str], refs: list[list[str]], beta: float = 1.2) -> float:
    """Mean over rows of the LCS F-measure; precision and recall each the best over the row's references."""
    scores = []
    for hyp, rs in zip(hyps, refs):
        h = normalize(hyp).split()
        precision = recall = 0.0
        for r in rs:
            rw = normalize(r).split()
            common = lcs(h, rw)
            precision = max(precision, common / len(h) if h else 0.0)
            recall = max(recall, common / len(rw) if rw else 0.0)
        scores.append((1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)
                      if precision and recall else 0.0)
    return sum(scores) / max(1, len(scores))


def cider_d(hyps: list[str], refs: list[list[str]], n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D over the corpus: document frequencies from the references (one document per row), each row's score the
    mean over n-gram orders of the clipped tf-idf cosine against each reference, times the length penalty, averaged
    over its references, times 10; the corpus score is the mean over rows."""
    ref_words = [[normalize(r).split() for r in rs] for rs in refs]
    df: Counter = Counter()
    for rws in ref_words:
        df.update({g for rw in rws for k in range(1, n + 1) for g in ngrams(rw, k)})
    log_docs = math.log(float(len(refs))) if refs else 0.0

    def vector(words: list[str]) -> tuple[list[dict], list[float], int]:
        vec, norms = [], []
        for k in range(1, n + 1):
            v = {g: c * (log_docs - math.log(max(1.0, df[g]))) for g, c in ngrams(words, k).items()}
            vec.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return vec, norms, len(words)

    def similarity(h, r) -> list[float]:
        (vh, nh, lh), (vr, nr, lr) = h, r
        penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
        out = []
        for k in range(n):
            value = sum(min(x, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, x in vh[k].items())
            if nh[k] != 0 and nr[k] != 0:
                value /= nh[k] * nr[k]
            out.append(value * penalty)
        return out

    scores = []
    for hyp, rws in zip(hyps, ref_words):
        h = vector(normalize(hyp).split())
        total = [0.0] * n
        for rw in rws:
            total = [a + b for a, b in zip(total, similarity(h, vector(rw)))]
        scores.append(sum(total) / n / len(rws) * 10.0)
    return sum(scores) / max(1, len(scores))


def text_scores(hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """Every score, keyed as `evaluate --json` reports them (WER and CER against each row's first reference)."""
    first = [r[0] for r in refs]
    return {"wer": error_rate(hyps, first, "word"), "cer": error_rate(hyps, first, "char"),
            "exact_match": exact_match(hyps, refs), "bleu": bleu(hyps, refs), "rouge_l": rouge_l(hyps, refs),
            "cider": cider_d(hyps, refs)}


class _RatioMetric(Metric):
    """A corpus score as a sum over rows of a numerator over a sum of a denominator (summed across processes)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("numerator", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("denominator", torch.tensor(0.0), dist_reduce_fx="sum")

    def counts(self, hyp: str, ref: str) -> tuple[float, float]:
        raise NotImplementedError

    def update(self, hyps: list[str], refs: list[str]) -> None:  # type: ignore[override]
        for h, r in zip(hyps, refs):
            num, den = self.counts(h, r)
            self.numerator += num
            self.denominator += den

    def compute(self) -> torch.Tensor:
        return self.numerator / self.denominator.clamp_min(1)


class WordErrorRate(_RatioMetric):
    def counts(self, hyp: str, ref: str) -> tuple[float, float]:
        return error_counts(hyp, ref, "word")


class CharErrorRate(_RatioMetric):
    def counts(self, hyp: str, ref: str) -> tuple[float, float]:
        return error_counts(hyp, ref, "char")


class ExactMatch(_RatioMetric):
    higher_is_better = True

    def counts(self, hyp: str, ref: str) -> tuple[float, float]:
        return float(normalize(hyp) == normalize(ref)), 1.0
