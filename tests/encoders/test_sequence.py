"""conv1d with a GRU over its steps: padding changes nothing a clip's valid tokens say, and each token sees the
whole clip (a change at its end moves the first token)."""
from __future__ import annotations

import torch

from polymodal.encoders.sequence import Conv1dConfig, Conv1dEncoder


class Facts:
    def describe(self) -> dict:
        return {"features": 6, "waveform": False, "sample_rate": 16000}


def test_conv1d_gru_ignores_padding_and_reads_the_whole_clip():
    torch.manual_seed(0)
    enc = Conv1dEncoder(Conv1dConfig(gru=True, channels=[16, 16]), Facts(), 8).eval()
    clip = torch.randn(1, 40, 6)
    padded = torch.cat([clip, torch.zeros(1, 24, 6)], 1)
    batch = torch.cat([padded, torch.randn(1, 64, 6)])  # a longer clip beside it
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[0, 40:] = False
    with torch.no_grad():
        alone_tokens, alone_mask, alone_pooled = enc(clip, None)
        tokens, out_mask, pooled = enc(batch, mask)
    assert alone_mask.sum() == out_mask[0].sum() == 10  # 40 steps, halved twice
    assert torch.allclose(tokens[0, :10], alone_tokens[0], atol=1e-5)
    assert torch.allclose(pooled[0], alone_pooled[0], atol=1e-5)
    changed = clip.clone()
    changed[0, -4:] += 3.0  # the last steps only: beyond the conv blocks' reach of the first token
    with torch.no_grad():
        assert not torch.allclose(enc(changed, None)[0][0, 0], alone_tokens[0, 0])
        plain = Conv1dEncoder(Conv1dConfig(channels=[16, 16]), Facts(), 8).eval()
        assert torch.equal(plain(changed, None)[0][0, 0], plain(clip, None)[0][0, 0])  # without the GRU it does not
