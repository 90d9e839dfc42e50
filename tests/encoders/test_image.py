"""image_cnn's pooled vector: grid (the default) is the flattened final grid while it has at most 8 x 8 cells, and
the grid averaged down to 8 x 8 beyond, so its width stops growing with the image."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from polymodal.encoders.image import ImageCNN, ImageCNNConfig


class Facts:
    def __init__(self, size: int) -> None:
        self.size = size

    def describe(self) -> dict:
        return {"channels": 1, "size": (self.size, self.size)}


def test_grid_pool_flattens_small_grids_and_averages_large_ones_to_eight_a_side():
    torch.manual_seed(0)
    assert ImageCNNConfig().pool == "grid"
    small = ImageCNN(ImageCNNConfig(channels=[4, 4, 4]), Facts(64), 6).eval()  # 8 x 8 final grid
    flat = ImageCNN(ImageCNNConfig(channels=[4, 4, 4], pool="flatten"), Facts(64), 6).eval()
    flat.load_state_dict(small.state_dict())  # the same shapes: grid is flatten here
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(small(x, None)[2], flat(x, None)[2])
    large = ImageCNN(ImageCNNConfig(channels=[4, 4, 4]), Facts(128), 6).eval()  # 16 x 16 final grid
    assert large.pool[1].in_features == 4 * 8 * 8 == small.pool[1].in_features
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        feat = large.body((x - 0.5) / 0.25)
        blocks = feat.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))  # each 2 x 2 block of cells averaged
        expected = large.pool(blocks.flatten(2).transpose(1, 2).flatten(1))
        assert torch.allclose(large(x, None)[2], expected, atol=1e-6)
        assert torch.allclose(blocks, F.adaptive_avg_pool2d(feat, 8), atol=1e-6)
