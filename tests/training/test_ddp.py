"""Multi-process training through Lightning's DDP on 2 CPU processes (gloo), launched as a user would
(`polymodal fit ... --accelerator cpu --devices 2 --strategy ddp`): the model equals the one a single process
trains on the same global batches, with modality dropout and several steps per call."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

RECIPE = """data: {train: train.jsonl, test: test.jsonl}
inputs:
  - {name: x, modality: number}
  - {name: y, modality: number}
  - {name: word, modality: text, encoder: {type: text_bow}}
target: {column: label}
model: {dim: 16, fusion: {method: concat, dropout: 0.0}}
training: {epochs: 6, batch_size: 32, lr: 0.01, modality_dropout: 0.3, steps_per_call: 2, progress: false, seed: 0}
"""


def polymodal_cli() -> list[str]:
    exe = shutil.which("polymodal", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the polymodal console script is installed by `make install`")
    return [exe]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(320):
        a, b = rng.normal(), rng.normal()
        word = "alpha" if rng.random() < 0.5 else "beta"
        rows.append({"x": round(a, 4), "y": round(b, 4), "word": f"{word} {['one', 'two', 'three'][i % 3]}",
                     "label": str(int((a + b > 0) ^ (word == "alpha")))})
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:256]))
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[256:]))
    (d / "recipe.yaml").write_text(RECIPE)
    return d


def fit(table: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*polymodal_cli(), "fit", "recipe.yaml", "--out", out, "-q", *extra], cwd=table, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])  # with a worker: make test-slow
def test_two_ddp_processes_train_the_model_one_process_trains(table, workers):
    """With loader worker processes too (they have no process group: the rank is handed to them; modality dropout
    is drawn per batch from (seed, epoch, batch), whichever process or worker makes it)."""
    one = fit(table, f"one-w{workers}", "--set", f"training.num_workers={workers}")
    assert one.returncode == 0, one.stderr[-3000:]
    one_process = table / f"one-w{workers}"
    out = f"two-w{workers}"
    two = fit(table, out, "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
              "--set", f"training.num_workers={workers}")
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_file(str(one_process / "model.safetensors")), load_file(str(table / out / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-4  # float sums in another order
    m1 = json.loads((one_process / "metrics.json").read_text())
    m2 = json.loads((table / out / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert m2[split]["accuracy"] == m1[split]["accuracy"]
        assert m2[split]["loss"] == pytest.approx(m1[split]["loss"], abs=1e-4)
    log = (table / out / "train.log").read_text()
    assert log.count("epoch 6/6") == 1  # one process writes the log
    assert two.stderr.count("trained 6 epochs") == 1  # and prints the summary


CONTRASTIVE = """inputs:
  - {name: x, column: x, modality: number}
  - {name: word, column: word, modality: text, encoder: {type: text_bow}}
target: {task: contrastive}
model: {dim: 16}
training: {epochs: 3, batch_size: 32, lr: 0.01, progress: false, seed: 0, threads: 1}
"""


@pytest.mark.slow  # 20 s: make test-slow (the classification DDP test stays in make test)
def test_a_contrastive_loss_under_ddp_sees_every_process_rows_as_negatives(table):
    """The embeddings of both processes are gathered (with their gradients), so two processes train the model one
    process trains on the same global batches. Every value is distinct (a value two processes both hold would
    count as two)."""
    rows = [json.loads(line) for line in (table / "train.jsonl").read_text().splitlines()]
    (table / "pairs.jsonl").write_text("".join(json.dumps({"x": r["x"], "word": f"{r['word']} number {i}"}) + "\n"
                                              for i, r in enumerate(rows[:200])))
    (table / "contrastive.yaml").write_text(CONTRASTIVE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, extra in (("c1", []), ("c2", ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"])):
        r = subprocess.run([*polymodal_cli(), "fit", "contrastive.yaml", "--train", "pairs.jsonl", "--out", name, "-q",
                            *extra], cwd=table, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = load_file(str(table / name / "model.safetensors"))
    a, b = runs["c1"], runs["c2"]
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-4
