"""`training.fallback` / `fit --fallback`: beside the model of every input, a model of each input alone, joined with
`rows: widest`. Rows with every input get the plain model's predictions exactly; a row that lost an input gets the
mean of the model of the inputs left and the full model reading them."""
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


def test_complete_rows_read_by_the_full_model_and_the_others_also_by_the_model_of_their_inputs(fitted):
    model, out = fitted["fallback"], fitted["fallback"].directory
    test = rows(12, seed=4)
    test[3]["a"] = None
    test[8]["b"] = None
    plain = probs(fitted["plain"], test)  # rows 3 and 8: the plain model reading its one input left
    only_b, only_a = probs(pm.load(out / "members" / "2"), test), probs(pm.load(out / "members" / "1"), test)
    expected = {"closest": lambda i: only_b[i] if i == 3 else only_a[i] if i == 8 else plain[i],
                "widest": lambda i: (plain[i] + only_b[i]) / 2 if i == 3 else (plain[i] + only_a[i]) / 2 if i == 8
                else plain[i],
                "first": lambda i: plain[i]}  # the full model alone, as without fallback
    chosen = model.metrics["training"]["fallback_rows"]
    tried = chosen["validation"]
    assert set(tried) == {"closest", "widest", "first"} and set(tried["closest"]["without"]) == {"a", "b"}
    best = max(tried.values(), key=lambda t: t["mean"])["mean"]
    assert tried[chosen["chosen"]]["mean"] == best  # the better mean on validation
    assert chosen["chosen"] == "closest" or tried["closest"]["mean"] < best  # ties go to closest
    for rule in ("closest", "widest", "first"):
        model.parts.net.rows = rule
        got = probs(model, test)
        for i in range(len(test)):
            assert got[i] == pytest.approx(expected[rule](i), abs=1e-6), (rule, i)
    model.parts.net.rows = chosen["chosen"]
    got = probs(model, test)
    assert got[0] == plain[0]  # the same fit as without fallback, to the last digit
    config = json.loads((out / "config.json").read_text())
    assert config["ensemble"]["rows"] == chosen["chosen"]
    log = (out / "train.log").read_text()
    assert "rows closest: validation accuracy with each input removed" in log
    assert f"joined: rows {chosen['chosen']}" in log
    assert [m["source"] for m in config["ensemble"]["members"]] == [
        "every input (training.fallback)", "a alone (training.fallback)", "b alone (training.fallback)"]
    assert [sorted(json.loads((out / "members" / str(k) / "config.json").read_text())["inputs"]) for k in range(3)] \
        == [["a", "b"], ["a"], ["b"]]
    assert all((out / "members" / str(k) / "train.log").is_file() for k in range(3))
    assert not (out / "fits").exists()
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
    ddp = recipe("a", "b")
    ddp["training"].update(fallback=True, strategy="ddp")
    with pytest.raises(PolymodalError, match="`training.fallback`: the models train one after another in one process"):
        pm.fit(ddp, train=rows(), out=tmp_path / "ddp")
    assert not (tmp_path / "ddp" / "fits").exists()


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
    assert config["ensemble"]["rows"] in ("closest", "widest", "first") and len(config["ensemble"]["members"]) == 3
    info = subprocess.run([sys.executable, "-m", "polymodal", "info", str(out)], capture_output=True, text=True)
    assert "member 1: a alone (training.fallback)" in info.stdout
    assert f"rows read by: {config['ensemble']['rows']}" in info.stdout


def test_a_refit_fallback_keeps_closest_for_it_has_no_rows_to_choose_by(tmp_path):
    from polymodal.config import build_recipe

    rec = recipe("a", "b")
    rec["training"].update(fallback=True, refit=True)
    chosen = fallback_mod.choose_rows(None, build_recipe(rec), {}, tmp_path / "train.log")
    assert chosen == {"chosen": "closest", "validation": None}
    assert "rows: closest (the fits refit on their validation rows" in (tmp_path / "train.log").read_text()
