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


def test_signal_rotation_turns_every_triple_by_one_rotation():
    from polymodal.errors import BadInput, PolymodalError
    from polymodal.modalities.signal import SignalConfig, SignalModality, rotation_matrix

    r = rotation_matrix(np.deg2rad([0.0, 0.0, 90.0]))  # a quarter turn about z: x -> y
    assert np.allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 9.81], [0.0, 2.0, 0.0, 3.0, 4.0, 0.0]])  # accelerometer, gyroscope
    y = corrupt("signal", "rotation", x, 1.0, seed=0)
    turn = torch.linalg.lstsq(x.reshape(-1, 3), y.reshape(-1, 3)).solution  # the one matrix behind every triple
    assert torch.allclose(x.reshape(-1, 3) @ turn, y.reshape(-1, 3), atol=1e-5)
    assert torch.allclose(turn @ turn.T, torch.eye(3), atol=1e-5) and torch.det(turn) > 0  # a rotation
    angles = np.deg2rad(45.0) * np.random.default_rng(0).uniform(-1, 1, 3)  # the draw seed 0 makes
    assert torch.allclose(turn.T, torch.from_numpy(rotation_matrix(angles)).float(), atol=1e-5)
    with pytest.raises(PolymodalError, match="triples"):
        corrupt("signal", "rotation", torch.zeros(4, 5), 1.0)
    # only signals marked as (x, y, z) triples have it (others' features may be anything)
    assert "rotation" not in SignalModality(SignalConfig()).corruptions
    marked = SignalModality(SignalConfig(xyz=True))
    assert "rotation" in marked.corruptions
    with pytest.raises(BadInput, match="5 features, not a whole number"):
        marked.fit([torch.zeros(4, 5)])
    # max_rotation bounds the turn: 15 degrees at severity 1 is the draw above scaled by 15 / 45
    small = SignalModality(SignalConfig(xyz=True, max_rotation=15.0))
    y15 = small.corruptions["rotation"](x, 1.0, np.random.default_rng(0))
    assert torch.allclose(y15.reshape(-1, 3), x.reshape(-1, 3) @ torch.from_numpy(
        rotation_matrix(angles / 3)).float().T, atol=1e-5)
