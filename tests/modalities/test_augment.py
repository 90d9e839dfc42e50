"""Image augmentations written with torch ops: shapes, ranges, exact flips, seeded."""
from __future__ import annotations

import torch

from polymodal.modalities.augment import augment_image_tensor, jitter, random_flip, random_resized_crop
from polymodal.tasks.contrastive import ImageAugmentConfig


def _images() -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_flip_mirrors_some_images_exactly():
    x = _images()
    y = random_flip(x, torch.Generator().manual_seed(3))
    flipped = [bool(torch.equal(y[i], x[i].flip(-1))) for i in range(4)]
    kept = [bool(torch.equal(y[i], x[i])) for i in range(4)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped)


def test_crops_keep_the_size_and_zoom_in():
    x = _images()
    same = random_resized_crop(x, 1.0, torch.Generator().manual_seed(0))
    x_sq = torch.zeros(1, 1, 8, 8)
    x_sq[..., 2:6, 2:6] = 1.0
    zoomed = random_resized_crop(x_sq, 0.25, torch.Generator().manual_seed(1))
    assert same.shape == x.shape and zoomed.shape == x_sq.shape
    assert zoomed.sum() > x_sq.sum()  # the square covers more of a zoomed-in view


def test_jitter_keeps_values_in_range_and_is_seeded():
    x = _images()
    a = jitter(x, 0.5, torch.Generator().manual_seed(5))
    b = jitter(x, 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


def test_default_config_changes_nothing():
    x = _images()
    assert torch.equal(augment_image_tensor(x, ImageAugmentConfig(), torch.Generator()), x)
