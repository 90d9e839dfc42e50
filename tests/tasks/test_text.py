"""Text outputs: CTC and beam search on toy problems with known answers, the text scores against hand-worked values
and torchmetrics, and the text task end to end (CTC over tones, audio + an aligned signal with either missing,
captions through the attention decoder, the quick-form CLI)."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import polymodal as pm
from polymodal.cli import app
from polymodal.errors import RecipeError
from polymodal.tasks.text import TextTask, Vocabulary, pool_to
from polymodal.tasks.text_decoding import WordModel, beam_search, ctc_decode, ctc_greedy, ctc_prefix_beam, ctc_rescore
from polymodal.tasks.text_metrics import bleu, cider_d, edit_distance, error_rate, exact_match, rouge_l, text_scores

from ..conftest import caption_rows, write_jsonl


# -- search ---------------------------------------------------------------------------------------------------------
def test_ctc_beam_finds_the_sequence_greedy_misses():
    """Two steps, blank 0.6 / 'a' 0.4 each: greedy reads blank-blank (''), p = 0.36; 'a' has three alignments
    (a-a, a-blank, blank-a), p = 0.16 + 0.24 + 0.24 = 0.64, so the prefix beam search answers 'a'."""
    lp = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]]).log()
    assert ctc_greedy(lp, torch.tensor([2])) == [[]]
    assert ctc_decode(lp, torch.tensor([2]), beam=2) == [[1]]


def test_ctc_prefix_beam_equals_brute_force():
    """With a beam wide enough to keep every prefix, the answer is the label sequence whose alignments sum highest,
    worked out here by enumerating all 3^4 alignments."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        logits = rng.normal(0, 1.5, (4, 3))
        lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        totals: dict[tuple, float] = {}
        for path in itertools.product(range(3), repeat=4):
            labels = tuple(k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k))
            totals[labels] = totals.get(labels, 0.0) + math.exp(sum(lp[t, k] for t, k in enumerate(path)))
        assert tuple(ctc_prefix_beam(lp, beam=50)) == max(totals, key=totals.get)


def _sentence_totals(lp: np.ndarray) -> dict[tuple, float]:
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        labels = tuple(k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k))
        totals[labels] = totals.get(labels, 0.0) + math.exp(sum(lp[t, k] for t, k in enumerate(path)))
    return totals


def test_ctc_rescore_keeps_the_text_the_members_agree_on():
    """Two members spike 'a' on neighbouring steps (0.8 against blank 0.2, then blank 0.9): their mean has blank on
    top at every step, so greedy reads ''. Rescored, each candidate gets the mean of the members' log-likelihoods,
    summed over all alignments (worked out here by enumerating them): 'a' wins, and the scores are those sums."""
    a = np.log([[0.2, 0.8], [0.9, 0.1], [0.9, 0.1]])
    b = np.log([[0.9, 0.1], [0.2, 0.8], [0.9, 0.1]])
    outputs = [(torch.tensor(lp, dtype=torch.float32)[None], torch.tensor([3])) for lp in (a, b)]
    mean = torch.tensor(np.log((np.exp(a) + np.exp(b)) / 2), dtype=torch.float32)[None]
    greedy = ctc_greedy(mean, torch.tensor([3]))
    assert greedy == [[]]
    best, scores = ctc_rescore(outputs, [greedy, [[1]], [[1]]])
    assert best == [[1]]
    want = {c: np.mean([math.log(_sentence_totals(lp)[c]) for lp in (a, b)]) for c in [(), (1,)]}
    assert scores[0, 0].item() == pytest.approx(want[()], abs=1e-5)
    assert scores[0, 1].item() == pytest.approx(want[(1,)], abs=1e-5)
    assert scores[0, 2].item() == -math.inf  # a repeat of an earlier candidate keeps its first place only
    words = WordModel.learn(["a"], lexicon=True, weight=2.0)  # the word model's score joins: "" ends at once
    chars = [None, "a"]
    _, with_words = ctc_rescore(outputs, [greedy, [[1]]], words, chars)
    p = lambda prev, w: (words.bigrams.get((prev, w), 0) + 1) / (words.outgoing.get(prev, 0) + words.size)  # noqa: E731
    assert with_words[0, 1].item() == pytest.approx(want[(1,)] + 2 * math.log(p("<s>", "a") * p("a", "</s>")),
                                                    abs=1e-5)
    assert with_words[0, 0].item() == pytest.approx(want[()] + 2 * math.log(p("<s>", "</s>")), abs=1e-5)


def test_word_model_neighbours_are_the_one_word_changes_it_allows():
    """Texts "a b", "b a", "a a": with the lexicon alone any word may replace any other; with the grammar only
    those whose pairs with the words on either side (and the start and end) were seen."""
    texts = ["a b", "b a", "a a"]
    lexicon = WordModel.learn(texts, lexicon=True, weight=0.0)
    assert lexicon.neighbours(["a", "b"]) == [["b", "b"], ["a", "a"]]
    grammar = WordModel.learn(texts, lexicon=True, weight=0.0, grammar=True)
    assert grammar.neighbours(["a", "b"]) == [["a", "a"]]  # "b b": the pair (b, b) was never seen
    assert grammar.neighbours(["b", "a"]) == [["a", "a"]]  # "b b" again
    assert WordModel.learn(texts, lexicon=False, weight=1.0).neighbours(["a", "b"]) == []


def test_rescoring_with_neighbours_reaches_a_text_no_search_proposed():
    """Two members over tokens blank, 'a', 'b', ' ' (grammar of "a b", "b a", "a a", "b b"): rescoring keeps the
    likelier of their own readings; with neighbours, the kept text's one-word changes are scored the same way (the
    mean of the members' log-likelihoods, each summed over every alignment: worked out here by enumerating them)
    until none is likelier. The answer never scores below the plain one, has no likelier neighbour, and in some of
    the random draws is a text neither member's search spelt."""
    from polymodal.tasks.text_decoding import ctc_decode_rescored

    chars = [None, "a", "b", " "]
    grammar = WordModel.learn(["a b", "b a", "a a", "b b"], lexicon=True, weight=0.0, grammar=True)
    ids = {"a": 1, "b": 2, " ": 3}
    rng = np.random.default_rng(3)
    reached = 0
    for _ in range(12):
        lps = []
        for _ in range(2):
            logits = rng.normal(0, 2.0, (5, 4))
            lps.append(logits - np.log(np.exp(logits).sum(1, keepdims=True)))
        totals = [_sentence_totals(lp) for lp in lps]

        def score(seq: list[int], totals: list[dict] = totals) -> float:
            return float(np.mean([math.log(t.get(tuple(seq), 1e-300)) for t in totals]))

        outputs = [(torch.tensor(lp, dtype=torch.float32)[None], torch.tensor([5])) for lp in lps]
        reads = [ctc_decode(lp, st, 8, grammar, chars)[0] for lp, st in outputs]
        plain = ctc_decode_rescored(outputs, 8, grammar, chars)[0]
        assert plain == max(reads, key=score)
        near = ctc_decode_rescored(outputs, 8, grammar, chars, neighbours=True)[0]
        assert score(near) >= score(plain) - 1e-5
        text = "".join(chars[k] for k in near).split()
        for other in grammar.neighbours(text):
            assert score([ids[c] for c in " ".join(other)]) <= score(near) + 1e-5
        reached += near not in reads
    assert reached  # a text that only the neighbours brought


