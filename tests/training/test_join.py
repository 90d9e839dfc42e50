"""`polymodal ensemble` / `pm.ensemble`: trained models joined into one after the fact. Members may read different
inputs (one input each, both, or a model held to some of its inputs); each row is the mean of the probabilities of
the members that see one of their inputs in it; saved as member directories, reloaded as it was."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import polymodal as pm
from polymodal.errors import PolymodalError

WORDS_A = ["red", "blue", "green", "dark", "light"]
WORDS_B = ["cat", "dog", "fish", "bird", "frog"]


def rows(n: int = 200, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = " ".join(rng.choice(WORDS_A, 2)), " ".join(rng.choice(WORDS_B, 2))
        out.append({"a": a, "b": b, "y": "warm" if ("red" in a) or ("dog" in b) else "cold"})
    return out


def recipe(*inputs: str, epochs: int = 4) -> dict:
    return {"inputs": [{"name": n, "modality": "text", "encoder": {"type": "text_bow"}} for n in inputs],
            "target": {"column": "y"}, "data": {"validation_fraction": 0.25},
            "training": {"epochs": epochs, "batch_size": 16, "progress": False, "seed": 0}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("join")
    train = rows()
    return {name: pm.fit(recipe(*inputs), train=train, out=d / name)
            for name, inputs in (("a", ["a"]), ("b", ["b"]), ("ab", ["a", "b"]))}


def probs(model, sample: list[dict]) -> list[float]:
    return [p["probabilities"]["warm"] for p in model.predict(sample)]


def test_each_row_is_the_mean_of_the_members_that_see_it(trained, tmp_path):
    test = rows(12, seed=1)
    test[4]["b"] = None  # b missing: the b member does not see the row
    test[5]["a"] = None  # a missing: neither the a member nor the ab member held to a sees it
    joined = pm.ensemble([trained["a"], trained["b"], (trained["ab"], ["a"])], out=tmp_path / "e")
    got = probs(joined, test)
    a, b = probs(trained["a"], test), probs(trained["b"], test)
    ab_a = probs(trained["ab"], [{**r, "b": None} for r in test])  # the ab model reading a alone
    for i in range(len(test)):
        seen = [p[i] for p, sees in ((a, test[i]["a"] is not None), (b, test[i]["b"] is not None),
                                     (ab_a, test[i]["a"] is not None)) if sees]
        assert got[i] == pytest.approx(sum(seen) / len(seen), abs=1e-5), i
    assert got[5] == pytest.approx(b[5], abs=1e-5) and got[4] == pytest.approx((a[4] + ab_a[4]) / 2, abs=1e-5)
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert [m["reads"] for m in config["ensemble"]["members"]] == [None, None, ["a"]]
    assert [m["directory"] for m in config["ensemble"]["members"]] == ["members/0", "members/1", "members/2"]
    assert not (tmp_path / "e" / "model.safetensors").exists()  # the weights are the members'
    loaded = pm.load(tmp_path / "e")
    assert probs(loaded, test) == got
    assert sorted(loaded.inputs) == ["a", "b"]
    assert "member 2: " in (tmp_path / "e" / "join.log").read_text()
    # held to a: a table without column b is enough for these two; without a, it is refused by name
    only_a = [{k: v for k, v in r.items() if k != "b"} for r in rows(20, seed=6)]
    held = pm.ensemble([trained["a"], (trained["ab"], ["a"])], validation=only_a, test=only_a)
    assert held.metrics["test"]["rows"] == 20
    with pytest.raises(PolymodalError, match="no column 'a'"):
        pm.ensemble([trained["a"], (trained["ab"], ["a"])], test=[{k: v for k, v in r.items() if k != "a"}
                                                                   for r in rows(20, seed=6)])


def test_the_closest_rule_keeps_the_members_whose_inputs_best_match_each_row():
    import torch

    from polymodal.types import ModalityBatch, reading_members

    present = {"a": [True, True, False, True, False], "b": [True, False, True, True, False],
               "c": [False, False, False, True, False]}
    batch = {n: ModalityBatch(torch.zeros(5, 1), None, torch.tensor(p), torch.arange(5)) for n, p in present.items()}
    members = [{"a", "b"}, {"a"}, {"b"}, {"a", "b", "c"}]
    sees = reading_members(batch, members, "all")
    assert sees.tolist() == [[True, True, True, True], [True, True, False, True], [True, False, True, True],
                             [True, True, True, True], [True, True, True, True]]  # row 4: nobody sees it: all
    # row 0 (a, b): the a+b model (2 present, 0 absent) over a+b+c (2, 1) and the single ones (1, 0); row 1 (a):
    # the a model (1, 0) over a+b (1, 1) and a+b+c (1, 2); row 3 (a, b, c): a+b+c; row 4 (nothing): a tie of all
    closest = reading_members(batch, members, "closest")
    assert closest.tolist() == [[True, False, False, False], [False, True, False, False],
                                [False, False, True, False], [False, False, False, True],
                                [False, True, True, False]]
    # widest: a member gives way to a wider one whose inputs are all in the row (row 0: a+b covers a and b, a+b+c
    # lacks c so it stays; row 1: no wider member is complete, every seer stays; row 3: a+b+c covers the rest)
    widest = reading_members(batch, members, "widest")
    assert widest.tolist() == [[True, False, False, True], [True, True, False, True], [True, False, True, True],
                               [False, False, False, True], [True, True, True, True]]
    # first: the first member listed that sees the row (row 2: the a model does not see it, the b model does)
    first = reading_members(batch, members, "first")
    assert first.tolist() == [[True, False, False, False]] * 5
    assert reading_members(batch, members[1:], "first").tolist() == [
        [True, False, False], [True, False, False], [False, True, False], [True, False, False], [True, False, False]]
    with pytest.raises(ValueError, match="unknown ensemble row rule 'some'"):
        reading_members(batch, members, "some")


def test_a_closest_ensemble_reads_each_row_by_the_model_of_its_inputs(trained, tmp_path):
    test = rows(12, seed=5)
    test[2]["b"] = None  # a alone: the a model only
    test[7]["a"] = None  # b alone: the b model only
    joined = pm.ensemble([trained["ab"], trained["a"], trained["b"]], out=tmp_path / "e", rows="closest")
    got = probs(joined, test)
    ab, a, b = probs(trained["ab"], test), probs(trained["a"], test), probs(trained["b"], test)
    for i in range(len(test)):
        want = a[i] if i == 2 else b[i] if i == 7 else ab[i]
        assert got[i] == pytest.approx(want, abs=1e-6), i
    assert json.loads((tmp_path / "e" / "config.json").read_text())["ensemble"]["rows"] == "closest"
    assert "rows read by: closest" in (tmp_path / "e" / "join.log").read_text()
    assert probs(pm.load(tmp_path / "e"), test) == got
    every = probs(pm.ensemble([trained["ab"], trained["a"], trained["b"]]), test)  # rows: all, the default
    assert every[2] == pytest.approx((ab[2] + a[2]) / 2, abs=1e-6)
    with pytest.raises(PolymodalError, match="rows: 'nearest' is not a rule"):
        pm.ensemble([trained["ab"], trained["a"]], rows="nearest")
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    config["ensemble"]["rows"] = "nearest"
    (tmp_path / "e" / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolymodalError, match=r"e/config.json: rows: 'nearest' is not a rule"):
        pm.load(tmp_path / "e")


def test_validation_and_test_are_scored_and_the_ensemble_beats_a_lone_input(trained, tmp_path):
    val, test = rows(60, seed=2), rows(80, seed=3)
    joined = pm.ensemble([trained["a"], trained["b"]], validation=val, test=test, out=tmp_path / "e")
    assert joined.metrics["test"]["accuracy"] == pytest.approx(pm.load(tmp_path / "e").evaluate(test)["accuracy"])
    # y needs both inputs: the two one-input models together do better than either alone
    alone = max(trained[k].evaluate(test)["accuracy"] for k in ("a", "b"))
    assert joined.metrics["test"]["accuracy"] > alone
    assert set(joined.metrics["validation"]) >= {"accuracy", "f1_macro"}
    assert [m["source"] for m in joined.metrics["ensemble"]["members"]] == \
        [str(trained["a"].directory), str(trained["b"].directory)]


def test_members_that_cannot_be_joined_are_refused_by_name(trained, tmp_path):
    with pytest.raises(PolymodalError, match="two models or more"):
        pm.ensemble([trained["a"]])
    with pytest.raises(PolymodalError, match=r"reads c, which it has no input for \(its inputs: a, b\)"):
        pm.ensemble([trained["a"], (trained["ab"], ["c"])])
    other = rows()
    for r in other:
        r["y"] = "yes" if "red" in r["a"] else "no"
    labels = pm.fit(recipe("a"), train=other, out=tmp_path / "labels")
    with pytest.raises(PolymodalError, match="do not mean the same"):
        pm.ensemble([trained["a"], labels])
    shorter = recipe("a")
    shorter["inputs"][0]["options"] = {"max_length": 3}  # the same column cut to 3 tokens: read another way
    cut = pm.fit(shorter, train=rows(), out=tmp_path / "cut")
    with pytest.raises(PolymodalError, match=f"input 'a' is read one way by {trained['a'].directory} and another "
                                             f"by {tmp_path / 'cut'}"):
        pm.ensemble([trained["a"], cut], out=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_cli_ensemble_joins_directories_and_holds_a_member_to_its_inputs(trained, tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in rows(30, seed=4)))
    out = tmp_path / "e"
    done = subprocess.run([sys.executable, "-m", "polymodal", "ensemble", str(trained["b"].directory),
                           f"{trained['ab'].directory}:a", "--out", str(out), "--test", str(test), "--rows",
                           "closest"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"ensemble of 2 models saved to {out}" in done.stderr and "test: accuracy=" in done.stderr
    config = json.loads((out / "config.json").read_text())
    assert [m["reads"] for m in config["ensemble"]["members"]] == [None, ["a"]]
    info = subprocess.run([sys.executable, "-m", "polymodal", "info", str(out)], capture_output=True, text=True)
    assert f"member 1: {trained['ab'].directory}, reading a" in info.stdout.replace("\n", "")
    assert "rows read by: closest" in info.stdout and config["ensemble"]["rows"] == "closest"
    export = subprocess.run([sys.executable, "-m", "polymodal", "export", str(out)], capture_output=True, text=True)
    assert export.returncode == 2 and "a joined ensemble (polymodal ensemble) is not one graph" in export.stderr
    bad = subprocess.run([sys.executable, "-m", "polymodal", "ensemble", str(trained["b"].directory),
                          str(tmp_path / "missing"), "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing: not a polymodal model directory" in bad.stderr
