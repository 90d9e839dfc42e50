"""Image augmentations written with torch ops: shapes, ranges, exact flips, seeded."""
from __future__ import annotations

import torch

from polymodal.modalities.augment import (
    ImageAugmentConfig,
    augment_image_tensor,
    jitter,
    random_flip,
    random_resized_crop,
)


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


def test_a_clip_is_augmented_alike_in_every_frame():
    """Video clips [N, T, C, H, W]: one crop, flip and jitter per clip, the same for each of its frames (the motion
    between frames is kept): each frame equals the augmentation the clip's first frame got, replayed from the same
    draws; with flips only, a clip is mirrored whole or not at all."""
    from polymodal.modalities.augment import augment_clips

    clips = torch.rand(3, 5, 1, 12, 16, generator=torch.Generator().manual_seed(2))
    config = ImageAugmentConfig(crop=0.5, flip=True, jitter=0.3)
    out = augment_clips(clips, config, torch.Generator().manual_seed(4))
    assert out.shape == clips.shape and not torch.equal(out, clips)
    for t in range(5):
        replay = augment_image_tensor(clips[:, t], config, torch.Generator().manual_seed(4))
        assert torch.allclose(out[:, t], replay, atol=1e-6)
    flips = augment_clips(clips, ImageAugmentConfig(flip=True), torch.Generator().manual_seed(0))
    whole = [bool(torch.equal(flips[i], clips[i].flip(-1))) or bool(torch.equal(flips[i], clips[i])) for i in range(3)]
    assert all(whole)
    generator = torch.Generator().manual_seed(4)
    augment_clips(clips, config, generator)
    after = torch.rand(1, generator=generator)  # the stream moves on past one clip-level draw, not one per frame
    generator = torch.Generator().manual_seed(4)
    augment_image_tensor(clips[:, 0], config, generator)
    assert torch.equal(after, torch.rand(1, generator=generator))


def test_training_batches_augment_images_and_clips_but_not_cached_features():
    """`training.image_augment`: the training step augments the image and video inputs before the task's loss,
    except those whose encoder caches its features per value (a frozen backbone); other inputs pass untouched."""
    from polymodal.config import TrainingConfig
    from polymodal.training.module import LitMultimodal
    from polymodal.types import ModalityBatch

    class Enc(torch.nn.Module):
        def __init__(self, cached: bool) -> None:
            super().__init__()
            self.cached = cached

        def caches_features(self) -> bool:
            return self.cached

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoders = torch.nn.ModuleDict({"photo": Enc(False), "frozen": Enc(True), "clip": Enc(False),
                                                 "signal": Enc(False)})
            self.w = torch.nn.Parameter(torch.zeros(1))

    class Task:
        seen: dict = {}

        def metrics(self):
            return torch.nn.ModuleDict()

        def training_plan(self, cfg, inputs):
            from polymodal.tasks import TrainingPlan
            return TrainingPlan()

        def training_loss(self, net, inputs, target, weight, rng):
            Task.seen = inputs
            return net.w.sum(), {}

    def batch(data: torch.Tensor) -> ModalityBatch:
        return ModalityBatch(data, None, torch.ones(2, dtype=torch.bool), torch.arange(2))

    g = torch.Generator().manual_seed(0)
    inputs = {"photo": batch(torch.rand(2, 3, 8, 8, generator=g)), "frozen": batch(torch.rand(2, 3, 8, 8, generator=g)),
              "clip": batch(torch.rand(2, 4, 1, 8, 8, generator=g)), "signal": batch(torch.rand(2, 10, 3, generator=g))}
    kinds = {"photo": "image", "frozen": "image", "clip": "video", "signal": "signal"}
    cfg = TrainingConfig(image_augment={"flip": True, "jitter": 0.5})
    module = LitMultimodal(Net(), Task(), cfg, total_steps=1, kinds=kinds)
    assert module.augment_skip == {"frozen"}
    module._loss(inputs, None)
    seen = Task.seen
    assert not torch.equal(seen["photo"].data, inputs["photo"].data)
    assert not torch.equal(seen["clip"].data, inputs["clip"].data)
    assert seen["frozen"] is inputs["frozen"] and seen["signal"] is inputs["signal"]
    plain = LitMultimodal(Net(), Task(), TrainingConfig(), total_steps=1, kinds=kinds)
    plain._loss(inputs, None)
    assert all(Task.seen[n] is inputs[n] for n in inputs)  # off by default