def test_ctc_search_with_a_lexicon_and_word_bigrams_equals_brute_force():
    """Tokens blank, 'a', 'b', ' ' over 5 steps. Held to the lexicon of the texts "ab b" and "ba" (words ab, b, ba),
    or to their grammar (only their word pairs: the two texts themselves),
    a wide search answers the label sequence whose alignments sum highest among those that spell lexicon words
    with single spaces; with a bigram weight, the one maximising log p + weight x log P(words) (add-one bigrams,
    worked out here from the counts). Without the lexicon, that score over every sequence."""
    chars = [None, "a", "b", " "]
    texts = ["ab b", "ba"]
    counts = {("<s>", "ab"): 1, ("ab", "b"): 1, ("b", "</s>"): 1, ("<s>", "ba"): 1, ("ba", "</s>"): 1}
    outgoing = {"<s>": 2, "ab": 1, "b": 1, "ba": 1}

    def log_bigrams(words: list[str]) -> float:
        pairs = zip(["<s>", *words], [*words, "</s>"])
        return sum(math.log((counts.get(p, 0) + 1) / (outgoing.get(p[0], 0) + 4)) for p in pairs)

    def spelling(labels: tuple) -> str:
        return "".join(chars[k] for k in labels)

    rng = np.random.default_rng(1)
    differs = 0
    for _ in range(6):
        logits = rng.normal(0, 1.5, (5, 4))
        lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        totals = _sentence_totals(lp)
        ok = {s: v for s, v in totals.items() if not s or all(w in {"ab", "b", "ba"}
                                                                   for w in spelling(s).split(" "))}
        lexicon = WordModel.learn(texts, lexicon=True, weight=0.0)
        assert tuple(ctc_prefix_beam(lp, beam=200, words=lexicon, chars=chars)) == max(ok, key=ok.get)
        weighted = WordModel.learn(texts, lexicon=True, weight=2.0)
        best = max(ok, key=lambda s: math.log(ok[s]) + 2.0 * log_bigrams(spelling(s).split(" ") if s else []))
        assert tuple(ctc_prefix_beam(lp, beam=200, words=weighted, chars=chars)) == best
        differs += best != max(ok, key=ok.get)
        # the grammar: only the word pairs of the texts, so only "ab b" and "ba" are whole sentences
        grammar = WordModel.learn(texts, lexicon=True, weight=0.0, grammar=True)
        allowed = {s: v for s, v in totals.items() if spelling(s) in ("ab b", "ba")}
        assert tuple(ctc_prefix_beam(lp, beam=200, words=grammar, chars=chars)) == max(allowed, key=allowed.get)
        assert WordModel.from_state(grammar.state()).grammar and not WordModel.from_state(
            {k: v for k, v in lexicon.state().items() if k != "grammar"}).grammar  # older states: no grammar
        free = WordModel.learn(texts, lexicon=False, weight=1.0)
        spelt = {s: v for s, v in totals.items() if "  " not in spelling(s) and not spelling(s).startswith(" ")
                 and not spelling(s).endswith(" ")}
        best_free = max(spelt, key=lambda s: math.log(spelt[s]) + log_bigrams(spelling(s).split(" ")
                                                                               if spelling(s) else []))
        assert tuple(ctc_prefix_beam(lp, beam=500, words=free, chars=chars)) == best_free
    assert differs  # the bigram weight changed at least one answer


def test_ctc_search_survives_a_step_where_no_allowed_token_spells_a_word():
    """Held to the lexicon {"ab"}, a step whose only tokens within the pruning margin are 'b' (no word starts with
    it) and ' ' (nothing to end) leaves no prefix: every prefix reads that step as the blank, and the search still
    answers "ab" from the other steps (it used to fail on an empty beam)."""
    chars = [None, "a", "b", " "]
    lp = np.log(np.array([[0.05, 0.9, 0.025, 0.025],   # a
                          [1e-9, 1e-9, 0.5, 0.5],       # 'b' or ' ' at a word's start, the blank pruned
                          [0.05, 0.9, 0.025, 0.025],    # a (after a blank: the same a again)
                          [0.05, 0.025, 0.9, 0.025]]))  # b
    lexicon = WordModel.learn(["ab"], lexicon=True, weight=0.0)
    assert ctc_prefix_beam(lp[1:2], beam=4, words=lexicon, chars=chars) == []
    assert ctc_prefix_beam(lp[1:], beam=4, words=lexicon, chars=chars) == [1, 2]
    grammar = WordModel.learn(["ab"], lexicon=True, weight=0.0, grammar=True)
    assert ctc_prefix_beam(lp[1:], beam=4, words=grammar, chars=chars) == [1, 2]


def test_word_model_is_saved_with_the_task_and_needs_ctc_over_characters():
    task = TextTask(TextTask.Config(lexicon=True, lm_weight=0.5))
    task.fit(["bin blue at f two now", "set red by g nine soon"])
    state = json.loads(json.dumps(task.state()))
    again = TextTask(TextTask.Config())
    again.load_state(state)
    assert again.words.words == {"bin", "blue", "at", "f", "two", "now", "set", "red", "by", "g", "nine", "soon"}
    assert again.words.score("bin", "blue") == task.words.score("bin", "blue") == pytest.approx(0.5 * math.log(2 / 14))
    assert again.words.lexicon and again.words.weight == 0.5
    with pytest.raises(RecipeError, match="unit: char, decoder: ctc"):
        TextTask(TextTask.Config(unit="word", lexicon=True)).fit(["bin blue"])


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0]])
    lp = torch.nn.functional.one_hot(ids, 3).float().log()
    assert ctc_greedy(lp, torch.tensor([8])) == [[1, 1, 2]]
    assert ctc_greedy(lp, torch.tensor([3])) == [[1]]  # only the row's real steps


