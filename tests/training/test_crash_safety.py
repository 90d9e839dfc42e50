"""What a retry loop relies on: --resume with no checkpoint starts over (and says so), a fresh fit supersedes an
earlier run's checkpoints, a checkpoint from another recipe is refused, the model directory is swapped in one
atomic step, and `index --add` run twice adds each row once."""
from __future__ import annotations

import copy
import json
import threading

import pytest
import torch

import polymodal as pm
from polymodal.storage import _exchange, staging_dir, swap_in
from tests.conftest import FIVE_RECIPE


@pytest.fixture()
def recipe(five_modality_dir):
    r = copy.deepcopy(FIVE_RECIPE)
    r["data"] = {"train": str(five_modality_dir / "train.jsonl"), "validation_fraction": 0.25}
    return r


def test_resume_without_a_checkpoint_starts_over(recipe, tmp_path):
    model = pm.fit(recipe, out=tmp_path / "m", resume=True)
    assert model.metrics["training"]["epochs"] == 1
    assert "no checkpoint" in (tmp_path / "m" / "train.log").read_text().splitlines()[0]


def test_a_fresh_fit_supersedes_old_checkpoints_and_resume_checks_the_recipe(recipe, tmp_path):
    pm.fit(recipe, out=tmp_path / "m")
    other = copy.deepcopy(recipe)
    other["model"]["dim"] = 8
    pm.fit(other, out=tmp_path / "m", resume=True)  # another recipe's checkpoint: starts over, and says so
    assert "made by another recipe (`model.dim` differs): starting from the beginning" in \
        (tmp_path / "m" / "train.log").read_text()
    made_by = json.loads((tmp_path / "m" / "checkpoints" / "recipe.json").read_text())
    assert made_by["model"]["dim"] == 8
    pm.fit(recipe, out=tmp_path / "m")  # without --resume: starts over, the old checkpoints go
    assert json.loads((tmp_path / "m" / "checkpoints" / "recipe.json").read_text())["model"]["dim"] == 16
    again = pm.fit(recipe, out=tmp_path / "m", resume=True, progress=False, epochs=2)  # same recipe: continues
    assert again.metrics["training"]["epochs"] == 2


