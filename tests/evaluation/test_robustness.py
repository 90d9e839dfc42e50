"""Robustness and reliance: subsets show the expected drops; the reliance warning fires when an input is noise;
modality dropout never hides all of a row's inputs; the robustness areas are computed as defined."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import polymodal as pm
from polymodal.data.batching import drop_inputs
from polymodal.evaluation.robustness import effective_robustness, relative_robustness
from tests.conftest import image_text_recipe


def test_subsets_show_the_expected_drop(noise_text_model, image_only_signal, tmp_path):
    report = noise_text_model.evaluate(image_only_signal[400:], robustness=True, out=tmp_path)
    rob = report["robustness"]
    assert rob["clean"] > 0.95
    assert rob["subsets"]["img"] > 0.95  # the input that carries the label is enough
    assert rob["subsets"]["txt"] < 0.7 and rob["subsets"]["none"] < 0.7  # without it: chance
    assert rob["curves"]["img"]["greyscale"][-1] < 0.75  # colour removed -> the label is gone
    assert rob["curves"]["txt"]["word_dropout"][-1] > 0.95  # text noise does not matter
    assert (tmp_path / "robustness_img.png").is_file() and (tmp_path / "robustness.json").is_file()


def test_reliance_warning_fires_on_an_ignored_input(noise_text_model, image_only_signal):
    metrics = noise_text_model.evaluate(image_only_signal[400:])
    assert metrics["reliance"]["img"] > 0.3
    assert any("ignores `txt`" in w for w in metrics["warnings"]), metrics
    assert not any("`img`" in w for w in metrics["warnings"])


def test_scores_by_group_are_the_reports_of_each_groups_rows(noise_text_model, image_only_signal):
    """`evaluate(..., by=COLUMN)`: each value's rows scored alone (their accuracy worked out here from the
    predictions), largest group first, rows without a value as "(missing)"; an unknown column names the table's."""
    from polymodal.errors import PolymodalError

    rows = [{**r, "source": ["blog", "news", "news", None][i % 4]} for i, r in enumerate(image_only_signal[400:])]
    report = noise_text_model.evaluate(rows, by="source")
    assert list(report["by"]) == ["news", "(missing)", "blog"] and report["by"]["news"]["rows"] == 40
    predicted = [p["label"] for p in noise_text_model.predict(rows)]
    for value, keep in (("news", {1, 2}), ("blog", {0}), ("(missing)", {3})):
        hits = [predicted[i] == r["label"] for i, r in enumerate(rows) if i % 4 in keep]
        assert report["by"][value]["accuracy"] == pytest.approx(sum(hits) / len(hits), abs=1e-6)
        assert set(report["by"][value]) >= {"accuracy", "per_class_f1", "confusion", "loss"}
    assert report["accuracy"] == noise_text_model.evaluate(rows)["accuracy"]  # the whole table's, unchanged
    with pytest.raises(PolymodalError, match="no column 'event' to group the rows by"):
        noise_text_model.evaluate(rows, by="event")


def test_reliance_is_silent_on_a_balanced_model(xor_rows):
    model = pm.fit(image_text_recipe("product", 0.0), train=xor_rows[:320], validation=xor_rows[320:400])
    metrics = model.evaluate(xor_rows[400:])
    assert metrics["accuracy"] > 0.9 and "warnings" not in metrics
    assert min(metrics["reliance"].values()) > 0.2


def test_modality_dropout_never_hides_all_of_a_rows_inputs():
    rng = np.random.default_rng(0)
    present = rng.random((4000, 2)) < 0.8
    kept = drop_inputs(present, np.array([0.5, 0.5]), rng)
    assert np.array_equal(kept.any(1), present.any(1))  # rows with an input keep one; rows with none stay empty
    assert not (kept & ~present).any()  # never invents an input
    both = present.all(1)
    rate = 1 - kept[both, 0].mean()
    assert 0.2 < rate < 0.45  # about 0.5, less the rows given an input back
    assert np.array_equal(drop_inputs(present, np.array([0.0, 0.0]), rng), present)
    assert not drop_inputs(present, np.array([0.0, 1.0]), rng)[:, 1][present[:, 0]].any()  # per-input rates


def test_collated_training_batches_hide_inputs_but_keep_their_values(xor_rows):
    from polymodal.config import build_recipe
    from polymodal.data import Collator, as_table
    from polymodal.training.prepare import prepare

    prep = prepare(build_recipe(image_text_recipe()), {"train": as_table(xor_rows[:64])})
    parts, data = prep.parts, prep.train
    plain = Collator(data, parts.modalities, parts.task)(list(range(len(data))))[0]
    hidden = Collator(data, parts.modalities, parts.task, modality_dropout=0.4, seed=1)(list(range(len(data))))[0]
    present = torch.stack([hidden[n].present for n in ("img", "txt")], 1)
    assert present.any(1).all() and 0.2 < 1 - present.float().mean() < 0.45
    for name in ("img", "txt"):  # the same values and indices: only the flags change
        assert torch.equal(plain[name].data, hidden[name].data) and torch.equal(plain[name].index, hidden[name].index)