def test_decoder_beam_search_finds_the_better_sentence():
    """P(a) = 0.6, P(b) = 0.4; after a: a 0.36, b 0.34, end 0.3; after b: end 0.95; after aa: end 1. Greedy writes
    'a a' (0.6 x 0.36 = 0.216, mean log-probability per token -0.511); beam 2 finds 'b' (0.4 x 0.95 = 0.38, -0.484)."""
    bos, eos, a, b = 1, 2, 4, 5
    table = {(): {a: 0.6, b: 0.4}, (a,): {a: 0.36, b: 0.34, eos: 0.3}, (b,): {eos: 0.95, a: 0.025, b: 0.025},
             (a, a): {eos: 1.0}, (a, b): {eos: 1.0}}

    def step(seqs, origin):
        out = torch.full((len(seqs), 6), -1e9)
        for i, seq in enumerate(seqs.tolist()):
            for k, p in table.get(tuple(seq[1:]), {eos: 1.0}).items():
                out[i, k] = math.log(p)
        return out

    assert beam_search(step, 1, bos, eos, 5, beam=1) == [[a, a]]
    assert beam_search(step, 1, bos, eos, 5, beam=2) == [[b]]
    assert beam_search(step, 2, bos, eos, 5, beam=3) == [[b], [b]]  # rows searched side by side


def test_pool_to_averages_windows_and_repeats_when_upsampling():
    x = torch.arange(8.0).view(1, 8, 1)
    down = pool_to(x, torch.tensor([8]), torch.tensor([4]), 4)
    assert down.flatten().tolist() == [0.5, 2.5, 4.5, 6.5]
    up = pool_to(x[:, :2], torch.tensor([2]), torch.tensor([4]), 5)
    assert up.flatten().tolist()[:4] == [0.0, 0.0, 1.0, 1.0]


# -- scores ---------------------------------------------------------------------------------------------------------
def test_word_errors_are_the_edits_wer_counts():
    """One least-cost alignment's edits, read by hand: a substitution, a deletion, an insertion; over random
    sentences their number is the word edit distance, so the counts add up to WER's numerator."""
    from polymodal.tasks.text_metrics import word_edits, word_errors

    assert word_edits("Bin blue at P two now.", "bin blue at b two now") == [("b", "p")]
    assert word_edits("bin blue b two", "bin blue at b two now") == [("at", None), ("now", None)]
    assert word_edits("a b c d", "a c d") == [(None, "b")]
    assert word_edits("", "") == []
    errors = word_errors(["bin blue at p two now", "set red by", "lay"], ["bin blue at b two now", "set red",
                                                                          "lay at t"])
    assert errors == {"substituted": {"b -> p": 1}, "deleted": {"at": 1, "t": 1}, "inserted": {"by": 1}}
    rng = np.random.default_rng(0)
    for _ in range(50):
        hyp, ref = (" ".join(rng.choice(list("abc"), size=rng.integers(0, 6))) for _ in range(2))
        assert len(word_edits(hyp, ref)) == edit_distance(hyp.split(), ref.split())


def test_cider_d_hand_worked():
    """Two rows, N = 2 documents; every n-gram is in one document: idf = ln 2.
    Row 'a b' vs 'a b': orders 1 and 2 cosine 1, orders 3-4 empty: (1 + 1) / 4 x 10 = 5.
    Row 'c' vs 'c d': order 1 cosine ln2^2 / (ln2 x sqrt2 ln2) = 1/sqrt2; length penalty exp(-1/72):
    10/4/sqrt2 x exp(-1/72) = 1.74338435. Mean 3.37169217."""
    assert cider_d(["a b", "c"], [["a b"], ["c d"]]) == pytest.approx(3.3716921749, abs=1e-9)
    # clipping: 'a a' vs 'a b' counts 'a' once (min(2 ln2, ln2) x ln2 over norms 2 ln2 and sqrt2 ln2):
    # order 1 = 1 / (2 sqrt2), order 2 no match: 10/4/(2 sqrt2) = 0.88388348; mean with 1.74338435 = 1.31363391
    assert cider_d(["a a", "c"], [["a b"], ["c d"]]) == pytest.approx(1.3136339131, abs=1e-9)
    # several references: the row's score is the mean over them
    two = cider_d(["a b", "c"], [["a b", "a b"], ["c d"]])
    assert two == pytest.approx(3.3716921749, abs=1e-9)


def test_rouge_l_hand_worked():
    """LCS('the cat sat', 'the cat was sat here') = 3: P = 1, R = 0.6, F(beta 1.2) = 2.44 x 0.6 / (0.6 + 1.44)."""
    assert rouge_l(["the cat sat"], [["the cat was sat here"]]) == pytest.approx(1.464 / 2.04)
    assert rouge_l(["x"], [["y"]]) == 0.0


def test_error_rates_bleu_agree_with_torchmetrics():
    from torchmetrics.text import BLEUScore, CharErrorRate, WordErrorRate

    hyps = ["the cat sat on the mat today", "a quick brown fox jumps over dogs", "bin blue at f two now"]
    refs = ["the cat sat on a mat today", "the quick brown fox jumps over the lazy dog", "bin blue at f two now"]
    assert error_rate(hyps, refs, "word") == pytest.approx(float(WordErrorRate()(hyps, refs)))
    assert error_rate(hyps, refs, "char") == pytest.approx(float(CharErrorRate()(hyps, refs)))
    assert bleu(hyps, [[r] for r in refs]) == pytest.approx(float(BLEUScore()(hyps, [[r] for r in refs])), abs=1e-6)
    assert exact_match(["Bin blue, at F two now."], [["bin blue at f two now"]]) == 1.0  # case and punctuation


def test_text_scores_keys():
    scores = text_scores(["a red circle"], [["a red circle"]])
    assert set(scores) == {"wer", "cer", "exact_match", "bleu", "rouge_l", "cider"}
    assert scores["wer"] == 0 and scores["bleu"] == 1.0  # 4-grams absent from every text: left out of the mean


def test_vocabulary_round_trip():
    v = Vocabulary("word", lowercase=True)
    v.learn(["Bin blue  at f", "set red"])
    assert v.decode(v.encode("bin RED at x")) == "bin red at <unk>"
    c = Vocabulary("char", lowercase=False, tokens=v.tokens)
    with pytest.raises(ValueError, match="a text target is a string"):
        c.encode(["not", "text"])


def test_subword_vocabulary_shifts_the_tokenizers_ids_past_the_specials():
    from polymodal.tasks.text import SubwordVocabulary

    v = SubwordVocabulary("all-minilm-l6-v2", lowercase=False)  # bert-base-uncased's WordPiece, shipped offline
    assert len(v) == 30522 + 4
    ids = v.encode("A red  circle, unbelievably")
    assert ids == [1041, 2421, 4422, 1014, 4899, 8675, 2670, 3571, 6325]  # "a"=1037, "red"=2417, ... plus 4
    assert v.decode(ids + [2, 9]) == "a red circle, unbelievably"  # decoding stops at the end token (2)
    with pytest.raises(RecipeError, match="target.options.tokenizer"):
        SubwordVocabulary("/nonexistent/tokenizer", lowercase=False)


