"""Tables: formats, missing cells, relative paths, clear errors; batches share distinct values."""
from __future__ import annotations

import pandas as pd
import pytest

from polymodal.data import GroupedBatchSampler, InputSpec, collate_input, read_inputs, read_table
from polymodal.errors import DataError
from polymodal.modalities import MODALITIES
from polymodal.tasks import TASKS
from tests.conftest import draw_shape, write_jsonl


def test_jsonl_csv_parquet_read_the_same_with_missing_cells(tmp_path):
    rows = [{"t": "a", "y": 1}, {"t": "", "y": 2}, {"y": 3}, {"t": None, "y": 4}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    text = MODALITIES.get("text")(MODALITIES.get("text").Config())
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        table = read_table(tmp_path / name)
        data = read_inputs(table, [InputSpec("t", "t", text)], None, None, show_progress=False)
        assert data.ids["t"] == [0, -1, -1, -1], name


def test_bad_json_line_names_file_and_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match=r"d.jsonl, line 2: invalid JSON"):
        read_table(tmp_path / "d.jsonl")


def test_unreadable_cell_names_file_row_and_column_or_is_skipped(tmp_path):
    draw_shape(tmp_path / "ok.png", "circle", "red")
    write_jsonl(tmp_path / "d.jsonl", [{"im": "ok.png", "y": "a"}, {"im": "missing.png", "y": "b"},
                                       {"im": "ok.png", "y": "b"}])
    image = MODALITIES.get("image")(MODALITIES.get("image").Config(size=8))
    task = TASKS.get("classification")(TASKS.get("classification").Config())
    spec = [InputSpec("im", "im", image)]
    with pytest.raises(DataError, match=r"d.jsonl, row 2, column 'im': image file not found"):
        read_inputs(read_table(tmp_path / "d.jsonl"), spec, task, "y", show_progress=False, encode_targets=False)
    data = read_inputs(read_table(tmp_path / "d.jsonl"), spec, task, "y", on_bad_input="skip", show_progress=False,
                       encode_targets=False)
    assert data.rows == [0, 2] and len(data.skipped) == 1
    assert data.ids["im"] == [0, 0] and len(data.items["im"]) == 1  # decoded once, shared by both rows


def test_collate_encodes_each_distinct_value_once():
    text = MODALITIES.get("text")(MODALITIES.get("text").Config())
    text.fit(["a b", "c"])
    mb = collate_input(text, [1, -1, 0, 1], ["a b", "c"])
    assert mb.data.shape[0] == 2 and mb.index.tolist() == [1, 0, 0, 1]  # distinct values in id order
    assert mb.present.tolist() == [True, False, True, True]
    alone = [text.collate([t])[0][0] for t in ("c", "a b")]  # what rows 0 and 2 hold
    for row, value in ((0, alone[0]), (2, alone[1])):
        assert mb.data[mb.index[row], :len(value)].tolist() == value.tolist()
    assert collate_input(text, [-1, -1], ["a b"]).index.tolist() == [0, 0]  # no value: the placeholder


def test_grouped_sampler_keeps_groups_and_a_constant_batch_count():
    keys = [i // 10 for i in range(200)] + [-1] * 7
    sampler = GroupedBatchSampler(keys, 40, shuffle=True, seed=0)
    counts = set()
    for _ in range(5):
        batches = list(sampler)
        counts.add(len(batches))
        assert sorted(r for b in batches for r in b) == list(range(207))
        for b in batches:
            groups = {keys[r] for r in b if keys[r] >= 0}
            for g in groups:
                assert sum(1 for r in b if keys[r] == g) == 10  # whole groups
    assert counts == {len(sampler)}
