"""Video that keeps motion: `frames: all` reads every frame (up to max_frames), greyscale stays greyscale, clips of
different lengths are padded and masked; the lip_cnn encoder tells a motion from its reverse, which the same frames
in any order cannot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import polymodal as pm
from polymodal.modalities.video import VideoConfig, VideoModality


def write_clip(path: Path, frames: int, leftwards: bool, size: int = 32, seed: int = 0) -> Path:
    import av

    rng = np.random.default_rng(seed)
    offset = int(rng.integers(0, 6))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            arr = np.full((size, size, 3), 30, np.uint8)
            step = frames - 1 - i if leftwards else i
            x = int(step * (size - 10) / max(1, frames - 1))
            arr[8 + offset:16 + offset, x:x + 8] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_every_frame_is_kept_greyscale_padded_and_masked(tmp_path):
    m = VideoModality(VideoConfig(frames="all", max_frames=20, size=16, channels=1))
    long = m.decode(str(write_clip(tmp_path / "a.mp4", 9, False)), tmp_path)
    short = m.decode(str(write_clip(tmp_path / "b.mp4", 5, True)), tmp_path)
    assert long.shape == (9, 1, 16, 16) and short.shape == (5, 1, 16, 16)
    data, mask = m.collate([long, short])
    assert data.shape == (2, 9, 1, 16, 16)
    assert mask.tolist() == [[True] * 9, [True] * 5 + [False] * 4]
    assert float(data[1, 5:].abs().sum()) == 0.0
    capped = VideoModality(VideoConfig(frames="all", max_frames=4, size=16, channels=1)).decode(
        str(tmp_path / "a.mp4"), tmp_path)
    assert capped.shape[0] == 4  # thinned evenly over the clip


def test_frames_keep_a_wide_size_through_lip_cnn(tmp_path):
    import pytest
    from pydantic import ValidationError

    from polymodal.encoders.lips import LipCNN, LipConfig

    m = VideoModality(VideoConfig(frames="all", size=(16, 24), channels=1))  # [height, width]
    clip = m.decode(str(write_clip(tmp_path / "a.mp4", 6, False)), tmp_path)
    assert clip.shape == (6, 1, 16, 24) and m.placeholder().shape == (1, 1, 16, 24)
    enc = LipCNN(LipConfig(pool="flatten", channels=[8]), m, 8).eval()
    data, mask = m.collate([clip])
    tokens, _, pooled = enc(data, mask)
    assert tokens.shape == (1, 6, 8) and pooled.shape == (1, 8)
    with pytest.raises(ValidationError, match="at least 8 pixels"):
        VideoConfig(size=(4, 24))


def test_lip_cnn_learns_the_direction_of_motion(tmp_path):
    rows = []
    for i in range(80):
        leftwards = i % 2 == 1
        path = write_clip(tmp_path / f"{i}.mp4", 6 + i % 3, leftwards, seed=i)
        rows.append({"clip": str(path), "y": "left" if leftwards else "right"})
    recipe = {"inputs": [{"name": "clip", "modality": "video",
                          "options": {"frames": "all", "max_frames": 12, "size": 16, "channels": 1},
                          "encoder": {"type": "lip_cnn", "front_channels": 8, "channels": [16]}}],
              "target": {"column": "y"}, "model": {"dim": 16},
              "training": {"epochs": 25, "batch_size": 16, "lr": 0.01, "patience": 25, "progress": False}}
    model = pm.fit(recipe, train=rows[:64], test=rows[64:], out=tmp_path / "m")
    assert model.metrics["test"]["accuracy"] >= 0.9, model.metrics["test"]
    assert pm.load(tmp_path / "m").predict(rows[64:65])[0]["label"] == model.predict(rows[64:65])[0]["label"]


def test_depth_motion_maps_pin_the_front_side_and_top_views():
    from polymodal.modalities.video import depth_motion_maps, motion_energy

    depth = np.zeros((3, 2, 3), np.uint8)
    depth[0, 0, 0] = 100  # a near point moves right, then comes nearer
    depth[1, 0, 1] = 100
    depth[2, 0, 1] = 200
    depth[:, 1, 2] = [50, 55, 50]  # sensor noise: under the threshold in front, the same distance level seen aside
    front, side, top = motion_energy(depth, bins=4, threshold=10)
    assert front.tolist() == [[100, 200, 0], [0, 0, 0]]
    assert side.tolist() == [[0, 1, 0, 1], [0, 0, 0, 0]]  # row 0 went from distance level 1 to 3
    assert top.tolist() == [[0, 1, 0], [0, 0, 0], [1, 2, 0], [0, 0, 0]]  # near levels at the bottom
    maps = depth_motion_maps(depth, (1, 2), bins=4, threshold=10)
    assert maps.shape == (3, 1, 2) and maps.dtype == np.uint8
    assert maps[0].tolist() == [[128, 255]]  # the front view cropped to what moved, scaled to its maximum


def test_a_depth_clip_becomes_one_three_channel_frame(tmp_path):
    import pytest
    import torch

    clip = write_clip(tmp_path / "d.mp4", 8, leftwards=False)
    m = VideoModality(VideoConfig(frames="depth_motion_maps", size=32))
    x = m.decode(str(clip), tmp_path)
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.uint8 and int(x[0, 0].max()) > 200  # resized from its crop
    data, mask = m.collate([x, x])
    assert data.shape == (2, 1, 3, 32, 32) and mask is None and m.describe()["n_frames"] == 1
    with pytest.raises(ValueError, match="depth_motion_maps makes 3 channels"):
        VideoConfig(frames="depth_motion_maps", channels=1)
