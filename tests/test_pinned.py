"""Pinned values: every fusion and every encoder built here (from scratch, or with packaged weights: EfficientNet,
Whisper), built with a fixed seed and run on fixed inputs,
gives the stored outputs (tests/pinned.json, compared with torch.testing.assert_close), and every one of their
parameters receives a gradient. A change that moves a number fails here, not in a benchmark weeks later.

The stored values are rewritten, after a deliberate change, with: POLYMODAL_PIN=write .venv/bin/python -m pytest
tests/test_pinned.py. The pretrained adapter and transfer encoder wrap other models' weights; their outputs are
checked against those models in tests/encoders."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from polymodal.encoders import ENCODERS, InputEncoder
from polymodal.fusion import FUSIONS
from polymodal.types import Encoded, ModalityBatch

PINS = Path(__file__).with_name("pinned.json")
WRAPPERS = {"pretrained", "transfer"}  # built from other models' files: checked in tests/encoders
POSITIONS = 12  # values stored per output, at evenly spaced flat positions


class Facts:
    """A modality reduced to what an encoder reads of it (`describe`)."""

    def __init__(self, **facts) -> None:
        self.facts = facts

    def describe(self) -> dict:
        return self.facts


def encoder_case(name: str) -> tuple[Facts, ModalityBatch]:
    """The facts and a fixed 3-row batch (2 distinct values; row 2 absent) for each encoder built here."""
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    rows = dict(present=torch.tensor([True, True, False]), index=torch.tensor([0, 1, 0]))
    if name in ("image_cnn", "efficientnet"):
        return Facts(channels=3, size=[16, 16]), ModalityBatch(torch.rand(2, 3, 16, 16, generator=g), None, **rows)
    if name == "video_cnn":
        return Facts(channels=1, size=[16, 16], n_frames=6), ModalityBatch(
            torch.rand(2, 6, 1, 16, 16, generator=g), None, **rows)
    if name == "conv1d":
        return Facts(features=8, waveform=False, sample_rate=16000), ModalityBatch(
            torch.randn(2, 12, 8, generator=g), mask, **rows)
    if name in ("text_bow", "text_transformer"):
        ids = torch.randint(1, 40, (2, 12), generator=g) * mask
        return Facts(vocab_size=40, max_length=12), ModalityBatch(ids, mask, **rows)
    if name == "lip_cnn":
        frames = torch.ones(2, 6, dtype=torch.bool)
        frames[1, 4:] = False
        return Facts(channels=1, size=[16, 16], n_frames=6), ModalityBatch(
            torch.rand(2, 6, 1, 16, 16, generator=g), frames, **rows)
    if name == "whisper":
        samples = torch.ones(2, 8000, dtype=torch.bool)
        samples[1, 4000:] = False
        return Facts(), ModalityBatch(torch.randn(2, 8000, 1, generator=g) * 0.1, samples, **rows)
    if name == "number_mlp":
        return Facts(features=1), ModalityBatch(torch.randn(2, 1, generator=g), None, **rows)
    if name == "category_embedding":
        return Facts(vocab_size=5), ModalityBatch(torch.tensor([3, 0]), None, **rows)
    raise KeyError(f"no pinned-value case for encoder '{name}': add one here")


ENCODER_NAMES = [n for n in ENCODERS.names() if n not in WRAPPERS]


def build_encoder(name: str) -> tuple[InputEncoder, ModalityBatch]:
    facts, batch = encoder_case(name)
    cls = ENCODERS.get(name)
    torch.manual_seed(0)
    return InputEncoder(cls(cls.Config(), facts, 16), 16), batch


def fusion_inputs() -> dict[str, Encoded]:
    g = torch.Generator().manual_seed(2)
    present = {"a": [True, True, False, True], "b": [True, False, True, True]}
    out = {}
    for n, t in (("a", 3), ("b", 5)):
        mask = torch.ones(4, t, dtype=torch.bool)
        mask[1, t - 1:] = False
        out[n] = Encoded(torch.randn(4, t, 16, generator=g), mask, torch.randn(4, 16, generator=g),
                         torch.tensor(present[n]))
    return out


def build_fusion(name: str):
    cls = FUSIONS.get(name)
    torch.manual_seed(0)
    return cls(cls.Config(method=name, hidden=16, dropout=0.0), ["a", "b"], 16).eval()


def fingerprint(x: torch.Tensor) -> dict:
    flat = x.detach().float().flatten()
    idx = torch.linspace(0, flat.numel() - 1, min(POSITIONS, flat.numel())).round().long()
    return {"shape": list(x.shape), "sum": float(flat.sum()), "abs_sum": float(flat.abs().sum()),
            "values": flat[idx].tolist()}


def outputs(kind: str, name: str) -> dict[str, torch.Tensor]:
    if kind == "encoder":
        enc, batch = build_encoder(name)
        enc.eval()
        e = enc(batch)
        return {"tokens": e.tokens, "mask": e.mask.float(), "pooled": e.pooled}
    return {"pooled": build_fusion(name)(fusion_inputs()).pooled}


CASES = [("encoder", n) for n in ENCODER_NAMES] + [("fusion", n) for n in FUSIONS.names()]


@pytest.fixture(scope="module")
def pins():
    stored = json.loads(PINS.read_text()) if PINS.is_file() else {}
    yield stored
    if os.environ.get("POLYMODAL_PIN") == "write":
        PINS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("kind, name", CASES)
def test_seeded_outputs_match_the_pinned_values(pins, kind, name):
    with torch.no_grad():
        got = {k: fingerprint(v) for k, v in outputs(kind, name).items()}
    key = f"{kind}/{name}"
    if os.environ.get("POLYMODAL_PIN") == "write":
        pins[key] = got
        return
    assert key in pins, f"no pinned values for {key}: run with POLYMODAL_PIN=write after checking the outputs"
    for out, want in pins[key].items():
        assert got[out]["shape"] == want["shape"], (key, out)
        for field in ("sum", "abs_sum", "values"):
            where = f"{key} {out} {field}"
            torch.testing.assert_close(torch.tensor(got[out][field]), torch.tensor(want[field]), rtol=1e-4,
                                       atol=1e-5, msg=lambda m, where=where: f"{where}: {m}")


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_every_encoder_parameter_receives_a_gradient(name):
    enc, batch = build_encoder(name)
    enc.train()
    e = enc(batch)
    (e.tokens.square().mean() + e.pooled.square().mean()).backward()
    dead = [n for n, p in enc.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not dead, f"{name}: no gradient reaches {dead}"


@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_parameter_receives_a_gradient(name):
    fusion = build_fusion(name).train()
    inputs = fusion_inputs()
    for e in inputs.values():
        e.tokens.requires_grad_(True)
    fusion(inputs).pooled.square().mean().backward()
    dead = [n for n, p in fusion.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not dead, f"{name}: no gradient reaches {dead}"
