"""Text outputs (issue 15): speech recognition, lip reading and audio-visual speech recognition on grid-s1 whole
sentences, Whisper tiny.en zero-shot on the same test split, easy-VQA captions and answers generated as text.
Validation is carved from train; each test split is scored once, at the end of its run.

    .venv/bin/python benchmarks/sequence_outputs.py [--configs audio_conv1d,av,...] [--epochs N] [--out DIR]

Each config runs in its own process (peak RSS is its own) and prints one JSON line; a table follows.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT.parent / "shared" / "data" / "grid-s1"
SNRS = [10.0, 5.0, 0.0, -5.0]

LIPS = {"name": "lips", "modality": "video", "options": {"size": 48, "channels": 1, "frames": "all", "max_frames": 75},
        "encoder": {"type": "lip_cnn"}}
WIDE_LIPS = {**LIPS, "options": {**LIPS["options"], "size": [48, 80]}}
AUDIO = {"name": "audio", "modality": "audio"}  # log-mel; the text task's default encoder: conv1d at 25 steps a second
NOISY_AUDIO = {**AUDIO, "options": {"normalize": "per_clip"}}  # per-clip standardisation: what noise training needs
WHISPER = {"name": "audio", "modality": "audio", "encoder": {"type": "whisper"}}
# SpecAugment on the log-mel features: two time spans of up to 5% of the clip, two bands of up to 8 of 64 mel bins
SPECAUG = {"name": "audio", "modality": "audio",
           "encoder": {"type": "conv1d", "channels": [128, 128], "time_masks": 2, "time_mask_width": 0.05,
                       "feature_masks": 2, "feature_mask_width": 8}}
LM_WEIGHTS = [0.0, 0.5, 1.0, 2.0]  # the word bigram's weights tried on validation (lexicon on, beam 8)
GRID_TRAINING = {"epochs": 40, "patience": 10, "batch_size": 16, "lr": 2e-3}

CONFIGS = {
    "audio_conv1d": {"inputs": [AUDIO], "snr": True},
    # the package's search chosen on the fit's validation rows, one model and three (`training.ensemble`)
    "audio_conv1d_search": {"inputs": [AUDIO], "snr": False, "options": {"search": "validation"}},
    "audio_conv1d_ens3": {"inputs": [AUDIO], "snr": False, "options": {"search": "validation"},
                          "training": {"ensemble": 3}},
    "audio_words": {"inputs": [AUDIO], "snr": False, "unit": "word"},  # GRID's 51 words as the tokens
    "audio_noisy": {"inputs": [NOISY_AUDIO], "snr": True,  # trained as av is, for its curve
                    "training": {"augment": 0.5, "augment_with": ["white_noise"]}},
    "audio_whisper": {"inputs": [WHISPER], "snr": False},
    # the same with the CTC search (greedy, lexicon or grammar, at each bigram weight) chosen on validation
    "audio_whisper_search": {"inputs": [WHISPER], "snr": False, "search": True},
    # the package's own choice of the search on the validation rows its fit carves (`search: validation`), then
    # the model trained again on training + validation rows for the chosen epochs (`training.refit`)
    "audio_whisper_refit": {"inputs": [WHISPER], "snr": False, "options": {"search": "validation"},
                            "training": {"refit": True}},
    # three such models (seeds 0-2, one validation split) as one: their per-step probabilities averaged, the search
    # chosen on the ensemble's validation outputs (`training.ensemble`)
    "audio_whisper_ens3": {"inputs": [WHISPER], "snr": False, "options": {"search": "validation"},
                           "training": {"ensemble": 3}},
    # longer training with SpecAugment; the CTC search (greedy, or beam 8 held to the training words with a word
    # bigram model at a weight) chosen on a validation split carved here, then the test split scored once
    "audio_specaug": {"inputs": [SPECAUG], "snr": False, "search": True,
                      "training": {"epochs": 100, "patience": 20}},
    "lips": {"inputs": [LIPS], "snr": False, "training": {"epochs": 60, "patience": 15}},
    "av": {"inputs": [LIPS, NOISY_AUDIO], "snr": True,
           "training": {"modality_dropout": {"lips": 0.25, "audio": 0.25}, "augment": 0.5,
                        "augment_with": ["white_noise"]}},
    # lips read alone at test time by a model trained on lips and audio: the audio's own CTC head teaches the lips'
    # head step by step (`distill_from`); the crops at their own aspect (48 x 80, chosen for the digit on
    # validation: real_data.py lips_all_lipcnn_wide); the search chosen on the validation rows read from the lips
    # alone, the test split scored once from the lips alone (and once with both), with GRID's letter and digit slots
    "lips_distilled": {"inputs": [WIDE_LIPS, AUDIO], "snr": False, "search": True, "alone": "lips",
                       "options": {"distill_from": "audio"},
                       "training": {"epochs": 60, "patience": 15, "select": "robust"}},
    # the same trained longer (the lips-alone CER still fell at epoch 60 of the cosine schedule)
    "lips_distilled_long": {"inputs": [WIDE_LIPS, AUDIO], "snr": False, "search": True, "alone": "lips",
                            "options": {"distill_from": "audio"},
                            "training": {"epochs": 80, "patience": 20, "select": "robust"}},
    # the av model with the audio's head teaching the lips' head (`distill_from`), the crops at their own aspect and
    # the search chosen by the fit on its validation rows
    "av_distilled": {"inputs": [WIDE_LIPS, NOISY_AUDIO], "snr": True,
                     "options": {"distill_from": "audio", "search": "validation"},
                     "training": {"modality_dropout": {"lips": 0.25, "audio": 0.25}, "augment": 0.5,
                                  "augment_with": ["white_noise"]}},
    # av_distilled with the reading (fused head, surest head, or every head's text rescored by all heads) chosen on
    # the fit's validation rows averaged over clean and the SNRs below (the goal is a noisy one), at the search the
    # fit chose on clean validation; the test split scored once, after that choice
    "av_distilled_noisy_choice": {"inputs": [WIDE_LIPS, NOISY_AUDIO], "snr": True, "read_by_under_noise": True,
                                  "options": {"distill_from": "audio", "search": "validation"},
                                  "training": {"modality_dropout": {"lips": 0.25, "audio": 0.25}, "augment": 0.5,
                                               "augment_with": ["white_noise"]}},
    # the same, trained as lips_distilled was for its lips head (60 epochs, the epoch chosen by the mean of the
    # validation scores with both inputs and with each alone: `select: robust`), the audio's head teaching only on
    # rows whose audio augmentation left clean (`distill_augmented: false`, the default since the eighth session)
    "av_robust_noisy_choice": {"inputs": [WIDE_LIPS, NOISY_AUDIO], "snr": True, "read_by_under_noise": True,
                               "options": {"distill_from": "audio", "search": "validation"},
                               "training": {"epochs": 60, "patience": 15, "select": "robust",
                                            "modality_dropout": {"lips": 0.25, "audio": 0.25}, "augment": 0.5,
                                            "augment_with": ["white_noise"]}},
    # audio alone trained as av_robust_noisy_choice is (60 epochs, the same noise), the search chosen by the fit on
    # its validation rows: that model's reference at each SNR
    "audio_noisy_60": {"inputs": [NOISY_AUDIO], "snr": True, "options": {"search": "validation"},
                       "training": {"epochs": 60, "patience": 15, "augment": 0.5, "augment_with": ["white_noise"]}},
    # lips_distilled with the fit's own validation split (as av_robust_noisy_choice's: seed 0, 10% of the rows) and
    # the per-clip audio of the noisy configs, so it can join those models in one ensemble (`polymodal ensemble`)
    # whose search is chosen on rows none of them trained on; trained on clean audio, the test split not scored
    "lips_member": {"inputs": [WIDE_LIPS, NOISY_AUDIO], "fit_only": True,
                    "options": {"distill_from": "audio", "search": "validation"},
                    "training": {"epochs": 60, "patience": 15, "select": "robust"}},
    "whisper_zeroshot": {},
    "vqa_answers": {},
    "vqa_captions": {},
}


def grid_recipe(config: str, seed: int, epochs: int | None) -> dict:
    spec = CONFIGS[config]
    training = {**GRID_TRAINING, **spec.get("training", {}), "seed": seed, "progress": False}
    if epochs:
        training["epochs"] = epochs
    return {"data": {"train": str(GRID / "train.jsonl"), "test": str(GRID / "test.jsonl")},
            "inputs": spec["inputs"],
            "target": {"column": "text", "task": "text",
                       "options": {"unit": spec.get("unit", "char"), **spec.get("options", {})}},
            "model": {"dim": 128}, "training": training}


def vqa_recipe(config: str, seed: int, epochs: int | None) -> dict:
    from polymodal.demo import demo_recipe, easy_vqa_caption_tables, easy_vqa_tables

    if config == "vqa_answers":
        rec = demo_recipe()
        tables = easy_vqa_tables()
        rec["target"] = {"column": "answer", "task": "text", "options": {"unit": "word"}}
        rec["training"]["epochs"] = 24  # the demo classifier's 14 leave the decoder at 98.9% (measured)
    else:
        tables = easy_vqa_caption_tables()
        rec = {"inputs": [{"name": "image", "modality": "image", "options": {"size": 64},
                           "encoder": {"type": "image_cnn", "channels": [16, 32, 64]}}],
               "target": {"column": "caption", "task": "text", "options": {"unit": "word"}},
               "model": {"dim": 64}, "training": {"epochs": 14, "batch_size": 64, "lr": 2e-3, "patience": 5}}
    rec["data"] = {"train": str(tables["train"]), "test": str(tables["test"])}
    rec["training"] = {**rec["training"], "seed": seed, "progress": False, **({"epochs": epochs} if epochs else {})}
    return rec


def decode_speed(directory: Path, table: Path, rows: int = 64) -> dict:
    """Seconds of audio decoded per second of wall time (reading, features, encoders, search), `rows` test clips,
    by the model loaded afresh (no frozen-encoder features cached from the evaluation)."""
    import polymodal as pm

    model = pm.load(directory)
    lines = table.read_text().splitlines()[:rows]
    data = [json.loads(x) for x in lines]
    for r in data:
        for key in ("lips", "audio"):
            r[key] = str(table.parent / r[key])
    started = time.perf_counter()
    model.predict(data)
    seconds = time.perf_counter() - started
    return {"clips": len(data), "seconds": round(seconds, 2), "x_real_time": round(3.0 * len(data) / seconds, 1)}


def carve_validation(out: Path, seed: int) -> tuple[Path, Path]:
    """grid-s1's train split as 90% train / 10% validation (seeded), each row's files made absolute."""
    import numpy as np

    rows = [json.loads(x) for x in (GRID / "train.jsonl").read_text().splitlines()]
    for r in rows:
        for key in ("lips", "audio"):
            r[key] = str(GRID / r[key])
    held = set(np.random.default_rng(seed).permutation(len(rows))[: len(rows) // 10].tolist())
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train-part.jsonl", out / "validation.jsonl"
    for path, keep in zip(paths, (False, True)):
        path.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if (i in held) == keep))
    return paths


def choose_search(model, validation, grammar: bool = False) -> dict:
    """Greedy vs beam 8 held to the lexicon at each bigram weight (and, with `grammar`, to the training texts' word
    pairs), scored on validation (a table's path or its rows): the best WER's setting."""
    net = model.parts.net
    validation = validation if isinstance(validation, list) else str(validation)
    tried = {"greedy": model.evaluate(validation, beam=1)["wer"]}
    for strict in (False, True) if grammar else (False,):
        net.words.grammar = strict
        for weight in LM_WEIGHTS:
            net.words.weight = weight
            tried[f"{'grammar' if strict else 'lexicon'}_lm{weight}"] = model.evaluate(validation, beam=8)["wer"]
    best = min(tried, key=tried.get)
    if best == "greedy":
        net.beam = 1
    else:
        kind, weight = best.split("_lm")
        net.beam, net.words.weight, net.words.grammar = 8, float(weight), kind == "grammar"
    if getattr(net, "aux", None) is not None:  # a head per input: at that search, the surest head per row too
        net.read_by = "confident"
        tried[best + "_confident"] = model.evaluate(validation, beam=net.beam)["wer"]
        if tried[best + "_confident"] < tried[best]:
            best += "_confident"
        else:
            net.read_by = "fused"
    return {"validation_wer": tried, "chosen": best}


def run_one(args) -> dict:
    import polymodal as pm

    if args.config == "whisper_zeroshot":
        return whisper_zeroshot()
    vqa = args.config.startswith("vqa")
    rec = (vqa_recipe if vqa else grid_recipe)(args.config, args.seed, args.epochs)
    out = Path(args.out) / f"{args.config}-s{args.seed}"
    search = CONFIGS.get(args.config, {}).get("search")
    if search:  # the test split is scored after the search is chosen on validation
        train, validation = carve_validation(out.with_name(out.name + "-data"), args.seed)
        rec["data"] = {"train": str(train), "validation": str(validation)}
        rec["target"]["options"].update(lexicon=True, lm_weight=1.0)
    noisy_choice = CONFIGS.get(args.config, {}).get("read_by_under_noise")
    if CONFIGS.get(args.config, {}).get("fit_only"):  # a member for an ensemble: trained and saved, nothing scored
        del rec["data"]["test"]
        started = time.perf_counter()
        model = pm.fit(rec, out=out)
        return {"config": args.config, "seed": args.seed, "model": str(out),
                "validation_wer": model.metrics.get("validation", {}).get("wer"),
                "epochs": model.metrics["training"].get("epochs"),
                "train_seconds": model.metrics["training"]["seconds"],
                "wall_seconds": round(time.perf_counter() - started, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if noisy_choice:  # no test split in the fit: it is scored once, after the reading is chosen
        del rec["data"]["test"]
    started = time.perf_counter()
    model = pm.fit(rec, out=out)
    wall = time.perf_counter() - started
    if noisy_choice:
        choice = read_by_under_noise(model, out)
        out = out.with_name(out.name + "-chosen")
        model.metrics["training"]["read_by_under_noise"] = choice
        report = model.evaluate(str(GRID / "test.jsonl"), snr=SNRS, out=out.with_name(out.name + "-snr"))
        model.metrics["test"] = {k: v for k, v in report.items() if k != "wer_vs_snr"}
        model.save(out)
    chosen, alone = {}, CONFIGS.get(args.config, {}).get("alone")
    if alone:  # read from that input alone: the search chosen on the validation rows without the others, then test
        chosen = choose_search(model, only(validation, alone), grammar=True)
        test_rows = only(GRID / "test.jsonl", alone)
        model.metrics["test"] = model.evaluate(test_rows)
        said, truth = [p["text"] for p in model.predict(test_rows)], [r["text"] for r in test_rows]
        chosen["slots"] = slot_accuracy(said, truth)
        chosen["confusions"] = {slot: slot_confusions(said, truth, slot) for slot in ("letter", "digit")}
        both = model.evaluate(str(GRID / "test.jsonl"))
        chosen["test_every_input"] = {k: both[k] for k in ("wer", "cer", "exact_match")}
    elif search:
        chosen = choose_search(model, validation, grammar=True)
        model.metrics["test"] = model.evaluate(str(GRID / "test.jsonl"))
    test = model.metrics["test"]
    result = {"config": args.config, "seed": args.seed,
              **{k: test[k] for k in ("wer", "cer", "exact_match", "bleu", "rouge_l", "cider")},
              "validation_wer": model.metrics.get("validation", {}).get("wer"),
              "epochs": model.metrics["training"].get("epochs") or [m["epochs"] for m in
                                                                    model.metrics["training"].get("members", [])],
              "train_seconds": model.metrics["training"]["seconds"] + model.metrics["training"].get("refit", {}).get(
                  "seconds", 0),
              "wall_seconds": round(wall, 1), **chosen}
    for key in ("decoding", "refit"):  # what the fit chose on validation, and its second training
        if key in model.metrics["training"]:
            result[key] = model.metrics["training"][key]
    if not vqa:
        result["speed"] = decode_speed(out, GRID / "test.jsonl")
        if noisy_choice:
            result["wer_vs_snr"], result["read_by_under_noise"] = report["wer_vs_snr"], choice
        elif CONFIGS[args.config].get("snr"):  # scored on the test split: the curve is part of the one test report
            report = model.evaluate(str(GRID / "test.jsonl"), snr=SNRS, out=out / "snr")
            result["wer_vs_snr"] = report["wer_vs_snr"]
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def slot_confusions(predictions: list[str], references: list[str], slot: str, top: int = 10) -> dict:
    """The most frequent wrong readings of one GRID word slot, "reference -> predicted": count (a prediction that is
    not six words reads every slot as "?")."""
    i, counts = GRID_SLOTS.index(slot), {}
    for p, r in zip(predictions, references):
        pw, rw = p.split(), r.split()
        said = pw[i] if len(pw) == len(rw) == len(GRID_SLOTS) else "?"
        if said != rw[i]:
            counts[f"{rw[i]} -> {said}"] = counts.get(f"{rw[i]} -> {said}", 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


def only(table: Path, keep: str) -> list[dict]:
    """A grid-s1 table's rows with every input but `keep` removed (files made absolute)."""
    rows = [json.loads(x) for x in table.read_text().splitlines()]
    for r in rows:
        for key in ("lips", "audio"):
            if key == keep:
                r[key] = str(table.parent / r[key])
            else:
                del r[key]
    return rows


GRID_SLOTS = ["command", "colour", "preposition", "letter", "digit", "adverb"]


def slot_accuracy(predictions: list[str], references: list[str]) -> dict:
    """Each of GRID's six word slots: the share of sentences whose predicted word in that slot is right (a
    prediction that is not six words gets every slot wrong)."""
    right = [0] * len(GRID_SLOTS)
    for p, r in zip(predictions, references):
        pw, rw = p.split(), r.split()
        if len(pw) == len(rw) == len(GRID_SLOTS):
            for i in range(len(GRID_SLOTS)):
                right[i] += pw[i] == rw[i]
    return {name: round(n / len(references), 4) for name, n in zip(GRID_SLOTS, right)}


def fit_validation_rows(model, directory: Path) -> tuple[list[dict], list[int], Path]:
    """grid-s1's training rows (files made absolute), the positions the fit trained on, and the validation rows it
    held out (rebuilt from the recipe's fraction and seed, written to DIR/search/validation.jsonl)."""
    from polymodal.training.prepare import split_rows

    rec = model.parts.recipe
    if rec.data.validation or rec.data.validation_group:
        raise SystemExit(f"{directory}: trained with a validation file or groups; nothing to rebuild")
    rows = [json.loads(x) for x in (GRID / "train.jsonl").read_text().splitlines()]
    for r in rows:
        for key in ("lips", "audio"):
            r[key] = str(GRID / r[key])
    assert len({r["lips"] for r in rows}) == len(rows)  # no value repeats: the fit had no batching group
    train_pos, val_pos = split_rows(list(range(len(rows))), rec.data.validation_fraction, rec.training.seed)
    validation = directory / "search" / "validation.jsonl"
    validation.parent.mkdir(parents=True, exist_ok=True)
    validation.write_text("".join(json.dumps(rows[i]) + "\n" for i in val_pos))
    return rows, train_pos, validation


def read_by_under_noise(model, directory: Path) -> dict:
    """At the search the fit chose, each reading of a model with a head per input (fused, confident, rescore)
    scored on the fit's validation rows (rebuilt) with both inputs, clean and at each SNR; the lowest mean WER is
    kept (ties to the earlier), the search otherwise unchanged."""
    task, net = model.parts.task, model.parts.net
    _, _, validation = fit_validation_rows(model, directory)
    decoding = model.metrics["training"]["decoding"]
    settings = next(c for c in task.decoding_candidates(net) if task.decoding_name(c) == decoding["chosen"])
    tried, started = {}, time.perf_counter()
    for read_by in ("fused", "confident", "rescore"):
        task.use_decoding(net, {**settings, "read_by": read_by})
        curve = model.evaluate(str(validation), snr=SNRS)["wer_vs_snr"]
        tried[read_by] = {"wer": dict(zip(map(str, curve["snr_db"]), curve["all"])),
                          "mean": round(sum(curve["all"]) / len(curve["all"]), 6)}
        print(f"{read_by}: validation WER {tried[read_by]}", file=sys.stderr, flush=True)
    best = min(tried, key=lambda r: tried[r]["mean"])
    task.use_decoding(net, {**settings, "read_by": best})
    return {"fit_chose": decoding["chosen"], "validation": tried, "chosen": task.decoding_name(task.chosen),
            "seconds": round(time.perf_counter() - started, 1)}


def rechoose(directory: Path) -> dict:
    """For a grid-s1 model whose fit chose its search on validation (`search: validation`) before the task offered
    more candidates (an ensemble's `combine: rescore`): the new candidates scored on the same validation rows
    (rebuilt, and checked against the validation WER the fit recorded), the best of old and new chosen (ties to
    the earlier candidate, as the fit does), and the test split scored once more only if the choice changed."""
    import polymodal as pm

    model = pm.load(directory)
    task, net = model.parts.task, model.parts.net
    _, _, validation = fit_validation_rows(model, directory)
    decoding = model.metrics["training"]["decoding"]
    recorded = model.evaluate(str(validation))["wer"]
    if abs(recorded - decoding["validation"][decoding["chosen"]]) > 1e-6:
        raise SystemExit(f"rebuilt validation rows give WER {recorded} with {decoding['chosen']}, the fit recorded "
                         f"{decoding['validation'][decoding['chosen']]}: not the same rows")
    tried, best, started = {}, None, time.perf_counter()
    for settings in task.decoding_candidates(net):
        name = task.decoding_name(settings)
        if name in decoding["validation"]:
            tried[name] = decoding["validation"][name]
        else:
            task.use_decoding(net, settings)
            tried[name] = round(model.evaluate(str(validation))["wer"], 6)
            print(f"{name}: validation WER {tried[name]}", file=sys.stderr, flush=True)
        if best is None or tried[name] < tried[best[0]]:
            best = (name, settings)
    result = {"model": str(directory), "validation_wer": tried, "chosen": best[0], "was": decoding["chosen"],
              "search_seconds": round(time.perf_counter() - started, 1)}
    if best[0] != decoding["chosen"]:
        task.use_decoding(net, best[1])
        test = model.evaluate(str(GRID / "test.jsonl"))
        result.update({k: test[k] for k in ("wer", "cer", "exact_match", "bleu", "rouge_l", "cider")})
    else:
        result["wer"] = model.metrics["test"]["wer"]
    return result


def search_after(directory: Path) -> dict:
    """For a grid-s1 model trained without a validation file (the av config): rebuild the validation rows its fit
    carved (the recipe's fraction and seed, whole rows), check them against the validation WER it recorded, learn
    the lexicon and word bigram from the other training rows' texts, choose the CTC search on those validation rows,
    then score the test split once (with the WER-vs-SNR curve)."""
    import polymodal as pm
    from polymodal.tasks.text import SPECIALS
    from polymodal.tasks.text_decoding import WordModel

    model = pm.load(directory)
    rows, train_pos, validation = fit_validation_rows(model, directory)
    greedy = model.evaluate(str(validation), beam=1)["wer"]
    recorded = model.metrics.get("validation", {}).get("wer")
    if recorded is None or abs(greedy - recorded) > 1e-6:
        raise SystemExit(f"rebuilt validation rows give WER {greedy}, the fit recorded {recorded}: not the same rows")
    task, net = model.parts.task, model.parts.net
    net.words = WordModel.learn([task.vocab.clean(rows[i]["text"]) for i in train_pos], True, 0.0)
    net.chars = [None] * len(SPECIALS) + list(task.vocab.tokens)
    chosen = choose_search(model, validation, grammar=True)
    report = model.evaluate(str(GRID / "test.jsonl"), snr=SNRS, out=directory / "search" / "snr")
    return {"model": str(directory), **chosen,
            **{k: report[k] for k in ("wer", "cer", "exact_match", "bleu", "rouge_l", "cider")},
            "wer_vs_snr": report["wer_vs_snr"], "examples": report.get("examples", [])[:5]}


def join_run(name: str, specs: list[str], out: Path, alone: str | None, score_test: bool) -> dict:
    """Trained grid-s1 models joined into one (`pm.ensemble`), each spec DIR or DIR:INPUT[+INPUT]. The members must
    share one fit validation split (no validation file, the same seed and fraction): those rows are rebuilt and the
    ensemble's CTC search chosen on them (read from `alone` only, when given). Without `alone`, the searches within
    half a point of the best (step probabilities averaged or texts rescored, each held to the lexicon or grammar)
    are then tried on the same rows with white noise on the audio, and the one with the lowest mean WER over clean
    and each SNR kept, as `read_by_under_noise` does for one model. The test split is scored once, with
    `score_test` only."""
    import polymodal as pm

    if score_test and (out / name / "config.json").is_file():  # joined and chosen on validation by an earlier run
        joined = pm.load(out / name)
        chosen = joined.metrics["ensemble"]
        result = {"join": name, "members": specs, "alone": alone, "reloaded": True,
                  "decoding": chosen.get("decoding", {}).get("chosen"),
                  "validation_wer": joined.metrics["validation"]["wer"]}
        if "under_noise" in chosen:
            result.update(under_noise=chosen["under_noise"]["validation"],
                          chosen_under_noise=chosen["under_noise"]["chosen"])
        return {**result, **join_test(joined, out, name, alone)}
    members, models = [], []
    for spec in specs:
        path, _, reads = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
        model = pm.load(path)
        models.append(model)
        members.append((model, reads.split("+")) if reads else model)
    splits = {(m.parts.recipe.training.seed, m.parts.recipe.data.validation_fraction, m.parts.recipe.data.validation,
               m.parts.recipe.data.validation_group) for m in models}
    if len(splits) != 1:
        raise SystemExit(f"the members' fits held out different validation rows: {splits}")
    _, _, validation = fit_validation_rows(models[0], out / name)
    val_rows = only(validation, alone) if alone else str(validation)
    started = time.perf_counter()
    joined = pm.ensemble(members, validation=val_rows, out=out / name)
    result: dict = {"join": name, "members": specs, "alone": alone,
                    "decoding": joined.metrics["ensemble"].get("decoding", {}).get("chosen"),
                    "validation_wer": joined.metrics["validation"]["wer"],
                    "choose_seconds": round(time.perf_counter() - started, 1)}
    task, net = joined.parts.task, joined.parts.net
    if not alone:  # the searches within half a point of the best on clean validation, kept by their noisy mean
        clean = joined.metrics["ensemble"]["decoding"]["validation"]
        near = [c for c in task.decoding_candidates(net) if clean[task.decoding_name(c)] <= min(clean.values()) + 0.005]
        tried, settings = {}, {}
        for candidate in near:
            key = task.decoding_name(candidate)
            task.use_decoding(net, candidate)
            curve = joined.evaluate(str(validation), snr=SNRS)["wer_vs_snr"]
            tried[key] = {"wer": dict(zip(map(str, curve["snr_db"]), curve["all"])),
                          "mean": round(sum(curve["all"]) / len(curve["all"]), 6)}
            settings[key] = candidate
            print(f"{name} {key}: validation WER {tried[key]}", file=sys.stderr, flush=True)
        best = min(tried, key=lambda k: tried[k]["mean"])  # ties to the earlier (plainer) candidate
        task.use_decoding(net, settings[best])
        joined.metrics["ensemble"]["under_noise"] = {"validation": tried, "chosen": best}
        joined.save(out / name)
        result.update(under_noise=tried, chosen_under_noise=best)
    return {**result, **(join_test(joined, out, name, alone) if score_test else {})}


def join_test(joined, out: Path, name: str, alone: str | None) -> dict:
    """A joined model's test report, scored once: read from `alone` only (with each word slot's accuracy), or
    with both inputs and the WER-vs-SNR curve; and its decoding speed."""
    result: dict = {}
    if alone:
        test_rows = only(GRID / "test.jsonl", alone)
        report = joined.evaluate(test_rows)
        said, truth = [p["text"] for p in joined.predict(test_rows)], [r["text"] for r in test_rows]
        result["slots"] = slot_accuracy(said, truth)
    else:
        report = joined.evaluate(str(GRID / "test.jsonl"), snr=SNRS, out=out / (name + "-snr"))
        result["wer_vs_snr"] = report["wer_vs_snr"]
    result.update({k: report[k] for k in ("wer", "cer", "exact_match")})
    result["speed"] = decode_speed(out / name, GRID / "test.jsonl")
    return result


DIGITS = {str(i): w for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                           "nine"])}