# -- the task end to end -------------------------------------------------------------------------------------------
FREQ = {"a": 300, "b": 700, "c": 1400, "d": 2600}
SR, LETTER, TONE = 8000, 0.16, 0.12


def tone_rows(directory: Path, n: int, seed: int) -> list[dict]:
    """A spoken word made of tones (one per letter, 0.12 s with a 0.04 s gap) and the same letters as an aligned
    signal at 25 steps a second (the letter one-hot for three steps, then a blank step): text is the letters."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        text = "".join(rng.choice(list(FREQ), int(rng.integers(2, 6))))
        t = np.arange(int(TONE * SR)) / SR
        wave = np.concatenate([np.concatenate([0.5 * np.sin(2 * np.pi * FREQ[ch] * t), np.zeros(int(0.04 * SR))])
                               for ch in text])
        wave = (wave + rng.normal(0, 0.01, len(wave))).astype(np.float32)
        sf.write(directory / f"w{seed}_{i}.wav", wave, SR)
        steps = []
        for ch in text:
            steps += [[float(ch == k) + rng.normal(0, 0.05) for k in FREQ] for _ in range(3)]
            steps.append([rng.normal(0, 0.05) for _ in FREQ])
        rows.append({"id": f"r{i}", "audio": f"w{seed}_{i}.wav", "signal": steps, "text": text})
    return rows


@pytest.fixture(scope="module")
def tone_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tones")
    write_jsonl(d / "train.jsonl", tone_rows(d, 240, 1))
    write_jsonl(d / "test.jsonl", tone_rows(d, 40, 2))
    return d


def tone_recipe(d: Path, inputs: list[dict], **training) -> dict:
    return {"data": {"train": str(d / "train.jsonl"), "test": str(d / "test.jsonl")}, "inputs": inputs,
            "target": {"column": "text", "task": "text"}, "model": {"dim": 64},
            "training": {"epochs": 12, "batch_size": 16, "lr": 3e-3, "progress": False, "seed": 0, **training}}


AUDIO = {"name": "audio", "modality": "audio", "options": {"sample_rate": SR}}
SIGNAL = {"name": "signal", "modality": "signal", "encoder": {"type": "conv1d", "channels": [64]}}  # 12.5 steps/s


@pytest.fixture(scope="module")
def av_model(tone_dir, tmp_path_factory):
    rec = tone_recipe(tone_dir, [SIGNAL, AUDIO], epochs=15, modality_dropout={"signal": 0.3, "audio": 0.3})
    return pm.fit(rec, out=tmp_path_factory.mktemp("av") / "m")


def test_ctc_speech_from_tones_reloads_and_decodes(tone_dir, tmp_path):
    model = pm.fit(tone_recipe(tone_dir, [AUDIO]), out=tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())["recipe"]
    assert cfg["inputs"][0]["encoder"]["type"] == "conv1d" and cfg["inputs"][0]["encoder"]["channels"] == [128, 128]
    test = model.metrics["test"]
    assert test["cer"] <= 0.05 and test["exact_match"] >= 0.85
    assert set(test) >= {"wer", "cer", "bleu", "rouge_l", "cider", "exact_match"}
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:6]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    preds = model.predict(rows)
    loaded = pm.load(tmp_path / "m")
    assert [p["text"] for p in loaded.predict(rows)] == [p["text"] for p in preds]
    assert sum(p["text"] == r["text"] for p, r in zip(preds, rows)) >= 5
    beam = loaded.evaluate(rows, beam=4)
    assert beam["cer"] <= test["cer"] + 0.05  # beam search is no worse than greedy here
    assert loaded.parts.net.beam == 1  # an evaluate option does not change the model


def test_search_chosen_on_validation_is_kept_and_reloaded(tone_dir, tmp_path):
    """`search: validation`: after training each candidate search is scored (WER) on the validation rows, the best
    kept in the task's state; a reloaded model decodes with it."""
    rec = tone_recipe(tone_dir, [AUDIO], epochs=4)
    rec["target"]["options"] = {"search": "validation", "beam": 4}
    model = pm.fit(rec, out=tmp_path / "m")
    decoding = model.metrics["training"]["decoding"]
    tried = decoding["validation"]
    assert list(tried)[:2] == ["greedy", "lexicon_lm0.0_beam4"] and len(tried) == 9  # one input: no confident
    assert tried[decoding["chosen"]] == min(tried.values())
    assert list(tried).index(decoding["chosen"]) == min(i for i, v in enumerate(tried.values())
                                                          if v == min(tried.values()))  # ties: the plainest
    loaded = pm.load(tmp_path / "m")
    assert loaded.parts.task.chosen == decoding["settings"]
    assert loaded.parts.net.beam == decoding["settings"]["beam"]
    assert (loaded.parts.net.words is not None) == decoding["settings"]["lexicon"]
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:6]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    assert loaded.predict(rows) == model.predict(rows)
    assert "decoding chosen on the validation rows" in (tmp_path / "m" / "train.log").read_text()
    shown = CliRunner().invoke(app, ["info", str(tmp_path / "m")])
    assert f"beam {decoding['settings']['beam']}" in shown.output and "search (chosen on validation)" in shown.output
    rec["target"]["options"] = {"search": "validation", "unit": "word"}
    with pytest.raises(RecipeError, match="search"):
        pm.fit(rec, out=tmp_path / "bad")


def test_av_fusion_with_either_input_missing(av_model, tone_dir):
    """The signal (12.5 steps a second after its encoder) is the time reference; with it missing, the output length
    comes from the audio's (25 steps a second) times the ratio of their lengths learnt in training: 0.5."""
    head = av_model.parts.net.head
    assert head.align_to == "signal" and float(head.ratio[1]) == pytest.approx(0.5, abs=0.05)
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    both = av_model.evaluate(rows)
    audio_only = av_model.evaluate([{k: v for k, v in r.items() if k != "signal"} for r in rows])
    signal_only = av_model.evaluate([{k: v for k, v in r.items() if k != "audio"} for r in rows])
    assert both["cer"] <= 0.05
    assert audio_only["cer"] <= 0.15 and signal_only["cer"] <= 0.15
    assert set(both["reliance"]) == {"signal", "audio"}