def test_robustness_areas():
    flat = [0.9] * 11
    assert relative_robustness(flat) == pytest.approx(0.9)
    falling = [1.0 - 0.1 * i for i in range(11)]
    assert relative_robustness(falling) == pytest.approx(0.5)
    assert effective_robustness(flat, falling) == pytest.approx(0.5)
    assert effective_robustness(falling, falling) == pytest.approx(0.0)


def test_cli_evaluate_robustness_json(noise_text_model, image_only_signal, tmp_path):
    from tests.conftest import write_jsonl

    noise_text_model.save(tmp_path / "m")
    write_jsonl(tmp_path / "t.jsonl", image_only_signal[400:440])
    r = subprocess.run([sys.executable, "-m", "polymodal", "evaluate", str(tmp_path / "m"), "--data",
                        str(tmp_path / "t.jsonl"), "--robustness", "--json", "--out", str(tmp_path / "rob")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report["robustness"]["curves"]) == {"img", "txt"}
    assert len(report["robustness"]["curves"]["img"]["blur"]) == 11
    assert "ignores `txt`" in r.stderr
    r = subprocess.run([sys.executable, "-m", "polymodal", "evaluate", str(tmp_path / "m"), "--data",
                        str(tmp_path / "t.jsonl"), "--robustness", "--json", "--baseline", str(tmp_path / "rob")],
                       capture_output=True, text=True, timeout=300)
    eff = json.loads(r.stdout)["robustness"]["effective_robustness"]
    assert eff["img"]["blur"] == pytest.approx(0.0, abs=1e-6)  # against itself


def test_training_augmentation_corrupts_some_distinct_values(xor_rows):
    from polymodal.config import build_recipe
    from polymodal.data import Collator, as_table
    from polymodal.training.prepare import prepare

    recipe = build_recipe(image_text_recipe(), ["training.augment=0.5"])
    prep = prepare(recipe, {"train": as_table(xor_rows[:64])})
    assert prep.train.raw is not None
    rows = list(range(32))
    clean, _ = Collator(prep.train, prep.parts.modalities, prep.parts.task)(rows)
    noisy, _ = Collator(prep.train, prep.parts.modalities, prep.parts.task, augment=0.5, seed=1)(rows)
    changed = (clean["img"].data != noisy["img"].data).flatten(1).any(1).float().mean()
    assert 0.2 < float(changed) < 0.8
    again, _ = Collator(prep.train, prep.parts.modalities, prep.parts.task)(rows)
    assert torch.equal(clean["img"].data, again["img"].data)  # the shared items were not modified


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_alone_rows_can_be_predicted_by_their_own_head(image_only_signal, kind, tmp_path):
    recipe = image_text_recipe("late", 0.3)
    recipe["model"].update({"unimodal_heads": 1.0, "alone": "head", "unimodal_head": kind})
    recipe["training"]["epochs"] = 3
    model = pm.fit(recipe, train=image_only_signal[:200], validation=image_only_signal[200:260])
    net = model.parts.net
    read = model._read(image_only_signal[400:420], "none")
    from polymodal.data import Collator

    batch, _ = Collator(read, model.parts.modalities, None)(list(range(20)))
    batch["txt"] = replace(batch["txt"], present=torch.zeros(20, dtype=torch.bool))
    with torch.no_grad():
        out = net(batch)
        own = net.unimodal_heads["img"](net.encoders["img"](batch["img"]).pooled)
        fused = net.head(net.fuse(net.encode(batch)).pooled)
    assert torch.allclose(out, own) and not torch.allclose(out, fused)
    head = net.unimodal_heads["img"]
    # mlp: the stack a unimodal model has after its encoder (Linear-GELU of the fusion's width: 64 here, then the
    # task head)
    assert isinstance(head, torch.nn.Linear) if kind == "linear" else head[0][0].out_features == 64
    model.save(tmp_path / "m")
    with torch.no_grad():
        assert torch.allclose(pm.load(tmp_path / "m").parts.net(batch), out)


def test_collator_in_each_worker_draws_its_own_dropout(xor_rows, monkeypatch):
    from types import SimpleNamespace

    from polymodal.config import build_recipe
    from polymodal.data import Collator, as_table
    from polymodal.training.prepare import prepare

    prep = prepare(build_recipe(image_text_recipe()), {"train": as_table(xor_rows[:64])})
    rows = list(range(len(prep.train)))

    def flags(worker: int | None) -> list[bool]:
        info = None if worker is None else SimpleNamespace(id=worker)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
        collate = Collator(prep.train, prep.parts.modalities, prep.parts.task, modality_dropout=0.4, seed=1)
        return collate(rows)[0]["img"].present.tolist()

    assert flags(0) == flags(0)  # seeded per worker
    assert flags(0) != flags(1) and flags(0) != flags(None)  # a copy of the parent's stream would repeat it
