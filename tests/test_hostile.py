"""Hostile inputs through the command line: 200+ generated bad values, tables, targets, paths and recipes. Each must
end in one line `error: ...` naming the file, row and column (exit 2), or be read as documented (exit 0: an hour of
audio is cropped to max_seconds, invalid UTF-8 replaced); never a traceback, a hang or a crash. The CLI runs
in-process (the same `main` the `polymodal` script calls) so the whole set takes seconds."""
from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
import os
import shutil
import struct
import sys
import traceback
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import polymodal as pm
from polymodal.errors import PolymodalError
from tests.conftest import FIVE_RECIPE, draw_shape, write_jsonl, write_tone, write_video


def cli(*args: str) -> tuple[int, str, str]:
    """Run `polymodal ARGS` in this process: (exit code, stdout, stderr); an exception that escapes `main` is a
    traceback the user would see, returned as exit code -1 with the traceback on stderr."""
    from polymodal.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    argv, code = sys.argv, 0
    sys.argv = ["polymodal", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - exactly what must never happen
        code = -1
        err.write(traceback.format_exc())
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """One valid file of each kind, to corrupt and to mislabel."""
    d = tmp_path_factory.mktemp("media")
    draw_shape(d / "ok.png", "circle", "red", 16)
    write_tone(d / "ok.wav", 440, 0.3)
    write_video(d / "ok.mp4", "red")
    np.save(d / "ok.npy", np.ones((10, 3), np.float32))
    return d


@pytest.fixture(scope="module")
def model_dir(five_modality_dir, tmp_path_factory) -> Path:
    recipe = copy.deepcopy(FIVE_RECIPE)
    recipe["data"] = {"train": str(five_modality_dir / "train.jsonl"), "validation_fraction": 0.25}
    out = tmp_path_factory.mktemp("hostile") / "model"
    pm.fit(recipe, out=out)
    return out


# -- bad files, by suffix -------------------------------------------------------------------------------------------
SUFFIXES = {"image": [".png", ".jpg", ".bmp", ".gif"], "audio": [".wav", ".flac", ".mp3", ".ogg"],
            "video": [".mp4", ".webm", ".avi"], "signal": [".npy", ".csv"]}
VALID = {"image": "ok.png", "audio": "ok.wav", "video": "ok.mp4", "signal": "ok.npy"}
OTHER = {"image": "ok.wav", "audio": "ok.png", "video": "ok.png", "signal": "ok.wav"}


def make_bad(kind: str, media: Path, target: Path, modality: str) -> None:
    valid = (media / VALID[modality]).read_bytes()
    if kind == "zero_bytes":
        target.write_bytes(b"")
    elif kind == "truncated_half":
        target.write_bytes(valid[: len(valid) // 2])
    elif kind == "truncated_header":
        target.write_bytes(valid[:16])
    elif kind == "random_bytes":
        target.write_bytes(np.random.default_rng(len(str(target))).bytes(1024))
    elif kind == "plain_text":
        target.write_text("hello, this is not what the name says\n")
    elif kind == "html":
        target.write_text("<html><body>404 Not Found</body></html>")
    elif kind == "mislabelled":
        target.write_bytes((media / OTHER[modality]).read_bytes())
    elif kind == "gzip":
        target.write_bytes(gzip.compress(valid))
    elif kind == "directory":
        target.mkdir()
    elif kind == "missing":
        pass
    elif kind == "dangling_symlink":
        os.symlink(target.with_name("nowhere" + target.suffix), target)
    elif kind == "symlink_loop":
        os.symlink(target, target)
    else:
        raise AssertionError(kind)


KINDS = ["zero_bytes", "truncated_half", "truncated_header", "random_bytes", "plain_text", "html", "mislabelled",
         "gzip", "directory", "missing", "dangling_symlink", "symlink_loop"]
# read, not refused: a WAV cut in half is the half that is there; a PNG named .mp4 is a one-frame video to PyAV
READABLE = {("audio", "truncated_half"), ("video", "mislabelled")}
FILE_CASES = [(m, suffix, kind) for m, suffixes in SUFFIXES.items() for suffix in suffixes for kind in KINDS]


def predict_one(model_dir: Path, table_dir: Path, row: dict, *extra: str) -> tuple[int, str, str]:
    table = write_jsonl(table_dir / "rows.jsonl", [row])
    return cli("predict", model_dir, table, *extra)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("modality,suffix,kind", FILE_CASES, ids=[f"{m}{s}-{k}" for m, s, k in FILE_CASES])
def test_bad_files(model_dir, media, tmp_path, modality, suffix, kind):
    bad = tmp_path / f"bad{suffix}"
    make_bad(kind, media, bad, modality)
    code, out, err = predict_one(model_dir, tmp_path, {modality: bad.name, "text": "a red thing"})
    if (modality, kind) in READABLE:  # documented: read as far as it goes / as what it is
        assert code == 0 and json.loads(out)["label"] in ("red", "blue"), err
        return
    one_line_error(code, err, "rows.jsonl", "row 1", f"column '{modality}'")


# -- bad values of every kind ----------------------------------------------------------------------------------------
def bomb_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def value_cases(d: Path) -> dict[str, tuple[str, object, str]]:
    """name -> (column, cell value, a word the error must hold)."""
    (d / "bomb.png").write_bytes(bomb_png())
    sf.write(d / "nan.wav", np.array([0.1, np.nan, 0.2] * 100, np.float32), 8000, subtype="FLOAT")
    sf.write(d / "inf.wav", np.array([0.1, np.inf] * 100, np.float32), 8000, subtype="FLOAT")
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 8000)
    np.save(d / "frames_2d.npy", np.zeros((4, 4), np.uint8))
    np.save(d / "frames_many.npy", np.zeros((100_000, 2, 2), np.uint8))
    np.save(d / "frames_empty.npy", np.zeros((3, 0, 4), np.uint8))
    np.save(d / "sig_object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "sig_3d.npy", np.zeros((2, 3, 4), np.float32))
    np.save(d / "sig_width.npy", np.zeros((10, 7), np.float32))
    np.save(d / "sig_nan.npy", np.full((10, 3), np.nan, np.float32))
    np.save(d / "sig_empty.npy", np.zeros((0, 3), np.float32))
    (d / "sig_text.csv").write_text("a,b,c\nx,y,z\n")
    (d / "sig_empty.csv").write_text("")
    (d / "sig_ragged.csv").write_text("1,2,3\n4,5\n6\n")
    import av

    write_video(d / "video_only.mp4", "red")
    with av.open(str(d / "audio_only.mp4"), "w") as c:  # a container with sound and no picture
        s = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return {
        "image_bomb": ("image", "bomb.png", "image too large"),
        "image_number": ("image", 42, "image"),
        "image_dict": ("image", {"a": 1}, "image"),
        "image_nested_list": ("image", [[[1, 2], [3]]], "image"),
        "image_bool": ("image", True, "image"),
        "audio_nan": ("audio", "nan.wav", "NaN"),
        "audio_inf": ("audio", "inf.wav", "infinite"),
        "audio_empty": ("audio", "empty.wav", "audio"),
        "audio_number": ("audio", 3.5, "audio"),
        "audio_dict": ("audio", {"x": 1}, "audio"),
        "audio_video_only": ("audio", "video_only.mp4", "no audio stream"),
        "video_2d_array": ("video", "frames_2d.npy", "video array"),
        "video_100k_frames": ("video", "frames_many.npy", "max_decode_frames"),
        "video_no_pixels": ("video", "frames_empty.npy", "no pixels"),
        "video_audio_only": ("video", "audio_only.mp4", "no video stream"),
        "video_number": ("video", 7, "video"),
        "video_dict": ("video", {"v": 1}, "video"),
        "signal_object_npy": ("signal", "sig_object.npy", "signal"),
        "signal_3d": ("signal", "sig_3d.npy", "signal"),
        "signal_width": ("signal", "sig_width.npy", "features"),
        "signal_nan_npy": ("signal", "sig_nan.npy", "NaN"),
        "signal_empty_npy": ("signal", "sig_empty.npy", "non-empty"),
        "signal_text_csv": ("signal", "sig_text.csv", "signal"),
        "signal_empty_csv": ("signal", "sig_empty.csv", "signal"),
        "signal_ragged_csv": ("signal", "sig_ragged.csv", "signal"),
        "signal_nan_list": ("signal", [[1.0, float("nan"), 2.0]], "NaN"),
        "signal_inf_list": ("signal", [[1.0, float("inf"), 2.0]], "NaN or infinite"),
        "signal_ragged_list": ("signal", [[1.0, 2.0, 3.0], [1.0]], "signal"),
        "signal_strings": ("signal", [["a", "b", "c"]], "signal"),
        "signal_3d_list": ("signal", [[[1.0, 2.0, 3.0]]], "signal"),
        "signal_dict": ("signal", {"x": [1, 2]}, "signal"),
        "signal_wrong_width_list": ("signal", [[1.0, 2.0]], "features"),
        "text_dict": ("text", {"t": "x"}, "text"),
        "text_nested": ("text", [["a"]], "text"),
    }


VALUE_NAMES = ["image_bomb", "image_number", "image_dict", "image_nested_list", "image_bool", "audio_nan", "audio_inf",
               "audio_empty", "audio_number", "audio_dict", "audio_video_only", "video_2d_array", "video_100k_frames",
               "video_no_pixels", "video_audio_only", "video_number", "video_dict", "signal_object_npy", "signal_3d",
               "signal_width", "signal_nan_npy", "signal_empty_npy", "signal_text_csv", "signal_empty_csv",
               "signal_ragged_csv", "signal_nan_list", "signal_inf_list", "signal_ragged_list", "signal_strings",
               "signal_3d_list", "signal_dict", "signal_wrong_width_list", "text_dict", "text_nested"]


@pytest.fixture(scope="module")
def values_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("values")
    return d, value_cases(d)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", VALUE_NAMES)
def test_bad_values(model_dir, values_dir, name):
    d, cases = values_dir
    column, value, word = cases[name]
    code, _, err = predict_one(model_dir, d, {column: value, "text": "a red thing"} if column != "text" else
                               {column: value})
    one_line_error(code, err, "row 1", f"column '{column}'", word)


@pytest.mark.timeout(120)
def test_values_read_as_documented(model_dir, tmp_path):
    """Not errors: an hour of audio (cropped to max_seconds, decoding only that), invalid UTF-8 in a text file
    (replaced), whitespace-only and very long text, an empty cell (a missing input)."""
    sr = 8000
    with sf.SoundFile(tmp_path / "hour.wav", "w", sr, 1, subtype="PCM_16") as f:
        block = (0.1 * np.sin(np.arange(sr * 60) / 5)).astype(np.float32)
        for _ in range(60):
            f.write(block)
    (tmp_path / "bad_utf8.txt").write_bytes(b"a red \xff\xfe thing")
    rows = [{"audio": "hour.wav"}, {"text": "bad_utf8.txt"}, {"text": "   "}, {"text": "red " * 200_000},
            {"image": "", "text": "a blue thing"}]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    code, out, err = cli("predict", model_dir, tmp_path / "rows.jsonl")
    assert code == 0, err
    preds = [json.loads(line) for line in out.splitlines()]
    assert len(preds) == 5 and all(p["label"] in ("red", "blue") for p in preds)


# -- tables, targets, recipes --------------------------------------------------------------------------------------
TABLE_CASES = {
    "invalid_json_line": ('{"text": "a"}\n{"text": \n', "line 2"),
    "json_array_line": ('{"text": "a"}\n["text", "b"]\n', "line 2"),
    "json_number_line": ("3\n", "line 1"),
    "empty_file": ("", "the table has no rows"),
    "only_whitespace": ("\n\n  \n", "the table has no rows"),
    "bad_utf8": (b'{"text": "\xff\xfe"}\n', "UTF-8"),
    "nul_bytes": (b"\x00\x00\x00\x00", "rows.jsonl"),
    "only_unknown_columns": ('{"colour": "red", "shape": 1}\n', "none of the model's input columns"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(TABLE_CASES))
def test_bad_tables(model_dir, tmp_path, name):
    content, word = TABLE_CASES[name]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, err = cli("predict", model_dir, path)
    one_line_error(code, err, "rows.jsonl", word)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,content,word", [
    ("duplicate_columns", "text,text,label\na,b,red\n", "duplicate column 'text'"),
    ("unknown_suffix", None, "xlsx"),
    ("directory", None, "rows.csv"),
    ("missing", None, "not found"),
    ("binary_csv", b"\x00\x01\x02\x03\xff", "rows.csv"),
])
def test_bad_table_files(model_dir, tmp_path, name, content, word):
    path = tmp_path / ("rows.xlsx" if name == "unknown_suffix" else "rows.csv")
    if name == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    elif name == "unknown_suffix":
        path.write_text("x")
    code, _, err = cli("predict", model_dir, path)
    one_line_error(code, err, word)


TARGET_CASES = {
    "list_among_labels": ([["red"], "blue", "red", "blue"], "mixes lists"),
    "empty_target": (["red", None, "red", "blue"], "the target is empty"),
    "dict_target": ([{"c": 1}, "blue", "red", "blue"], "a class label is one value"),
    "nan_regression": ([0.5, float("nan"), 1.5, 2.5], "the target is empty"),
    "inf_regression": ([0.5, float("inf"), 1.5, 2.5], "finite"),
    "nested_label_list": ([["red", ["blue"]], ["blue"], ["red"], []], "label"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(TARGET_CASES))
def test_bad_targets(tmp_path, name):
    targets, word = TARGET_CASES[name]
    rows = [{"text": f"row {i} text", "label": t} for i, t in enumerate(targets * 3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    code, _, err = cli("fit", "--train", tmp_path / "train.jsonl", "--input", "text", "--target", "label",
                       "--epochs", "1", "--quiet", "--out", tmp_path / "m")
    one_line_error(code, err, "train.jsonl", "'label'", word)


# -- paths that leave the allowed roots ------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked_dir", "dotdot_missing"])
def test_paths_outside_the_allowed_root_are_refused(model_dir, media, tmp_path, how):
    root = tmp_path / "table"
    root.mkdir()
    outside = tmp_path / "secret.png"
    shutil.copy(media / "ok.png", outside)
    value = {"dotdot": "../secret.png", "absolute": str(outside), "symlink": "link.png",
             "symlinked_dir": "linkdir/secret.png", "dotdot_missing": "../../nothing.png"}[how]
    if how == "symlink":
        os.symlink(outside, root / "link.png")
    if how == "symlinked_dir":
        os.symlink(tmp_path, root / "linkdir")
    write_jsonl(root / "rows.jsonl", [{"image": value}])
    code, _, err = cli("predict", model_dir, root / "rows.jsonl", "--allow-root", root)
    one_line_error(code, err, "row 1", "column 'image'", "outside the allowed roots")
    if how != "dotdot_missing":  # without --allow-root the same cell is read
        code, out, err = cli("predict", model_dir, root / "rows.jsonl")
        assert code == 0, err
    shutil.copy(media / "ok.png", root / "inside.png")
    write_jsonl(root / "ok.jsonl", [{"image": "inside.png"}])
    code, _, err = cli("predict", model_dir, root / "ok.jsonl", "--allow-root", root)
    assert code == 0, err


def test_skipped_rows_are_counted(five_modality_dir, media, tmp_path):
    rows = [json.loads(line) for line in (five_modality_dir / "train.jsonl").read_text().splitlines()]
    for r in rows:
        for k in ("image", "audio", "video", "signal"):
            if r.get(k):
                r[k] = str(five_modality_dir / r[k])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"broken")
    rows += [{**rows[0], "image": str(bad)}, {**rows[1], "signal": [[float("nan")] * 3]}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = copy.deepcopy(FIVE_RECIPE)
    recipe["data"] = {"train": str(tmp_path / "train.jsonl"), "validation_fraction": 0.25, "on_bad_input": "skip"}
    model = pm.fit(recipe, out=tmp_path / "m")
    assert model.metrics["training"]["skipped_rows"] == 2


# -- recipes fuzzed ------------------------------------------------------------------------------------------------
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) |
                       st.text(max_size=8), lambda c: st.lists(c, max_size=3) |
                       st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)
FIELDS = st.sampled_from(["inputs", "target", "model", "training", "data", "model.fusion", "model.dim",
                          "training.epochs", "training.lr", "target.task", "target.column", "model.fusion.method",
                          "inputs.0.encoder", "inputs.0.modality", "model.preset", "data.on_bad_input", "zzz"])


@settings(max_examples=int(os.environ.get("POLYMODAL_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.dictionaries(FIELDS, JSONISH, max_size=4))
def test_fuzzed_recipes_fail_cleanly(overrides):
    """Any recipe is valid or a RecipeError naming a field: never another exception."""
    from polymodal.config import build_recipe

    base = {"inputs": [{"name": "text", "modality": "text"}], "target": {"column": "label"}}
    try:
        build_recipe(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()], {})
    except PolymodalError as e:
        assert str(e) and "\n" not in str(e).strip()


# -- loading runs no code ------------------------------------------------------------------------------------------
class Planted:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ.get("POLYMODAL_PLANTED", "/tmp/polymodal-planted")),))


def test_loading_never_opens_a_planted_pickle(model_dir, tmp_path, monkeypatch, five_modality_dir):
    import pickle

    import torch

    planted = tmp_path / "copy"
    shutil.copytree(model_dir, planted)
    marker = tmp_path / "ran"
    monkeypatch.setenv("POLYMODAL_PLANTED", str(marker))
    for name in ("model.pt", "pytorch_model.bin", "model.pkl", "text.pretrained.bin", "checkpoints/evil.ckpt"):
        (planted / name).parent.mkdir(exist_ok=True)
        (planted / name).write_bytes(pickle.dumps(Planted()))

    def refuse(*a, **k):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model = pm.load(planted)
    pred = model.predict({"text": "a red thing", "image": str(five_modality_dir / "img0.png")})
    assert pred["label"] in ("red", "blue") and not marker.exists()
