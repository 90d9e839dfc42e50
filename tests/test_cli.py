"""The CLI end to end in a subprocess: the quick form, evaluate --json, predict, info, and clean errors."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import draw_shape, write_jsonl, write_tone


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polymodal", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.fixture(scope="module")
def av_tables(tmp_path_factory):
    """Audio (tone pitch) + image (colour) -> label, relative paths, some cells missing."""
    d = tmp_path_factory.mktemp("av")
    (d / "media").mkdir()
    rows = []
    for i in range(90):
        k = i % 3
        write_tone(d / "media" / f"{i}.wav", [300, 700, 1500][k], 0.25, seed=i)
        draw_shape(d / "media" / f"{i}.png", "circle", ["red", "blue", "green"][k], 16, seed=i)
        rows.append({"id": f"r{i}", "audio": f"media/{i}.wav", "image": f"media/{i}.png", "label": k})
    rows[5]["image"] = None
    rows[7]["audio"] = ""
    write_jsonl(d / "train.jsonl", rows[:60])
    write_jsonl(d / "val.jsonl", rows[60:75])
    write_jsonl(d / "test.jsonl", rows[75:])
    write_jsonl(d / "inputs.jsonl", [{"id": "a", "audio": "media/0.wav"}, {"id": "b", "image": "media/1.png"}])
    return d


def test_quick_form_fit_evaluate_predict_info(av_tables, tmp_path):
    d, out = av_tables, tmp_path / "m1"
    r = run("fit", "--train", str(d / "train.jsonl"), "--validation", str(d / "val.jsonl"), "--test",
            str(d / "test.jsonl"), "--input", "audio=audio", "--input", "image=image", "--target", "label",
            "--fusion", "late", "--epochs", "6", "--out", str(out), "--quiet",
            "--set", "inputs.image.options.size=16", "--set", "inputs.audio.options.n_mels=16",
            "--set", "training.batch_size=16")
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").is_file()
    r = run("evaluate", str(out), "--data", str(d / "test.jsonl"), "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["rows"] == 15 and metrics["accuracy"] > 0.9
    confusion = metrics["confusion"]  # true class -> predicted class -> rows
    assert sum(sum(row.values()) for row in confusion.values()) == 15
    assert sum(confusion[c][c] for c in confusion) / 15 == pytest.approx(metrics["accuracy"])
    r = run("evaluate", str(out), "--data", str(d / "test.jsonl"), "--by", "label")
    assert r.returncode == 0 and "confusion" in r.stdout  # its title (wrapped to the table's width)
    groups = r.stdout[r.stdout.index("by group"):]
    assert re.search(r"│ 0 +│ +5 │", groups)  # class 0's 5 rows as a group
    for c in confusion:  # a row per true class: its counts by predicted class
        assert re.search(rf"│ {c} +│ " + " │ ".join(str(confusion[c][p]) for p in confusion[c]) + " │", r.stdout)
    r = run("predict", str(out), str(d / "inputs.jsonl"))
    assert r.returncode == 0, r.stderr
    preds = [json.loads(line) for line in r.stdout.splitlines()]
    assert [p["id"] for p in preds] == ["a", "b"] and [p["label"] for p in preds] == ["0", "1"]
    r = run("predict", str(out), str(d / "inputs.jsonl"), "--out", str(tmp_path / "p.jsonl"))
    assert r.returncode == 0 and len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    r = run("info", str(out), "--json")
    info = json.loads(r.stdout)
    assert info["inputs"]["audio"]["modality"] == "audio" and info["classes"] == ["0", "1", "2"]
    assert info["fusion"]["method"] == "late"


def test_threshold_flag_values():
    from polymodal.cli.train import parse_threshold
    from polymodal.errors import PolymodalError

    assert [parse_threshold(v) for v in (None, "validation", "argmax", "0.3")] == [None, "validation", "argmax", 0.3]
    with pytest.raises(PolymodalError, match="--threshold 'maybe': expected validation, argmax or a probability"):
        parse_threshold("maybe")


def test_quick_form_threshold_is_kept_and_shown_by_info(av_tables, tmp_path, capsys):
    rows = [json.loads(x) for x in (av_tables / "train.jsonl").read_text().splitlines()]
    two = [{**r, "audio": str(av_tables / r["audio"]) if r["audio"] else None,
            "image": str(av_tables / r["image"]) if r["image"] else None} for r in rows if r["label"] != 2]
    (tmp_path / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in two))
    out = tmp_path / "m"
    r = run("fit", "--train", str(tmp_path / "two.jsonl"), "--input", "audio", "--input", "image", "--target",
            "label", "--epochs", "2", "--threshold", "0.3", "--positive-class", "1", "--out", str(out), "--quiet",
            "--set", "inputs.image.options.size=16", "--set", "inputs.audio.options.n_mels=16")
    assert r.returncode == 0, r.stderr
    assert "decision: '1' when its probability is above 0.3" in run("info", str(out)).stdout
    from polymodal.cli.predict import info

    info(out, as_json=True)  # in this process: the same command's JSON
    assert json.loads(capsys.readouterr().out)["decision"] == {"positive_class": "1", "threshold": 0.3}


def test_recipe_with_set_overrides(av_tables, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
data: {{train: {av_tables / 'train.jsonl'}, test: {av_tables / 'test.jsonl'}}}
inputs:
  - {{name: a, column: audio, options: {{n_mels: 16}}}}
  - {{name: i, column: image, options: {{size: 16}}, encoder: {{channels: [8, 16]}}}}
target: {{column: label}}
training: {{batch_size: 16, progress: false}}
""")
    r = run("fit", str(recipe), "--out", str(tmp_path / "m"), "--set", "training.epochs=2",
            "--set", "model.fusion.method=gated")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["recipe"]["training"]["epochs"] == 2 and config["recipe"]["model"]["fusion"]["method"] == "gated"


@pytest.mark.parametrize("args, message", [
    (["fit", "--train", "nope.jsonl", "--input", "a", "--target", "y"], "table not found: nope.jsonl"),
    (["fit", "--train", "{train}", "--input", "a=audio", "--target", "nolabel"], "no column 'nolabel'"),
    (["fit", "--train", "{train}", "--input", "a=audio", "--target", "label", "--fusion", "magic"],
     "unknown fusion 'magic'"),
    (["fit", "--train", "{train}", "--input", "a=audio", "--target", "label", "--set", "training.epoch=2"],
     "field `training.epoch`: unknown field"),
    (["evaluate", "{train}", "--data", "{train}"], "not a polymodal model directory"),
])
def test_errors_are_one_clear_line(av_tables, args, message):
    args = [a.replace("{train}", str(av_tables / "train.jsonl")) for a in args]
    r = run(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_corrupt_file_is_named_with_its_row_and_column(av_tables, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    write_jsonl(tmp_path / "t.jsonl", [{"audio": str(av_tables / "media/0.wav"), "label": 0},
                                       {"audio": str(tmp_path / "bad.wav"), "label": 1}])
    r = run("fit", "--train", str(tmp_path / "t.jsonl"), "--input", "audio", "--target", "label", "--out",
            str(tmp_path / "m"), "--quiet")
    assert r.returncode == 2 and "t.jsonl, row 2, column 'audio': cannot decode audio" in r.stderr
