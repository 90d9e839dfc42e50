"""Every corruption: the identity at severity 0, a change at severity 1, seeded."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.modalities import MODALITIES
from polymodal.modalities.corruptions import all_corruptions, corrupt


def sample(modality: str):
    rng = np.random.default_rng(0)
    if modality == "image":
        img = np.full((3, 24, 24), 200, np.uint8)
        img[:, 6:18, 6:18] = rng.integers(0, 120, (3, 12, 12))
        return torch.from_numpy(img)
    if modality == "audio":
        t = np.arange(16000) / 16000
        return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    if modality == "text":
        return "the quick brown fox jumps over the lazy dog again and again"
    if modality == "number":
        return 3.5
    if modality == "category":
        return "red"
    if modality == "video":
        return torch.from_numpy(rng.integers(0, 255, (8, 3, 16, 16), dtype=np.uint8))
    return torch.from_numpy(rng.standard_normal((50, 3)).astype(np.float32))


def equal(a, b) -> bool:
    if isinstance(a, str):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b)


CASES = [(m, name) for m, kinds in all_corruptions().items() for name in kinds]


@pytest.mark.parametrize("modality, name", CASES)
def test_identity_at_zero_and_a_change_at_one(modality, name):
    x = sample(modality)
    assert equal(corrupt(modality, name, x, 0.0), x)
    y = corrupt(modality, name, x, 1.0, seed=3)
    assert not equal(y, x)
    assert equal(y, corrupt(modality, name, x, 1.0, seed=3))  # seeded
    if not isinstance(x, str):
        assert np.asarray(y).dtype == np.asarray(x).dtype


def test_every_modality_has_corruptions():
    assert {m for m, kinds in all_corruptions().items() if kinds} == set(MODALITIES.names())


def test_audio_white_noise_hits_the_requested_snr():
    x = sample("audio")
    noisy = corrupt("audio", "white_noise", x, 1.0)  # -10 dB
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((noisy - x) ** 2))
    assert -11 < snr < -9


def test_severity_out_of_range_and_unknown_names_are_refused():
    from polymodal.errors import PolymodalError

    with pytest.raises(PolymodalError, match="severity"):
        corrupt("text", "typo", "abc", 1.5)
    with pytest.raises(PolymodalError, match="no corruption 'smudge' for image"):
        corrupt("image", "smudge", sample("image"), 0.5)
    with pytest.raises(PolymodalError, match="unknown modality|no modality|modality"):
        corrupt("smell", "typo", "abc", 0.5)
