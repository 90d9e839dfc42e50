"""The frozen Whisper encoder (tiny.en, shipped offline in CTranslate2 format): real speech from espeak-ng becomes
one token per 20 ms of the clip, a classifier on top learns spoken words, and the model directory carries its own
copy of the Whisper files (it reloads without the package's path)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

import polymodal as pm

WORDS = ["yes", "no"]


@pytest.fixture(scope="module")
def speech_rows(tmp_path_factory) -> list[dict]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is installed by `make install`")
    d = tmp_path_factory.mktemp("speech")
    rows = []
    for i in range(24):
        word = WORDS[i % 2]
        path = d / f"{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), "-s", str(120 + 10 * (i % 6)), "-p", str(20 + 8 * (i % 5)),
                        word], check=True)
        rows.append({"voice": str(path), "word": word})
    return rows


def test_whisper_features_learn_spoken_words_and_reload(speech_rows, tmp_path):
    recipe = {"inputs": [{"name": "voice", "modality": "audio", "encoder": {"type": "whisper"}}],
              "target": {"column": "word"}, "model": {"dim": 32},
              "training": {"epochs": 15, "batch_size": 8, "lr": 0.005, "patience": 15, "progress": False}}
    model = pm.fit(recipe, train=speech_rows[:16], test=speech_rows[16:], out=tmp_path / "m")
    assert model.metrics["test"]["accuracy"] >= 0.85, model.metrics["test"]
    enc = model.parts.net.encoders["voice"].encoder
    assert len(enc._cache) == 24  # every clip encoded once
    assert model.parts.recipe.inputs[0].options["features"] == "waveform"
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "m", moved)
    assert (moved / "voice.whisper" / "model.bin").is_file()
    reloaded = pm.load(moved)
    assert str(reloaded.parts.net.encoders["voice"].encoder.path).startswith(str(moved))
    assert [p["label"] for p in reloaded.predict(speech_rows[16:])] == \
        [p["label"] for p in model.predict(speech_rows[16:])]


def test_whisper_transcribes_espeak_sentences_in_several_voices(tmp_path):
    """Whisper tiny.en zero-shot on espeak-ng's synthetic voices, scored by the text task's WER: the short command
    comes out word for word in every voice; the pangram loses a few words to the robot voices (6 of 27 measured)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is installed by `make install`")
    import soundfile as sf

    from polymodal.encoders.whisper import WhisperTranscriber
    from polymodal.modalities.audio import resample
    from polymodal.tasks.text_metrics import error_rate, exact_match

    sentences = ["please set the green box on the table", "the quick brown fox jumps over the lazy dog"]
    waves, refs = [], []
    for voice in ("en-us", "en-gb", "en+f3"):
        for i, sentence in enumerate(sentences):
            path = tmp_path / f"{voice}-{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), sentence], check=True)
            wave, sr = sf.read(path, dtype="float32")
            waves.append(resample(wave, sr, 16000))
            refs.append(sentence)
    hyps = WhisperTranscriber().transcribe(waves)
    assert exact_match(hyps[0::2], [[r] for r in refs[0::2]]) == 1.0, hyps
    assert error_rate(hyps, refs) <= 0.2, hyps


def test_the_encoder_runs_a_few_clips_per_call_with_the_same_states():
    """Memory: the encoder attends over 1,500 frames per clip, so clips go through ENCODE_BATCH at a time; the
    states equal those of each clip encoded alone."""
    import numpy as np

    from polymodal.encoders.base import build_encoder
    from polymodal.encoders.whisper import ENCODE_BATCH
    from polymodal.modalities.audio import AudioConfig, AudioModality

    enc = build_encoder("whisper", {}, AudioModality(AudioConfig(features="waveform", sample_rate=16000)), 8)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(1600 * (1 + i)).astype(np.float32) * 0.1 for i in range(ENCODE_BATCH + 2)]
    calls = []
    real = enc.whisper

    class Spy:
        def encode(self, features, to_cpu):
            calls.append(features.shape[0])
            return real.encode(features, to_cpu=to_cpu)

    enc.whisper = Spy()
    states = enc._encode(waves)
    assert calls == [ENCODE_BATCH, 2] and states.shape[0] == len(waves)
    np.testing.assert_allclose(states[-1], enc._encode(waves[-1:])[0], rtol=1e-4, atol=1e-4)