def test_joined_ctc_models_read_each_row_from_the_members_that_see_it(av_model, tone_dir, tmp_path):
    """`pm.ensemble` of CTC models: the av model held to its signal, and the av model whole. A row without the
    signal is read from the whole model alone (its audio head); a row with both from both members (the mean of
    their step probabilities, or each text rescored by the members that see the row); reloaded as it was."""
    from polymodal.data import Collator, as_table, read_inputs
    from polymodal.tasks.text import SPECIALS
    from polymodal.tasks.text_decoding import ctc_rescore_neighbours

    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:6]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    rows[4:] = [{k: v for k, v in r.items() if k != "signal"} for r in rows[4:]]  # two rows with the audio alone
    joined = pm.ensemble([(av_model, ["signal"]), av_model], out=tmp_path / "e")
    parts, net = joined.parts, joined.parts.net
    assert net.views == [("signal",), None]
    table = read_inputs(as_table(rows), parts.inputs, parts.task, None, "error", require_target=False,
                        show_progress=False)
    batch, _ = Collator(table, parts.modalities, parts.task)(list(range(len(rows))))
    with torch.no_grad():
        assert net.sees(batch).tolist() == [[True, True]] * 4 + [[False, True]] * 2
        mean, steps = net.log_probs(batch)
        member = av_model.parts.net
        encoded = member.encode(batch)
        signal_alone, signal_steps = member.aux["signal"](encoded)
        fused, fused_steps = member.head(encoded)
        audio_alone, audio_steps = member.aux["audio"](encoded)
        for i in range(4):  # both members, on the signal's steps (the first member that sees the row)
            n = int(steps[i])
            assert n == int(signal_steps[i])
            expected = (signal_alone[i, :n].exp() + fused[i, :n].exp()) / 2  # same rate: both on the signal's steps
            assert torch.allclose(mean[i, :n].exp(), expected, atol=1e-5)
        for i in (4, 5):  # the whole model alone, read by its audio head
            n = int(audio_steps[i])
            assert int(steps[i]) == n and torch.allclose(mean[i, :n], audio_alone[i, :n], atol=1e-5)
        net.combine = "rescore"
        outputs = net.member_outputs(batch)
        read = [ctc_decode(mean, steps, net.beam, net.words, net.chars)] + \
            [ctc_decode(lp, st, net.beam, net.words, net.chars) for lp, st in outputs]
        weights = torch.tensor([[1.0, 1.0]] * 4 + [[0.0, 1.0]] * 2)
        assert net.decode_ids(batch, net.beam) == ctc_rescore(outputs, read, net.words, net.chars, weights)[0]
        # neighbours: that text, then its one-word changes the lexicon allows weighed by the same members
        texts = [json.loads(x)["text"] for x in (tone_dir / "train.jsonl").read_text().splitlines()]
        net.words, net.chars = WordModel.learn(texts, True, 0.0), [None] * len(SPECIALS) + list(parts.task.vocab.tokens)
        net.neighbours = True
        read = [ctc_decode(mean, steps, 4, net.words, net.chars)] + \
            [ctc_decode(lp, st, 4, net.words, net.chars) for lp, st in outputs]
        kept = ctc_rescore(outputs, read, net.words, net.chars, weights)[0]
        assert net.decode_ids(batch, 4) == ctc_rescore_neighbours(outputs, kept, net.words, net.chars, weights)
        net.words, net.chars, net.neighbours = None, None, False
    loaded = pm.load(tmp_path / "e")
    loaded.parts.net.combine = "rescore"
    assert loaded.predict(rows) == joined.predict(rows)
    assert [p["text"] for p in joined.predict(rows[4:])] == [p["text"] for p in av_model.predict(rows[4:])]


def test_explained_value_is_the_share_of_the_full_models_text():
    task = TextTask(TextTask.Config())
    task.fit(["abcd", "abxde"])  # characters a b c d e x

    def ids(*texts: str) -> torch.Tensor:
        rows = [task.encode(t) + [2] for t in texts]  # each ends with the end token
        out = torch.full((len(rows), 8), -1.0)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.float)
        return out

    value = task.explained_value(ids("abxd", "", "abcde", "abcd"), ids("abcd", "abcd", "abcd", "abcd"))
    assert value.tolist() == pytest.approx([0.75, 0.0, 0.8, 1.0])  # 1 - edits / the longer text's length


def test_explain_a_transcription_shares_it_out_between_the_inputs(av_model, tone_dir, tmp_path):
    """Shapley values over the inputs of a text model: each input alone writes most of the text here (either is
    enough), so each gets a good part of it; they add up to v(all) - v(none) = 1 - what no input writes."""
    from polymodal.data import as_table, read_inputs
    from polymodal.evaluation.evaluate import run_outputs
    from polymodal.evaluation.reliance import without

    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:8]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    result = av_model.explain(rows, index=0, out=tmp_path / "row")
    assert set(result["shapley"]) == {"signal", "audio"} and result["prediction"]["text"]
    parts = av_model.parts  # v(none): the text written with every input removed, against the full model's
    table = read_inputs(as_table(rows[:1]), parts.inputs, parts.task, None, "error", require_target=False,
                        show_progress=False)
    full, _ = run_outputs(parts, table)
    none, _ = run_outputs(parts, without(table, {"signal", "audio"}))
    v_none = float(parts.task.explained_value(none, full)[0])
    assert sum(result["shapley"].values()) == pytest.approx(1.0 - v_none, abs=1e-6)
    assert all(v > 0.2 for v in result["shapley"].values())
    assert (tmp_path / "row" / "report.html").is_file() and (tmp_path / "row" / "shapley.png").is_file()
    overall = av_model.explain(rows, global_=True, out=tmp_path / "all")
    assert overall["rows"] == 8 and sum(overall["shapley_share"].values()) == pytest.approx(1.0)
    assert (tmp_path / "all" / "report.html").is_file()


