"""Search for the output text: CTC greedy and prefix beam search (Hannun et al. 2014) over per-step
log-probabilities, and batched beam search for an autoregressive decoder (beam 1 is greedy decoding)."""
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


def ctc_prefix_beam(log_probs: np.ndarray, beam: int, prune: float = 10.0) -> list[int]:
    """The most probable label sequence (summed over its alignments) kept among `beam` prefixes at each step; tokens
    more than `prune` nats below the step's best are not tried."""
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p blank-ended, other)
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
                entry = nxt.setdefault(extended, [-math.inf, -math.inf])
                if k == last:  # a repeat extends only after a blank; without one it merges into the prefix
                    entry[1] = _logadd(entry[1], pb + p)
                    same = nxt.setdefault(prefix, [-math.inf, -math.inf])
                    same[1] = _logadd(same[1], pnb + p)
                else:
                    entry[1] = _logadd(entry[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    return list(max(beams.items(), key=lambda kv: _logadd(*kv[1]))[0])


def ctc_decode(log_probs: Tensor, lengths: Tensor, beam: int = 1) -> list[list[int]]:
    if beam <= 1:
        return ctc_greedy(log_probs, lengths)
    lp = log_probs.float().cpu().numpy()
    return [ctc_prefix_beam(row[:n], beam) for row, n in zip(lp, lengths.tolist())]


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
