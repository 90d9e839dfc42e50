"""`training.ensemble`: members trained with seeds seed .. seed + N - 1 on one validation split, kept as one model
whose output the task combines (mean probabilities)."""
from __future__ import annotations

import math

import pytest
import torch

import polymodal as pm
from polymodal.errors import PolymodalError
from polymodal.tasks.classification import Classification, Multilabel
from polymodal.tasks.regression import Regression

from .test_refit import recipe as refit_recipe
from .test_refit import toy_rows


def test_combine_averages_probabilities_or_values():
    two = [torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])]  # (1/2, 1/2) and (3/4, 1/4)
    assert Classification.combine(None, two).softmax(-1)[0].tolist() == pytest.approx([0.625, 0.375])
    logits = [torch.tensor([[0.0]]), torch.tensor([[math.log(3.0)]])]  # sigmoid 1/2 and 3/4
    assert Multilabel.combine(None, logits).sigmoid()[0].tolist() == pytest.approx([0.625])
    assert Regression.combine(None, [torch.tensor([[1.0]]), torch.tensor([[2.0]])]).tolist() == [[1.5]]


def recipe(**training) -> dict:
    return refit_recipe(**{"refit": False, **training})


def test_ensemble_of_three_seeds_is_one_model_of_their_mean_probability(tmp_path):
    rows = toy_rows()
    model = pm.fit(recipe(ensemble=3, epochs=4), train=rows[:200], test=rows[200:], out=tmp_path / "m")
    members = model.metrics["training"]["members"]
    assert [m["seed"] for m in members] == [0, 1, 2]
    plain = pm.fit(recipe(epochs=4), train=rows[:200], out=tmp_path / "plain")  # the first member is the seed-0 fit
    assert members[0]["validation"] == plain.metrics["validation"]
    assert not (tmp_path / "m" / "members").exists()
    assert "ensemble of 3 saved" in (tmp_path / "m" / "train.log").read_text()
    net = model.parts.net
    assert len(net.members) == 3
    sample = rows[200:206]
    got = [p["probabilities"] for p in model.predict(sample)]
    loaded = pm.load(tmp_path / "m")
    assert [p["probabilities"] for p in loaded.predict(sample)] == got
    assert loaded.evaluate(rows[200:])["accuracy"] == model.metrics["test"]["accuracy"]
    from polymodal.data import as_table, read_inputs
    from polymodal.evaluation.evaluate import run_outputs

    parts = loaded.parts
    read = read_inputs(as_table(sample), parts.inputs, parts.task, None, "error", require_target=False,
                       show_progress=False)
    combined, _ = run_outputs(parts, read)
    each = []
    for member in parts.net.members:  # each member alone, through the same machinery
        parts.net, kept = member, parts.net
        each.append(run_outputs(parts, read)[0].softmax(-1))
        parts.net = kept
    assert torch.allclose(combined.softmax(-1), torch.stack(each).mean(0), atol=1e-6)


def test_ensemble_is_for_tasks_whose_outputs_average(tmp_path):
    rows = [{"txt": r["txt"], "y": r["y"]} for r in toy_rows(60)]
    rec = recipe(ensemble=2)
    rec["target"] = {"column": "y", "task": "text"}
    with pytest.raises(PolymodalError, match="training.ensemble"):
        pm.fit(rec, train=rows, out=tmp_path / "m")
    rec = recipe(ensemble=2, epochs=2)
    rec["target"]["options"] = {"threshold": "validation"}
    model = pm.fit(rec, train=rows, out=tmp_path / "e")
    calibrated = model.metrics["training"]["calibrated"]  # chosen on the ensemble's validation outputs
    assert round(model.parts.task.cutoff, 6) == calibrated["threshold"]
    with pytest.raises(PolymodalError, match="ensemble"):
        model.explain(rows[:4], index=0)


def test_quick_form_flags_refit_and_ensemble(tmp_path):
    import json

    from typer.testing import CliRunner

    from polymodal.cli import app

    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in toy_rows(120)))
    out = tmp_path / "m"
    result = CliRunner().invoke(app, ["fit", "--train", str(tmp_path / "t.jsonl"), "--input", "txt=txt:text",
                                      "--target", "y", "--epochs", "2", "--refit", "--ensemble", "2", "--quiet",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["training"]["refit"] is True and config["recipe"]["training"]["ensemble"] == 2
    members = json.loads((out / "metrics.json").read_text())["training"]["members"]
    assert [m["refit"]["rows"] for m in members] == [120, 120]  # each member refit on all 120 rows
    shown = CliRunner().invoke(app, ["info", str(out)])
    assert "trained: 2 model(s) (training.ensemble), each trained again on training + validation rows" in \
        " ".join(shown.output.split())