def test_av_model_has_a_ctc_head_per_input_that_reads_rows_left_with_its_input(av_model, tone_dir, tmp_path):
    """Two inputs: auxiliary CTC heads by default (model.unimodal_heads 1.0), trained beside the fused head; a row
    with one input left is read by that input's head (alone: head); saved, reloaded; model directories from
    before the heads load without them."""
    import shutil

    from polymodal.tasks.text import SPECIALS

    net = av_model.parts.net
    assert set(net.aux) == {"signal", "audio"} and net.alone_by_head
    assert "train_unimodal_loss=" in (av_model.directory / "train.log").read_text()
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:8]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    audio_rows = [{k: v for k, v in r.items() if k != "signal"} for r in rows]
    predicted = [p["text"] for p in av_model.predict(audio_rows)]
    both = [p["text"] for p in av_model.predict(rows)]
    out = net.aux["audio"].out
    kept = {k: v.clone() for k, v in out.state_dict().items()}
    try:  # the audio head made to say "a" at every step: rows with the audio alone read "a", the others do not move
        with torch.no_grad():
            out.weight.zero_()
            out.bias.fill_(-10.0)
            out.bias[len(SPECIALS) + av_model.parts.task.vocab.tokens.index("a")] = 10.0
        assert [p["text"] for p in av_model.predict(audio_rows)] == ["a"] * len(rows)
        assert [p["text"] for p in av_model.predict(rows)] == both
    finally:
        out.load_state_dict(kept)
    loaded = pm.load(av_model.directory)
    assert set(loaded.parts.net.aux) == {"signal", "audio"}
    assert [p["text"] for p in loaded.predict(audio_rows)] == predicted
    old = tmp_path / "old"  # a directory as saved before: no "aux" in the task state, no aux.* weights
    shutil.copytree(av_model.directory, old)
    config = json.loads((old / "config.json").read_text())
    del config["task"]["state"]["aux"]
    (old / "config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    weights = {k: v for k, v in load_file(str(old / "model.safetensors")).items() if not k.startswith("aux.")}
    save_file(weights, str(old / "model.safetensors"))
    assert pm.load(old).parts.net.aux is None


def test_read_by_confident_lets_the_surest_head_read_each_row(av_model, tone_dir):
    """read_by: confident: a row with every input goes to whichever head is surest of its best path."""
    from polymodal.tasks.text import SPECIALS

    net = av_model.parts.net
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:8]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    fused = [p["text"] for p in av_model.predict(rows)]
    out = net.aux["audio"].out
    kept = {k: v.clone() for k, v in out.state_dict().items()}
    try:
        net.read_by = "confident"
        with torch.no_grad():  # the audio head certain of "a" at every step: it reads every row
            out.weight.zero_()
            out.bias.fill_(-30.0)
            out.bias[len(SPECIALS) + av_model.parts.task.vocab.tokens.index("a")] = 30.0
        assert [p["text"] for p in av_model.predict(rows)] == ["a"] * len(rows)
        with torch.no_grad():  # ... and unsure of everything (every token equally likely): never
            out.bias.zero_()
        signal = net.aux["signal"].out
        kept_signal = {k: v.clone() for k, v in signal.state_dict().items()}
        with torch.no_grad():
            signal.weight.zero_()
            signal.bias.zero_()
        try:
            assert [p["text"] for p in av_model.predict(rows)] == fused
        finally:
            signal.load_state_dict(kept_signal)
    finally:
        out.load_state_dict(kept)
        net.read_by = "fused"


def test_read_by_rescore_keeps_the_text_the_heads_find_likeliest(av_model, tone_dir):
    """read_by: rescore: each head that may read a row (the fused one, each present input's own) proposes its
    search's text and ctc_rescore over those heads' outputs picks one; a row left with one input is read by that
    input's head alone; a head certain of "a" at every step outvotes the others."""
    from polymodal.data import Collator, as_table, read_inputs
    from polymodal.tasks.text import SPECIALS

    net, parts = av_model.parts.net, av_model.parts
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:8]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    rows[5:] = [{k: v for k, v in r.items() if k != "signal"} for r in rows[5:]]  # three rows with the audio alone
    table = read_inputs(as_table(rows), parts.inputs, parts.task, None, "error", require_target=False,
                        show_progress=False)
    batch, _ = Collator(table, parts.modalities, parts.task)(list(range(len(rows))))
    net.eval()
    try:
        net.read_by = "rescore"
        with torch.no_grad():
            encoded = net.encode(batch)
            fused = net.head(encoded)
            heads = {n: net.aux[n](encoded) for n in net.aux}
            both = [fused] + [heads[n] for n in net.aux]
            outputs = [(lp[:5], st[:5]) for lp, st in both]
            reads = [ctc_decode(lp, st, 1) for lp, st in outputs]
            want = ctc_rescore(outputs, reads)[0] + ctc_decode(heads["audio"][0][5:], heads["audio"][1][5:], 1)
            assert net.decode_ids(batch, 1) == want
        assert [p["text"] for p in av_model.predict(rows)] == [parts.task.vocab.decode(w) for w in want]
        out = net.aux["audio"].out
        kept = {k: v.clone() for k, v in out.state_dict().items()}
        try:
            with torch.no_grad():  # the audio head certain of "a": no other text survives its log-likelihood
                out.weight.zero_()
                out.bias.fill_(-30.0)
                out.bias[len(SPECIALS) + parts.task.vocab.tokens.index("a")] = 30.0
            assert [p["text"] for p in av_model.predict(rows)] == ["a"] * len(rows)
        finally:
            out.load_state_dict(kept)
    finally:
        net.read_by = "fused"
    task = parts.task
    config = task.config
    try:  # `search: validation` tries every search read each of the three ways
        task.config = config.model_copy(update={"search": "validation"})
        names = [task.decoding_name(c) for c in task.decoding_candidates(net)]
    finally:
        task.config = config
    assert len(names) == 35 and names[0] == "greedy" and names[9] == "greedy_confident"
    assert names[18] == "greedy_heads_rescored" and names[26] == "grammar_lm2.0_beam8_heads_rescored"
    # then each rescored search held to the lexicon again with the kept text's one-word changes weighed
    assert names[27:] == [n + "_neighbours" for n in names[19:27]]


def test_wer_against_snr(av_model, tone_dir, tmp_path):
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:20]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    report = av_model.evaluate(rows, snr=[10, -10], out=tmp_path)
    curve = report["wer_vs_snr"]
    assert curve["snr_db"] == ["clean", 10.0, -10.0] and curve["metric"] == "wer"
    assert curve["signal"] == [curve["signal"][0]] * 3  # the audio is absent: noise changes nothing
    assert curve["audio"][2] > curve["audio"][0]  # -10 dB hurts the audio alone
    assert curve["all"][2] <= curve["audio"][2]  # the signal carries the words the noise hides
    assert curve["all"][0] == report["wer"]
    assert Path(curve["plot"]).is_file()
    again = av_model.evaluate(rows, snr=[10, -10])["wer_vs_snr"]
    assert again["audio"] == curve["audio"]  # seeded noise


def test_captions_with_the_attention_decoder(caption_dir, tmp_path):
    rows = caption_rows(caption_dir, 1)
    rec = {"data": {"train": str(caption_dir / "train.jsonl"), "test": str(caption_dir / "test.jsonl")},
           "inputs": [{"name": "image", "modality": "image", "options": {"size": 32}}],
           "target": {"column": "caption", "task": "text", "options": {"unit": "word", "beam": 2}},
           "model": {"dim": 64}, "training": {"epochs": 15, "batch_size": 16, "lr": 3e-3, "progress": False}}
    model = pm.fit(rec, out=tmp_path / "m")
    assert model.parts.net.head.__class__.__name__ == "AttentionDecoder"
    assert model.metrics["test"]["exact_match"] >= 0.9
    assert model.metrics["test"]["cider"] > 1.0
    pred = model.predict({"image": str(caption_dir / rows[0]["image"])})
    assert pred["text"].startswith("a ") and len(pred["text"].split()) == 3


