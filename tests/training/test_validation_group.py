"""`data.validation_group`: validation carved from train holds out whole groups (events, subjects), so it measures
what a new group scores; an empty group cell is an error naming the row."""
from __future__ import annotations

import pytest

from polymodal.config import build_recipe
from polymodal.data import as_table
from polymodal.errors import DataError
from polymodal.training.prepare import prepare


def rows(n: int = 60) -> list[dict]:
    return [{"txt": f"word{i % 7} thing", "label": "ab"[i % 2], "event": f"e{i % 6}"} for i in range(n)]


def recipe(group: str | None) -> dict:
    return {"inputs": [{"name": "txt", "modality": "text", "encoder": {"type": "text_bow"}}],
            "target": {"column": "label"}, "data": {"validation_group": group, "validation_fraction": 0.3},
            "training": {"progress": False}}


def test_whole_groups_go_to_validation():
    data = rows()
    prep = prepare(build_recipe(recipe("event")), {"train": as_table(data)})
    train_events = {data[r]["event"] for r in prep.train.rows}
    val_events = {data[r]["event"] for r in prep.validation.rows}
    assert val_events and not train_events & val_events
    assert len(prep.train) + len(prep.validation) == len(data)
    ungrouped = prepare(build_recipe(recipe(None)), {"train": as_table(data)})
    assert {data[r]["event"] for r in ungrouped.validation.rows} & {data[r]["event"] for r in ungrouped.train.rows}


def test_an_empty_group_cell_names_the_row():
    data = rows()
    data[4]["event"] = None
    with pytest.raises(DataError, match=r"row 5: column 'event' \(data.validation_group\) is empty"):
        prepare(build_recipe(recipe("event")), {"train": as_table(data)})