def test_the_swap_is_one_atomic_exchange(tmp_path):
    """While a new version is swapped in, a reader polling the path always finds a complete version."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("1")
    (target / "checkpoints").mkdir()
    (target / "checkpoints" / "last.ckpt").write_text("ckpt")
    assert _exchange(tmp_path / "model", tmp_path / "model")  # renameat2 works here (Linux)
    seen, stop = set(), threading.Event()

    def poll():
        while not stop.is_set():
            try:
                seen.add((target / "config.json").read_text())
            except OSError:
                seen.add("missing")

    t = threading.Thread(target=poll)
    t.start()
    for version in range(2, 40):
        tmp = staging_dir(target)
        (tmp / "config.json").write_text(str(version))
        swap_in(tmp, target)
    stop.set()
    t.join()
    assert "missing" not in seen and (target / "config.json").read_text() == "39"
    assert (target / "checkpoints" / "last.ckpt").read_text() == "ckpt"  # what lives beside the model stays
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # nothing left behind


def test_index_add_twice_adds_each_row_once(caption_model, caption_dir, tmp_path):
    from tests.test_cli import run

    out = tmp_path / "idx"
    assert run("index", str(caption_model.directory), "--data", str(caption_dir / "train.jsonl"), "--input", "image",
               "--out", str(out)).returncode == 0
    first = run("index", str(caption_model.directory), "--data", str(caption_dir / "test.jsonl"), "--input",
                "image", "--out", str(out), "--add")
    second = run("index", str(caption_model.directory), "--data", str(caption_dir / "test.jsonl"), "--input",
                 "image", "--out", str(out), "--add")
    assert first.returncode == second.returncode == 0
    assert "added 60 rows" in first.stderr and "added 0 rows" in second.stderr and "60 already" in second.stderr
    assert json.loads((out / "meta.json").read_text())["count"] == 240


def test_a_checkpoint_after_every_epoch(recipe, tmp_path, monkeypatch):
    from polymodal.training import fit as fit_module

    seen = []
    original = fit_module.LastCheckpoint.on_train_epoch_end

    def spy(self, trainer, module):
        original(self, trainer, module)
        seen.append((trainer.current_epoch, self.path.stat().st_mtime_ns))

    monkeypatch.setattr(fit_module.LastCheckpoint, "on_train_epoch_end", spy)
    pm.fit(recipe, out=tmp_path / "m", epochs=3)
    assert [e for e, _ in seen] == [0, 1, 2] and len({t for _, t in seen}) == 3
    assert not list((tmp_path / "m" / "checkpoints").glob("*.partial"))


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_resumed_run_ends_with_the_same_weights(recipe, tmp_path, monkeypatch, dropout):
    """Interrupted after epoch 2's checkpoint, then resumed: the same weights, bit for bit, as the run that was
    never interrupted (batch order, modality dropout and torch's stream all continue where they were)."""
    from safetensors.torch import load_file

    from polymodal.training import fit as fit_module

    recipe = copy.deepcopy(recipe)
    recipe["training"].update({"epochs": 4, "modality_dropout": dropout})
    pm.fit(recipe, out=tmp_path / "whole")
    original = fit_module.LastCheckpoint.on_train_epoch_end

    def stop_after_second(self, trainer, module):
        original(self, trainer, module)
        if trainer.current_epoch == 1:
            raise Interrupted

    monkeypatch.setattr(fit_module.LastCheckpoint, "on_train_epoch_end", stop_after_second)
    with pytest.raises(Interrupted):
        pm.fit(recipe, out=tmp_path / "cut")
    monkeypatch.setattr(fit_module.LastCheckpoint, "on_train_epoch_end", original)
    pm.fit(recipe, out=tmp_path / "cut", resume=True)
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


@pytest.mark.parametrize("steps_per_call", [pytest.param(1, marks=pytest.mark.slow), 2])  # 1: make test-slow
def test_a_run_resumed_in_the_middle_of_an_epoch_ends_with_the_same_weights(recipe, tmp_path, monkeypatch,
                                                                            steps_per_call):
    """`checkpoint_every` writes last.ckpt within epochs; killed after one written in the middle of epoch 2 and
    resumed, the run skips the batches done, draws each later batch's modality dropout as the whole run did (the
    loader had already made the next batch when the checkpoint was written), and ends with the same weights."""
    from safetensors.torch import load_file

    from polymodal.training import fit as fit_module

    recipe = copy.deepcopy(recipe)
    recipe["training"].update({"epochs": 3, "modality_dropout": 0.3, "checkpoint_every": 2, "batch_size": 4,
                               "steps_per_call": steps_per_call})  # 18 training rows: 5 batches an epoch
    pm.fit(recipe, out=tmp_path / "whole")
    original = fit_module.StepCheckpoint.on_train_batch_end
    written = []

    def stop_mid_second_epoch(self, trainer, module, outputs, batch, batch_idx):
        before = self.path.stat().st_mtime_ns if self.path.exists() else None
        original(self, trainer, module, outputs, batch, batch_idx)
        if trainer.current_epoch == 1 and self.path.stat().st_mtime_ns != before:
            written.append((batch_idx + 1) * steps_per_call)  # batches of the epoch done
            raise Interrupted

    monkeypatch.setattr(fit_module.StepCheckpoint, "on_train_batch_end", stop_mid_second_epoch)
    with pytest.raises(Interrupted):
        pm.fit(recipe, out=tmp_path / "cut")
    monkeypatch.setattr(fit_module.StepCheckpoint, "on_train_batch_end", original)
    assert written and written[0] < 5, written  # in the middle of the epoch
    pm.fit(recipe, out=tmp_path / "cut", resume=True)
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
