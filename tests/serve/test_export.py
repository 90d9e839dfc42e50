"""`polymodal export`: torch.export and ONNX graphs that give the eager model's outputs, on other batch sizes and
audio lengths than the example's, with raw rows turned into their inputs by `features`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.errors import PolymodalError
from polymodal.export import features
from tests.test_cli import run


@pytest.fixture(scope="module")
def model(av_model):
    return pm.load(av_model)


def test_torch_export_matches_predict_on_other_batch_sizes(model, av_dir, tmp_path):
    report = model.export(tmp_path / "pt2", "torch", data=av_dir / "train.jsonl")
    assert report["max_abs_diff"] == 0.0 and report["rows"] == 8
    assert [i["name"] for i in report["inputs"]] == ["image", "audio", "audio_mask"]
    meta = json.loads((tmp_path / "pt2" / "export.json").read_text())
    assert meta["classes"] == ["circle", "square", "triangle"] and meta["file"] == "model.pt2"
    program = torch.export.load(str(tmp_path / "pt2" / "model.pt2")).module()
    rows = [{"image": str(av_dir / f"img1_{i}.png"), "audio": str(av_dir / f"tone1_{i}.wav")} for i in range(3)]
    names, tensors = features(model.parts, rows)
    assert names == ["image", "audio", "audio_mask"]
    with torch.no_grad():
        probs = program(*tensors).softmax(-1)
    expected = model.predict(rows)
    for p, e in zip(probs, expected):
        assert [round(float(x), 6) for x in p] == list(e["probabilities"].values())


def test_onnx_export_runs_in_onnxruntime_with_dynamic_shapes(model, av_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    report = model.export(tmp_path / "onnx", "onnx", data=av_dir / "train.jsonl")
    assert report["max_abs_diff"] < 1e-4 and "onnxruntime" in report["latency_ms"]
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = [{"image": str(av_dir / "img1_0.png"), "audio": str(av_dir / "tone1_0.wav")}]
    names, tensors = features(model.parts, rows)
    longer = torch.cat([tensors[1], tensors[1]], 1), torch.cat([tensors[2], tensors[2]], 1)  # twice the frames
    for feed in ([tensors[0], *tensors[1:]], [tensors[0], *longer]):
        got = session.run(None, {n: t.numpy() for n, t in zip(names, feed)})[0]
        with torch.no_grad():
            from polymodal.export import TensorsIn

            eager = TensorsIn(model.parts.net.eval(), ["image", "audio"], {"image": False, "audio": True})(*feed)
        assert got.shape == (1, 3) and np.abs(got - eager.numpy()).max() < 1e-4


def test_contrastive_models_export_embeddings(caption_model, tmp_path):
    report = caption_model.export(tmp_path / "clip", "torch")
    assert report["max_abs_diff"] == 0.0 and report["output_shape"][:2] == [2, 2]
    assert "embeddings" in report["output"]


def test_export_refusals(model, av_dir, tmp_path):
    with pytest.raises(PolymodalError, match="--inputs: colour not among"):
        model.export(tmp_path / "x", "torch", inputs=["colour"])
    with pytest.raises(PolymodalError, match="choose torch or onnx"):
        model.export(tmp_path / "x", "tflite")
    with pytest.raises(PolymodalError, match="needs every input; 'audio' is empty"):
        features(model.parts, [{"image": str(av_dir / "img1_0.png")}])


def test_cli_export(av_model, av_dir, tmp_path):
    r = run("export", str(av_model), "--format", "torch", "--out", str(tmp_path / "e"), "--data",
            str(av_dir / "test.jsonl"), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["max_abs_diff"] == 0.0 and (tmp_path / "e" / "model.pt2").is_file()
    bad = run("export", str(tmp_path), "--format", "torch")
    assert bad.returncode == 2 and "not a model directory" in bad.stderr
