"""`training.fallback` / `fit --fallback`: beside the model of every input, a model of each input alone, joined so
each row is read by the model of the inputs it has. Rows with every input get the plain model's predictions
exactly; a row that lost an input gets the model of the inputs left."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import polymodal as pm
from polymodal.errors import PolymodalError
from polymodal.training import fallback as fallback_mod

from .test_join import probs, recipe, rows


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("fallback")
    with_fallback = recipe("a", "b")
    with_fallback["training"]["fallback"] = True
    return {"plain": pm.fit(recipe("a", "b"), train=rows(), out=d / "plain"),
            "fallback": pm.fit(with_fallback, train=rows(), test=rows(40, seed=3), out=d / "fallback")}


def test_complete_rows_read_by_the_full_model_and_the_others_by_the_model_of_their_inputs(fitted):
    model, out = fitted["fallback"], fitted["fallback"].directory
    test = rows(12, seed=4)
    test[3]["a"] = None
    test[8]["b"] = None
    got = probs(model, test)
    plain = probs(fitted["plain"], test)
    only_b, only_a = probs(pm.load(out / "members" / "2"), test), probs(pm.load(out / "members" / "1"), test)
    for i in range(len(test)):
        want = only_b[i] if i == 3 else only_a[i] if i == 8 else plain[i]
        assert got[i] == pytest.approx(want, abs=1e-6), i
    assert got[0] == plain[0]  # the same fit as without fallback, to the last digit
    config = json.loads((out / "config.json").read_text())
    assert config["ensemble"]["rows"] == "closest"
    assert [m["source"] for m in config["ensemble"]["members"]] == [
        "every input (training.fallback)", "a alone (training.fallback)", "b alone (training.fallback)"]
    assert [sorted(json.loads((out / "members" / str(k) / "config.json").read_text())["inputs"]) for k in range(3)] \
        == [["a", "b"], ["a"], ["b"]]
    assert all((out / "members" / str(k) / "train.log").is_file() for k in range(3))
    assert not (out / "fits").exists()
    log = (out / "train.log").read_text()
    assert "fallback fit 3 of 3 (b alone)" in log and "model with 2 fallback models saved" in log
    fits = model.metrics["training"]["fallback"]
    assert [f["inputs"] for f in fits] == [["a", "b"], ["a"], ["b"]] and all(f["epochs"] == 4 for f in fits)
    # the test split scored once, by the joined model: removing an input leaves the other's own model
    assert model.metrics["test"]["rows"] == 40
    assert model.metrics["validation"] == fitted["plain"].metrics["validation"]
    assert pm.load(out).predict(test) == model.predict(test)


def test_fallback_is_refused_where_it_cannot_work(tmp_path):
    one = recipe("a")
    one["training"]["fallback"] = True
    with pytest.raises(PolymodalError, match="`training.fallback`: a model of one input"):
        pm.fit(one, train=rows(), out=tmp_path / "one")
    text = recipe("a", "b")
    text["target"] = {"column": "y", "task": "text"}
    text["training"]["fallback"] = True
    with pytest.raises(PolymodalError, match="`training.fallback`: the text task does not combine"):
        pm.fit(text, train=rows(), out=tmp_path / "text")
    assert not (tmp_path / "text" / "fits").exists()


def test_resume_keeps_the_fits_that_finished(tmp_path, monkeypatch):
    rec = recipe("a", "b")
    rec["training"]["fallback"] = True
    calls = []
    real = fallback_mod.join_models

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("stopped after the fits")

    monkeypatch.setattr(fallback_mod, "join_models", crash)
    with pytest.raises(KeyboardInterrupt):
        pm.fit(rec, train=rows(), out=tmp_path / "m")
    assert all((tmp_path / "m" / "fits" / str(k) / "config.json").is_file() for k in range(3))
    monkeypatch.setattr(fallback_mod, "join_models", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    model = pm.fit(rec, train=rows(), out=tmp_path / "m", resume=True)
    assert calls == [1] and (tmp_path / "m" / "train.log").read_text().count("already trained") == 3
    assert model.metrics["training"]["fallback"][0]["epochs"] == 4


def test_cli_fallback_flag(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows(120)))
    out = tmp_path / "m"
    done = subprocess.run([sys.executable, "-m", "polymodal", "fit", "--train", str(train), "--input", "a=a:text",
                           "--input", "b=b:text", "--target", "y", "--epochs", "2", "--fallback", "--quiet",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["ensemble"]["rows"] == "closest" and len(config["ensemble"]["members"]) == 3
    info = subprocess.run([sys.executable, "-m", "polymodal", "info", str(out)], capture_output=True, text=True)
    assert "member 1: a alone (training.fallback)" in info.stdout and "rows read by: closest" in info.stdout