def test_captions_in_a_pretrained_tokenizers_pieces(caption_dir, tmp_path):
    """`unit: subword` with a tokenizer from a local directory (WordPiece pieces: "triangle" is "tri" "##angle"):
    the attention decoder writes its ids; the model directory keeps the tokenizer, so it reloads without the
    source."""
    import shutil

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["[PAD]", "[UNK]", "a", "red", "green", "blue", "circle", "square", "tri", "##angle", "##s"]
    tk = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tk.normalizer, tk.pre_tokenizer, tk.decoder = normalizers.Lowercase(), pre_tokenizers.Whitespace(), \
        decoders.WordPiece()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        tmp_path / "wordpiece")
    rows = caption_rows(caption_dir, 1)
    rec = {"data": {"train": str(caption_dir / "train.jsonl"), "test": str(caption_dir / "test.jsonl")},
           "inputs": [{"name": "image", "modality": "image", "options": {"size": 32}}],
           "target": {"column": "caption", "task": "text",
                      "options": {"unit": "subword", "tokenizer": str(tmp_path / "wordpiece")}},
           "model": {"dim": 64}, "training": {"epochs": 15, "batch_size": 16, "lr": 3e-3, "progress": False}}
    model = pm.fit(rec, out=tmp_path / "m")
    vocab = model.parts.task.vocab
    assert len(vocab) == len(pieces) + 4 and vocab.encode("A red triangle") == [6, 7, 12, 13]
    assert model.parts.net.head.__class__.__name__ == "AttentionDecoder"
    assert model.metrics["test"]["exact_match"] >= 0.9
    shutil.rmtree(tmp_path / "wordpiece")
    loaded = pm.load(tmp_path / "m")
    assert Path(loaded.parts.task.vocab.tokenizer.name_or_path) == tmp_path / "m" / "target_tokenizer"
    image = {"image": str(caption_dir / rows[0]["image"])}
    assert loaded.predict(image) == model.predict(image)
    assert model.predict(image)["text"].startswith("a ")


def test_quick_form_cli(tone_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m"
    res = runner.invoke(app, ["fit", "--train", str(tone_dir / "train.jsonl"), "--test", str(tone_dir / "test.jsonl"),
                              "--input", "audio", "--target", "text", "--task", "text", "--epochs", "2", "-q",
                              "--set", "inputs.0.options.sample_rate=8000", "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(out), "--data", str(tone_dir / "test.jsonl"), "--json", "--beam", "2"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"wer", "cer", "bleu", "rouge_l", "cider", "exact_match"} <= set(report)
    assert set(report["word_errors"]) == {"substituted", "deleted", "inserted"}
    shown = runner.invoke(app, ["evaluate", str(out), "--data", str(tone_dir / "test.jsonl")])
    assert shown.exit_code == 0 and ("commonest word errors" in shown.output) == any(report["word_errors"].values())
    res = runner.invoke(app, ["predict", str(out), str(tone_dir / "test.jsonl")])
    assert res.exit_code == 0 and "text" in json.loads(res.stdout.splitlines()[0])
    res = runner.invoke(app, ["evaluate", str(out), "--data", str(tone_dir / "test.jsonl"), "--snr", "x"])
    assert res.exit_code != 0 and "--snr takes numbers" in res.output


def test_outputs_of_batches_with_texts_of_other_lengths_are_padded():
    from polymodal.evaluation.evaluate import cat_padded

    out = cat_padded([torch.ones(2, 3, dtype=torch.long), torch.full((1, 5), 2)], 0)
    assert out.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [2, 2, 2, 2, 2]]


def test_distill_divergence_is_the_teachers_kl_per_step_pinned_by_hand():
    from polymodal.tasks.text import distill_divergence

    t = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.3, 0.7]],
                      [[0.2, 0.8], [0.2, 0.8], [0.2, 0.8]]]).log()
    s = torch.tensor([[[0.25, 0.75], [0.9, 0.1], [0.5, 0.5]],
                      [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]]).log()
    steps = torch.tensor([2, 3])
    kl1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # row 0, step 0; step 1 equal; step 2 padding
    kl2 = 0.2 * math.log(0.2 / 0.5) + 0.8 * math.log(0.8 / 0.5)  # row 1, every step
    both = torch.tensor([True, True])
    assert float(distill_divergence((t, steps), (s, steps), both)) == pytest.approx((kl1 / 2 + kl2) / 2, abs=1e-6)
    assert float(distill_divergence((t, steps), (s, steps), torch.tensor([False, True]))) == pytest.approx(kl2)
    assert float(distill_divergence((t, steps), (t, steps), both)) == pytest.approx(0.0, abs=1e-6)
    # a teacher at twice the student's rate: its step pairs averaged first ([0.7, 0.3] against [0.6, 0.4])
    fast = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]]).log()
    slow = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]]).log()
    kl = 0.7 * math.log(0.7 / 0.6) + 0.3 * math.log(0.3 / 0.4)
    value = distill_divergence((fast, torch.tensor([4])), (slow, torch.tensor([2])), torch.tensor([True]))
    assert float(value) == pytest.approx(kl / 2, abs=1e-6)
    student = s.clone().requires_grad_()
    teacher = t.clone().requires_grad_()
    distill_divergence((teacher, steps), (student, steps), both).backward()
    assert teacher.grad is None and student.grad is not None  # the teacher is not taught


def test_distill_from_teaches_the_other_inputs_head(tone_dir, tmp_path):
    """`distill_from: audio`: the signal's own head (12.5 steps a second) learns the audio head's (25 a second,
    resampled) per-step distributions beside the text: after the same training its divergence from the audio
    head is smaller than without the teacher, and the loss is logged."""
    from polymodal.data import Collator, as_table, read_inputs
    from polymodal.tasks.text import distill_divergence

    def divergence(model) -> float:
        rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:16]
        for r in rows:
            r["audio"] = str(tone_dir / r["audio"])
        parts = model.parts
        table = read_inputs(as_table(rows), parts.inputs, parts.task, None, "error", require_target=False,
                            show_progress=False)
        batch, _ = Collator(table, parts.modalities, parts.task)(list(range(len(rows))))
        net = parts.net.eval()
        with torch.no_grad():
            encoded = net.encode(batch)
            teacher, student = net.aux["audio"](encoded), net.aux["signal"](encoded)
        return float(distill_divergence(teacher, student, torch.ones(len(rows), dtype=torch.bool)))

    plain = pm.fit(tone_recipe(tone_dir, [SIGNAL, AUDIO], epochs=6), out=tmp_path / "plain")
    rec = tone_recipe(tone_dir, [SIGNAL, AUDIO], epochs=6, select="robust")
    rec["target"]["options"] = {"distill_from": "audio", "distill_weight": 2.0}
    taught = pm.fit(rec, out=tmp_path / "taught")
    assert taught.parts.net.distill_from == "audio"
    assert taught.metrics["training"]["monitor"] == "val_robust_cer"  # each input alone scored on validation too
    assert "train_distill_loss=" in (tmp_path / "taught" / "train.log").read_text()
    assert divergence(taught) < 0.5 * divergence(plain)  # measured: 0.03 against 0.39
    assert pm.load(tmp_path / "taught").predict([{"audio": str(tone_dir / "w2_0.wav")}])[0]["text"]
    for options, message in [({"distill_from": "video"}, "no input 'video'"),
                             ({"distill_from": "audio", "decoder": "attention"}, "CTC head per input")]:
        rec["target"]["options"] = options
        with pytest.raises(RecipeError, match=message):
            pm.fit(rec, out=tmp_path / "bad")
    one = tone_recipe(tone_dir, [AUDIO], epochs=1)
    one["target"]["options"] = {"distill_from": "audio"}
    with pytest.raises(RecipeError, match="CTC head per input"):
        pm.fit(one, out=tmp_path / "bad1")


