"""`data.validation_group`: validation carved from train holds out whole groups (events, subjects), so it measures
what a new group scores; an empty group cell is an error naming the row."""
from __future__ import annotations

import pytest

from polymodal.config import build_recipe
from polymodal.data import as_table
from polymodal.errors import DataError
from polymodal.training.prepare import prepare, split_rows


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


def test_a_group_larger_than_the_validation_share_stays_in_training():
    # one event holds 80 of 100 rows: drawn first or not, it is passed over, and about 10 rows of the small events
    # are held out (before, a seed that drew it first sent 80% of the rows to validation)
    keys = [0] * 80 + [1 + i // 5 for i in range(20)]
    for seed in range(20):
        train, held = split_rows(keys, 0.1, seed)
        assert 0 not in {keys[r] for r in held}
        assert len(held) in (5, 10, 15) and len(train) + len(held) == 100


def test_when_every_group_is_too_large_one_that_leaves_half_to_train_is_held_out():
    four = [s for s in range(4) for _ in range(25)]  # four subjects: one of them, as the seed draws
    assert {four[r] for r in split_rows(four, 0.1, 0)[1]} != {four[r] for r in split_rows(four, 0.1, 3)[1]}
    for seed in range(10):
        assert len(split_rows(four, 0.1, seed)[1]) == 25
    two = [0] * 70 + [1] * 30  # only the smaller leaves half the rows to train
    assert all(split_rows(two, 0.1, seed)[1] == list(range(70, 100)) for seed in range(10))


def test_rows_without_groups_split_as_before():
    # pinned: the seeded draw of single rows is unchanged by the rule for large groups
    train, held = split_rows(list(range(20)), 0.2, 0)
    assert held == [10, 14, 16, 18] and len(train) == 16  # the value before this rule (checked)