def grid_normalise(text: str) -> str:
    """Whisper writes GRID's spelt digits and letters its own way ("F2", "set white by 4"): digits spelt out, letters
    split from digits, so the grid-normalised WER counts words, not formatting."""
    import re

    text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)
    return " ".join(DIGITS.get(w, w) for w in re.sub(r"[^\w\s]", " ", text.lower()).split())


def whisper_zeroshot() -> dict:
    import soundfile as sf

    from polymodal.encoders.whisper import WhisperTranscriber
    from polymodal.modalities.audio import resample
    from polymodal.tasks.text_metrics import text_scores

    rows = [json.loads(x) for x in (GRID / "test.jsonl").read_text().splitlines()]
    waves = []
    for r in rows:
        wave, sr = sf.read(GRID / r["audio"], dtype="float32")
        waves.append(resample(wave, sr, 16000))
    started = time.perf_counter()
    hyps = WhisperTranscriber().transcribe(waves)
    seconds = time.perf_counter() - started
    refs = [[r["text"]] for r in rows]
    raw = text_scores(hyps, refs)
    normalised = text_scores([grid_normalise(h) for h in hyps], refs)
    return {"config": "whisper_zeroshot", "wer": round(raw["wer"], 4), "cer": round(raw["cer"], 4),
            "exact_match": round(raw["exact_match"], 4), "grid_normalised_wer": round(normalised["wer"], 4),
            "grid_normalised_cer": round(normalised["cer"], 4),
            "speed": {"clips": len(rows), "seconds": round(seconds, 1),
                      "x_real_time": round(3.0 * len(rows) / seconds, 1)},
            "examples": [{"reference": r["text"], "prediction": h} for r, h in list(zip(rows, hyps))[:5]],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=None, help="comma-separated (default: every config)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override every config's epochs")
    ap.add_argument("--out", default="runs/bench-text")
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--search-after", type=Path, default=None,
                    help="a trained grid-s1 model directory (av): choose its CTC search on the validation rows its "
                    "fit held out, then score the test split once")
    ap.add_argument("--rechoose", type=Path, default=None,
                    help="a trained grid-s1 model directory with `search: validation`: score the searches the task "
                    "offers now and the fit did not try on its validation rows; the test split again only if the "
                    "choice changes")
    ap.add_argument("--join", default=None, help="NAME: join the --member models into one ensemble (pm.ensemble), "
                    "its search chosen on their shared fit validation rows; the test split only with --score-test")
    ap.add_argument("--member", action="append", default=[], help="a trained grid-s1 model: DIR or DIR:INPUT[+INPUT]")
    ap.add_argument("--alone", default=None, help="with --join: read from this input alone (validation and test)")
    ap.add_argument("--score-test", action="store_true", help="with --join: score the test split once")
    args = ap.parse_args()
    if args.join:
        print(json.dumps(join_run(args.join, args.member, Path(args.out), args.alone, args.score_test)), flush=True)
        return
    if args.rechoose:
        print(json.dumps(rechoose(args.rechoose)), flush=True)
        return
    if args.search_after:
        print(json.dumps(search_after(args.search_after)), flush=True)
        return
    if args.config:
        print(json.dumps(run_one(args)), flush=True)
        return
    configs = args.configs.split(",") if args.configs else list(CONFIGS)
    results = []
    for config in configs:
        cmd = [sys.executable, __file__, "--config", config, "--seed", str(args.seed), "--out", args.out]
        if args.epochs:
            cmd += ["--epochs", str(args.epochs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        if proc.returncode or line is None:
            print(f"{config}: failed\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
            continue
        print(line, flush=True)
        results.append(json.loads(line))
    print("\n| config | WER | CER | exact match | BLEU | CIDEr-D | x real time | train s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "wer" not in r:  # a member trained for an ensemble (fit_only): nothing scored
            continue
        speed = r.get("speed", {}).get("x_real_time", "")
        print(f"| {r['config']} | {100 * r['wer']:.2f}% | {100 * r['cer']:.2f}% | {100 * r['exact_match']:.2f}% | "
              f"{r.get('bleu', '')} | {r.get('cider', '')} | {speed} | {r.get('train_seconds', '')} | "
              f"{r['peak_rss_mb']} |")
    for r in results:
        if "wer_vs_snr" in r:
            c = r["wer_vs_snr"]
            print(f"\n{r['config']} WER vs SNR ({', '.join(str(s) for s in c['snr_db'])} dB):")
            for key, values in c.items():
                if key not in ("snr_db", "metric", "plot"):
                    print(f"  {key}: " + " ".join(f"{100 * v:.2f}%" for v in values))


if __name__ == "__main__":
    main()
