"""embed, index, search and zero-shot from the command line, on a trained contrastive model."""
from __future__ import annotations

import json

import numpy as np

from tests.test_cli import run


def test_embed_index_search_zero_shot(caption_model, caption_dir, tmp_path):
    model, test = str(caption_model.directory), str(caption_dir / "test.jsonl")
    r = run("embed", model, "--data", test, "--input", "image", "--out", str(tmp_path / "emb.npy"))
    assert r.returncode == 0, r.stderr
    emb = np.load(tmp_path / "emb.npy")
    side = json.loads((tmp_path / "emb.json").read_text())
    assert emb.shape == (60, 32) and side["rows"] == list(range(60)) and side["ids"][0] == "r0"

    idx = str(tmp_path / "idx")
    r = run("index", model, "--data", test, "--input", "image", "--out", idx)
    assert r.returncode == 0 and "exact" in r.stderr, r.stderr
    r = run("search", idx, "--query", "a red circle", "-k", "5", "--json")
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    rows = [json.loads(line) for line in open(test)]
    assert len(results) == 5 and [x["rank"] for x in results] == [1, 2, 3, 4, 5]
    hits = sum(rows[x["row"]]["caption"] == "a red circle" for x in results)
    assert hits >= 4, results

    r = run("search", idx, "--query-file", str(caption_dir / rows[3]["image"]), "-k", "1", "--json")
    assert json.loads(r.stdout)["results"][0]["row"] == 3  # an indexed image finds itself

    r = run("index", model, "--data", str(caption_dir / "train.jsonl"), "--input", "image", "--out", idx)
    assert r.returncode == 2 and "--add" in r.stderr
    r = run("index", model, "--data", str(caption_dir / "train.jsonl"), "--input", "image", "--out", idx, "--add")
    assert r.returncode == 0 and "240 vectors" in r.stderr, r.stderr

    r = run("zero-shot", model, "--data", test, "--labels", "circle,square,triangle", "--template", "a {}",
            "--label-column", "shape", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["rows"] == 60 and result["accuracy"] >= 0.8, result["per_label_accuracy"]


def test_retrieval_commands_fail_cleanly(caption_model, caption_dir, tmp_path):
    r = run("search", str(tmp_path), "--query", "x")
    assert r.returncode == 2 and "not a polymodal index" in r.stderr and "Traceback" not in r.stderr
    r = run("embed", str(caption_model.directory), "--data", str(caption_dir / "test.jsonl"), "--input", "nope",
            "--out", str(tmp_path / "e.npy"))
    assert r.returncode == 2 and "neither an input" in r.stderr
