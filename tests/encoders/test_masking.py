"""SpecAugment-style masking: spans lie inside each clip's valid steps and are no wider than asked, bands cover
whole clips, and an encoder masks only while it trains."""
from __future__ import annotations

import torch

from polymodal.encoders.masking import mask_features, mask_time, span_mask
from polymodal.encoders.sequence import Conv1dConfig, Conv1dEncoder


class Facts:
    def describe(self) -> dict:
        return {"features": 8, "waveform": False, "sample_rate": 16000}


def test_time_spans_stay_inside_each_clip_and_within_width():
    torch.manual_seed(0)
    lengths = torch.tensor([100, 50, 20, 1])
    mask = torch.arange(100)[None] < lengths[:, None]
    masked_any = torch.zeros(4, dtype=torch.bool)
    for _ in range(50):
        x = mask_time(torch.ones(4, 100, 3), mask, count=2, width=0.2)
        hidden = x[..., 0] == 0
        assert not (hidden & ~mask).any()  # padding is never "masked": it is not part of the clip
        assert (hidden.sum(1) <= 2 * (lengths * 0.2).floor()).all()
        assert (x[..., 1:] == x[..., :1]).all()  # a masked step loses every feature
        masked_any |= hidden.any(1)
    assert masked_any[:3].all() and not masked_any[3]  # a 1-step clip has no room for a 20% span


def test_feature_bands_are_whole_columns():
    torch.manual_seed(1)
    x = mask_features(torch.ones(6, 30, 64), count=2, width=8)
    hidden = x == 0
    assert (hidden == hidden[:, :1]).all()  # the same band at every step of a clip
    assert (hidden[:, 0].sum(1) <= 16).all() and hidden.any()


def test_span_mask_known_draw():
    """torch.rand with seed 0 gives draws (w, s) = (0.4963, 0.7682), (0.0885, 0.1320) for one row of length 10 and
    width 4: widths floor(0.4963 * 5) = 2 and floor(0.0885 * 5) = 0, the first starting at floor(0.7682 * 9) = 6."""
    torch.manual_seed(0)
    hidden = span_mask(torch.tensor([10]), 10, 2, torch.tensor([4]))
    assert hidden[0].nonzero().flatten().tolist() == [6, 7]


def test_encoder_masks_only_in_training():
    torch.manual_seed(0)
    enc = Conv1dEncoder(Conv1dConfig(time_masks=2, time_mask_width=0.3, feature_masks=2), Facts(), 16)
    plain = Conv1dEncoder(Conv1dConfig(), Facts(), 16)
    plain.load_state_dict(enc.state_dict())
    x = torch.randn(2, 40, 8)
    enc.eval(), plain.eval()
    torch.testing.assert_close(enc(x, None)[0], plain(x, None)[0])
    enc.train(), plain.train()
    plain.drop.p = enc.drop.p = 0.0
    assert not torch.allclose(enc(x, None)[0], plain(x, None)[0])


def test_lip_cnn_flip_mirrors_clips_only_in_training():
    """A clip that is its own mirror image gives the same output flipped or not; an asymmetric one does not; in
    evaluation nothing is flipped."""
    from polymodal.encoders.lips import LipCNN, LipConfig

    class Video:
        def describe(self) -> dict:
            return {"channels": 1}

    torch.manual_seed(0)
    flips = LipCNN(LipConfig(flip=True, front_channels=4, channels=[8], dropout=0.0), Video(), 16)
    plain = LipCNN(LipConfig(front_channels=4, channels=[8], dropout=0.0), Video(), 16)
    plain.load_state_dict(flips.state_dict())
    half = torch.rand(4, 6, 1, 12, 6, generator=torch.Generator().manual_seed(1))
    symmetric = torch.cat([half, half.flip(-1)], -1)
    asymmetric = torch.cat([half, torch.zeros_like(half)], -1)
    flips.eval(), plain.eval()
    torch.testing.assert_close(flips(asymmetric, None)[0], plain(asymmetric, None)[0])
    flips.train(), plain.train()
    torch.manual_seed(2)
    torch.testing.assert_close(flips(symmetric, None)[0], plain(symmetric, None)[0])
    torch.manual_seed(2)
    assert not torch.allclose(flips(asymmetric, None)[0], plain(asymmetric, None)[0])


def test_lip_cnn_flatten_keeps_the_grid():
    """pool: flatten feeds the GRU every cell of each frame's final grid (48 px: 12 after the front-end, 3 after two
    blocks: 9 cells x 96 channels), and it runs on frames of that size."""
    from polymodal.encoders.lips import LipCNN, LipConfig, grid_cells

    class Video:
        def describe(self) -> dict:
            return {"channels": 1, "size": (48, 48)}

    assert grid_cells(48, 2) == 9 and grid_cells((60, 100), 2) == 4 * 7
    enc = LipCNN(LipConfig(pool="flatten"), Video(), 16)
    assert enc.gru.input_size == 9 * 96
    tokens, mask, pooled = enc(torch.rand(2, 5, 1, 48, 48), None)
    assert tokens.shape == (2, 5, 16) and pooled.shape == (2, 16)


def test_attention_pool_ignores_padding_and_starts_as_the_mean():
    from polymodal.encoders.base import AttentionPool, masked_mean

    tokens = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]], [[5.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    pool = AttentionPool(2)
    with torch.no_grad():
        pool.score.weight.zero_()  # equal scores: the mean of the valid tokens
        pool.score.bias.fill_(0.3)
    assert torch.equal(pool(tokens, mask), masked_mean(tokens, mask))
    with torch.no_grad():
        pool.score.weight.copy_(torch.tensor([[1.0, 0.0]]))  # scores 1 and 3: weights e^1 / (e^1 + e^3), ...
    w = torch.softmax(torch.tensor([1.0, 3.0]), 0)
    assert torch.allclose(pool(tokens, mask)[0], w[0] * tokens[0, 0] + w[1] * tokens[0, 1])
    assert torch.equal(pool(tokens, mask)[1], tokens[1, 0])  # one valid token: itself; the padding never counts
    empty = pool(tokens, torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros(2, 2))  # no valid token: zeros, not NaN
