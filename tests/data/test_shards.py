"""Shard directories: a table written as WebDataset tars with an offset index, read back row by row and value by value;
batches, training, predictions and indexes from shards equal those from the table read into memory."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import webdataset as wds

import polymodal as pm
from polymodal.data import Collator, InputSpec, read_inputs, read_table
from polymodal.data.shards import ShardTable, write_shards
from polymodal.errors import DataError
from polymodal.modalities import MODALITIES
from polymodal.tasks import TASKS
from tests.conftest import caption_rows, draw_shape, write_jsonl
from tests.test_cli import run


@pytest.fixture()
def shapes(tmp_path):
    """Seven rows: images (row 4 reuses row 1's picture), captions (row 2's missing) and labels."""
    rows = caption_rows(tmp_path, 7, seed=3)
    rows[4]["image"] = rows[1]["image"]
    rows[2]["caption"] = None
    rows[5]["score"] = 0.5
    return tmp_path, rows


def test_shards_hold_each_row_and_the_bytes_of_its_files(shapes):
    d, rows = shapes
    write_jsonl(d / "t.jsonl", rows)
    meta = write_shards(d / "t.jsonl", d / "shards", rows_per_shard=3, show_progress=False)
    assert (meta["rows"], meta["shards"], meta["file_columns"]) == (7, 3, ["image"])
    assert sorted(p.name for p in (d / "shards").iterdir()) == [
        "index.npz", "shard-00000.tar", "shard-00001.tar", "shard-00002.tar", "shards.json"]
    table = read_table(d / "shards")
    assert isinstance(table, ShardTable) and len(table) == 7
    assert table.columns() == {"id", "image", "caption", "shape", "score"}
    for i, row in enumerate(rows):  # each row as written, absent keys absent, missing cells None
        assert table.rows[i] == {k: row.get(k) for k in table.rows[i]} and table.rows[i]["id"] == row["id"]
    assert table.rows[5]["score"] == 0.5 and "score" not in table.rows[0]
    assert table.value(3, "image") == (d / rows[3]["image"]).read_bytes()
    assert table.value(0, "caption") == rows[0]["caption"]
    assert table.value_ids("image") == [0, 1, 2, 3, 1, 5, 6]  # row 4 shares row 1's decoded picture
    captions = [r["caption"] for r in rows]  # equal texts share a value, as in memory
    assert table.value_ids("caption") == [-1 if c is None else captions.index(c) for c in captions]
    assert table.value_ids("score") == [-1] * 5 + [5, -1] and table.value_ids("nothing") == [-1] * 7
    assert table.column("shape") == [r["shape"] for r in rows]

    samples = list(wds.WebDataset(str(d / "shards" / "shard-{00000..00002}.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(7)]  # any WebDataset reader reads them
    assert samples[3]["x1.png"] == table.value(3, "image")
    assert json.loads(samples[6]["json"])["cells"]["caption"] == rows[6]["caption"]


def test_csv_parquet_and_jsonl_shard_alike(shapes):
    d, rows = shapes
    write_jsonl(d / "t.jsonl", rows)
    frame = pd.DataFrame(rows)
    frame.to_csv(d / "t.csv", index=False)
    frame.to_parquet(d / "t.parquet")
    heads = {}
    for name in ("t.jsonl", "t.csv", "t.parquet"):
        write_shards(d / name, d / f"s-{name}", show_progress=False)
        table = ShardTable(d / f"s-{name}")
        heads[name] = [{k: v for k, v in table.rows[i].items() if v is not None} for i in range(len(table))]
        assert table.value(1, "image") == (d / rows[1]["image"]).read_bytes(), name
    assert heads["t.csv"] == heads["t.parquet"] == heads["t.jsonl"]


def _inputs():
    text, image = MODALITIES.get("text"), MODALITIES.get("image")
    specs = [InputSpec("caption", "caption", text(text.Config())),
             InputSpec("image", "image", image(image.Config(size=16)))]
    specs[0].modality.fit(["a red circle", "a blue square", "a green triangle"])
    return specs


def test_batches_from_shards_equal_batches_from_memory(shapes):
    d, rows = shapes
    write_jsonl(d / "t.jsonl", rows)
    write_shards(d / "t.jsonl", d / "shards", rows_per_shard=2, show_progress=False)
    task = TASKS.get("classification")(TASKS.get("classification").Config())
    task.fit([r["shape"] for r in rows])
    specs = _inputs()
    memory = read_inputs(read_table(d / "t.jsonl"), specs, task, "shape", show_progress=False)
    shards = read_inputs(read_table(d / "shards"), specs, task, "shape", show_progress=False)
    modalities = {s.name: s.modality for s in specs}
    for batch_rows in ([0, 1, 2], [6, 4, 1, 3], [5]):
        a, ya = Collator(memory, modalities, task)(batch_rows)
        b, yb = Collator(shards, modalities, task)(batch_rows)
        assert torch.equal(ya, yb)
        for name in a:  # the same value and presence for every row (distinct values may be in another order)
            assert torch.equal(a[name].present, b[name].present), name
            ok = a[name].present
            assert torch.equal(a[name].data[a[name].index][ok], b[name].data[b[name].index][ok]), name
    batch, _ = Collator(shards, modalities, task)([6, 4, 1, 3])
    assert len(batch["image"].data) == 3  # rows 4 and 1 share a picture: decoded and encoded once


def test_an_unreadable_value_stops_with_its_row_or_counts_as_missing(shapes):
    d, rows = shapes
    (d / "broken.png").write_bytes(b"not a picture")
    rows[3]["image"] = "broken.png"
    write_jsonl(d / "t.jsonl", rows)
    write_shards(d / "t.jsonl", d / "shards", show_progress=False)
    specs = _inputs()
    modalities = {s.name: s.modality for s in specs}
    data = read_inputs(read_table(d / "shards"), specs, None, None, show_progress=False)
    with pytest.raises(DataError, match=r"shards, row 4, column 'image': cannot read image bytes"):
        Collator(data, modalities, None)([2, 3])
    data = read_inputs(read_table(d / "shards"), specs, None, None, "skip", show_progress=False)
    batch, _ = Collator(data, modalities, None)([2, 3, 4])
    assert batch["image"].present.tolist() == [True, False, True]
    assert batch["caption"].present.tolist() == [False, True, True]


def test_shard_command_writes_whole_directories_and_names_bad_rows(shapes):
    d, rows = shapes
    write_jsonl(d / "t.jsonl", rows)
    r = run("shard", str(d / "t.jsonl"), "--out", str(d / "s"), "--rows-per-shard", "4")
    assert r.returncode == 0 and "7 rows in 2 shards" in r.stderr, r.stderr
    (d / "bad.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows[:2]) + "{oops\n")
    r = run("shard", str(d / "bad.jsonl"), "--out", str(d / "s"))
    assert r.returncode == 2 and "bad.jsonl, line 3: invalid JSON" in r.stderr, r.stderr
    assert len(ShardTable(d / "s")) == 7 and not (d / "s.partial").exists()  # the old directory is untouched
    (d / "other").mkdir()
    r = run("shard", str(d / "t.jsonl"), "--out", str(d / "other"))
    assert r.returncode == 2 and "is not a shard directory" in r.stderr
    r = run("shard", str(d / "missing.jsonl"), "--out", str(d / "s2"))
    assert r.returncode == 2 and "table not found" in r.stderr
    assert not (d / "s2").exists()


RECIPE = {
    "inputs": [{"name": "caption", "modality": "text", "encoder": {"type": "text_bow"}},
               {"name": "image", "modality": "image", "options": {"size": 16},
                "encoder": {"type": "image_cnn", "channels": [8]}}],
    "target": {"column": "shape"},
    "model": {"dim": 16},
    "training": {"epochs": 3, "batch_size": 16, "lr": 0.01, "progress": False, "seed": 0, "threads": 1},
}


def test_fit_and_predict_from_shards_equal_fit_and_predict_from_the_table(tmp_path):
    rows = caption_rows(tmp_path, 96, seed=5)
    for r in rows[::7]:
        r["caption"] = None
    write_jsonl(tmp_path / "train.jsonl", rows[:80])
    write_jsonl(tmp_path / "test.jsonl", rows[80:])
    for name in ("train", "test"):
        write_shards(tmp_path / f"{name}.jsonl", tmp_path / f"{name}-shards", rows_per_shard=32, show_progress=False)
    memory = pm.fit(RECIPE, train=str(tmp_path / "train.jsonl"), test=str(tmp_path / "test.jsonl"),
                    out=tmp_path / "memory")
    shards = pm.fit(RECIPE, train=str(tmp_path / "train-shards"), test=str(tmp_path / "test-shards"),
                    out=tmp_path / "shards")  # a loader worker decodes the values
    a, b = memory.metrics["test"], shards.metrics["test"]
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-4) and a["accuracy"] == b["accuracy"]
    assert shards.metrics["training"]["train_rows"] == 72
    pa, pb = memory.predict(str(tmp_path / "test.jsonl")), shards.predict(str(tmp_path / "test-shards"))
    assert [p["label"] for p in pa] == [p["label"] for p in pb]
    assert [p["id"] for p in pb] == [r["id"] for r in rows[80:]]
    for x, y in zip(pa, pb):
        assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-4)


@pytest.mark.slow  # 27 s: make test-slow (keeps make test under 10 minutes on 2 cores)
def test_index_and_embed_from_shards_equal_those_from_the_table(caption_model, caption_dir, tmp_path):
    from polymodal.retrieval import VectorIndex

    write_shards(caption_dir / "test.jsonl", tmp_path / "shards", rows_per_shard=25, show_progress=False)
    model = str(caption_model.directory)
    for data, out in ((str(caption_dir / "test.jsonl"), "a"), (str(tmp_path / "shards"), "b")):
        r = run("index", model, "--data", data, "--input", "image", "--out", str(tmp_path / out), "--kind", "exact")
        assert r.returncode == 0, r.stderr
        r = run("embed", model, "--data", data, "--input", "image", "--out", str(tmp_path / f"{out}.npy"))
        assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), atol=1e-6)
    a, b = VectorIndex.open(tmp_path / "a"), VectorIndex.open(tmp_path / "b")
    assert [x["row"] for x in a.items] == [x["row"] for x in b.items] == list(range(60))
    assert [x["id"] for x in b.items] == [f"r{i}" for i in range(60)]
    assert (tmp_path / "b" / "items.offsets.npy").is_file()
    query = np.load(tmp_path / "a.npy")[:3]
    assert np.array_equal(a.search(query, 5)[1], b.search(query, 5)[1])


def test_a_picture_shared_by_rows_keeps_grouped_batches(tmp_path):
    """VQA-style rows (several questions per picture) group by the picture from shards as from memory."""
    from polymodal.data import choose_group_input

    rows = []
    for i in range(40):
        path = draw_shape(tmp_path / f"p{i}.png", "circle", "red", seed=i)
        rows += [{"image": path.name, "caption": f"question {q}", "shape": "circle"} for q in range(3)]
    write_jsonl(tmp_path / "t.jsonl", rows)
    write_shards(tmp_path / "t.jsonl", tmp_path / "s", rows_per_shard=50, show_progress=False)
    specs = _inputs()
    for table in (read_table(tmp_path / "t.jsonl"), read_table(tmp_path / "s")):
        data = read_inputs(table, specs, None, None, show_progress=False)
        assert choose_group_input(data, "auto", {s.name: s.modality for s in specs}, 32) == "image"
        assert len(set(data.ids["image"])) == 40


def test_image_size_shards_hold_decoded_pixels_that_read_as_the_pictures_do(shapes):
    """`--image-size`: pictures stored as RGB pixels (shorter side resized at shard time); at the stored size the
    image modality reads them to the very tensor it makes from the original file; at another size they are resized
    again (twice resized: close, not equal)."""
    from polymodal.modalities.image import NPY_MAGIC

    d, rows = shapes
    write_jsonl(d / "t.jsonl", rows)
    meta = write_shards(d / "t.jsonl", d / "px", image_size=16, show_progress=False)
    assert meta["image_size"] == 16
    table = read_table(d / "px")
    image = MODALITIES.get("image")
    same, smaller = image(image.Config(size=16)), image(image.Config(size=8))
    for i in (0, 3):
        stored = table.value(i, "image")
        assert stored[:6] == NPY_MAGIC
        assert torch.equal(same.decode(stored, d), same.decode(rows[i]["image"], d))
        a, b = smaller.decode(stored, d), smaller.decode(rows[i]["image"], d)
        assert a.shape == b.shape == (3, 8, 8) and float((a.float() - b.float()).abs().mean()) < 8