def test_distillation_skips_rows_whose_teacher_input_augmentation_corrupted(av_model, tone_dir):
    """With `training.augment`, the teacher head teaches only on rows whose own input is uncorrupted (a noisy audio
    track's head is a wrong teacher); `distill_augmented: true` teaches on every row that has both inputs."""
    from polymodal.data import Collator, as_table, read_inputs
    from polymodal.tasks.text import distill_divergence

    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:6]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    parts, net = av_model.parts, av_model.parts.net.eval()
    table = read_inputs(as_table(rows), parts.inputs, parts.task, "text", "error", show_progress=False)
    batch, target = Collator(table, parts.modalities, parts.task)(list(range(6)))
    batch["audio"].augmented = torch.tensor([True, False, False, True, False, False])
    with torch.no_grad():
        encoded = net.encode(batch)
        teacher, student = net.aux["audio"](encoded), net.aux["signal"](encoded)
        per_row = [float(distill_divergence(teacher, student, torch.arange(6) == i)) for i in range(6)]
        try:
            net.distill_from = "audio"
            skipped = float(net.losses(batch, target)[2])
            net.distill_augmented = True
            every = float(net.losses(batch, target)[2])
        finally:
            net.distill_from, net.distill_augmented = None, False
    assert skipped == pytest.approx(sum(per_row[i] for i in (1, 2, 4, 5)) / 4, rel=1e-5)
    assert every == pytest.approx(sum(per_row) / 6, rel=1e-5)
    assert abs(skipped - every) > 1e-4  # the corrupted rows' divergences differ from the rest's


def test_ctc_ensemble_reads_the_mean_of_its_members_step_probabilities(tone_dir, tmp_path):
    """`training.ensemble: 2` over a CTC model: at every step the members' token probabilities are averaged, then
    one search reads them (chosen on the ensemble's validation outputs with `search: validation`); a row left with
    one input is read by each member's head for it; reloaded as it was."""
    from polymodal.data import Collator, as_table, read_inputs

    rec = tone_recipe(tone_dir, [SIGNAL, AUDIO], epochs=3, ensemble=2)
    rec["target"]["options"] = {"search": "validation", "beam": 2}
    model = pm.fit(rec, out=tmp_path / "m")
    assert [m["seed"] for m in model.metrics["training"]["members"]] == [0, 1]
    decoding = model.metrics["training"]["decoding"]  # the ensemble's own choice (its members chose none)
    # each search, averaged or rescored; each rescored one held to the lexicon also with its one-word changes
    assert len(decoding["validation"]) == 26 and "test" in model.metrics
    assert "lexicon_lm0.0_beam2_rescore_neighbours" in decoding["validation"]
    task = model.parts.task
    settings = next(c for c in task.decoding_candidates(model.parts.net)
                    if task.decoding_name(c) == "lexicon_lm0.0_beam2_rescore_neighbours")
    again = TextTask(TextTask.Config(**rec["target"]["options"]))
    again.load_state(json.loads(json.dumps({**task.state(), "search": settings})))
    ensemble = again.ensemble_net(list(model.parts.net.members))
    assert ensemble.neighbours and ensemble.combine == "rescore" and ensemble.beam == 2  # a chosen one is kept
    assert "lexicon_lm0.0_beam2_rescore" in decoding["validation"]
    assert "decoding chosen" not in (tmp_path / "m" / "train.log").read_text().split("ensemble member 2")[0]
    net = model.parts.net
    assert len(net.members) == 2 and net.beam == model.parts.task.chosen["beam"]
    rows = [json.loads(x) for x in (tone_dir / "test.jsonl").read_text().splitlines()][:8]
    for r in rows:
        r["audio"] = str(tone_dir / r["audio"])
    rows[5:] = [{k: v for k, v in r.items() if k != "signal"} for r in rows[5:]]  # three rows with the audio alone
    parts = model.parts
    table = read_inputs(as_table(rows), parts.inputs, parts.task, None, "error", require_target=False,
                        show_progress=False)
    batch, _ = Collator(table, parts.modalities, parts.task)(list(range(len(rows))))
    net.eval()
    with torch.no_grad():
        mean, steps = net.log_probs(batch)
        probs = []
        for member in net.members:
            encoded = member.encode(batch)
            both, _ = member.head(encoded)
            alone, alone_steps = member.aux["audio"](encoded)
            p = torch.zeros(len(rows), mean.shape[1], mean.shape[2])
            p[:5, :both.shape[1]] = both[:5].exp()
            p[5:, :alone.shape[1]] = alone[5:].exp()
            probs.append(p)
        expected = torch.stack(probs).mean(0)
    assert steps[5:].tolist() == alone_steps[5:].tolist()
    valid = torch.arange(mean.shape[1])[None] < steps[:, None]
    assert torch.allclose(mean.exp()[valid], expected[valid], atol=1e-5)
    with torch.no_grad():  # rescore: of the mean's reading and each member's, the text the members find likeliest
        net.combine = "rescore"
        outputs = [net.member_log_probs(m, batch) for m in net.members]
        read = [ctc_decode(mean, steps, net.beam, net.words, net.chars)] + \
            [ctc_decode(lp, st, net.beam, net.words, net.chars) for lp, st in outputs]
        assert net.decode_ids(batch, net.beam) == ctc_rescore(outputs, read, net.words, net.chars)[0]
        net.combine = model.parts.task.chosen["combine"]
    loaded = pm.load(tmp_path / "m")
    assert loaded.predict(rows) == model.predict(rows)
    assert loaded.parts.net.beam == net.beam
    assert loaded.parts.net.combine == net.combine == model.parts.task.chosen["combine"]  # the reading chosen, kept
    attention = tone_recipe(tone_dir, [AUDIO], epochs=1, ensemble=2)
    attention["target"]["options"] = {"decoder": "attention"}
    with pytest.raises(RecipeError, match="CTC decoder only"):
        pm.fit(attention, out=tmp_path / "bad")
    assert not (tmp_path / "bad" / "members").exists()  # refused before any member trained
