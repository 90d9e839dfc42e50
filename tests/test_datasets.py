"""The support-triage generator: seeded, vague tickets carry no route words, the screenshot shows the route's
dialog where the ticket is vague."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from polymodal.datasets.triage import CLOSERS, DIALOGS, OPENERS, ROUTES, SAYS, VAGUE, make_triage


def test_triage_is_seeded_and_the_screenshot_decides_vague_rows(tmp_path):
    a, b = make_triage(tmp_path / "a", 40, 5, 5, seed=3), make_triage(tmp_path / "b", 40, 5, 5, seed=3)
    assert (a / "train.jsonl").read_text() == (b / "train.jsonl").read_text()
    assert (a / "shots" / "train_00007.png").read_bytes() == (b / "shots" / "train_00007.png").read_bytes()
    rows = [json.loads(line) for line in (a / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {r["route"] for r in rows} <= set(ROUTES)
    vague = [r for r in rows if r["vague"]]
    assert 8 <= len(vague) <= 24  # 40% of 40, seeded
    per_route = {k: {w for p in phrases for w in p.split()} for k, phrases in SAYS.items()}
    words = {w for k, ws in per_route.items() for w in ws
             if not any(w in other for j, other in per_route.items() if j != k)}  # words of one route only
    words -= {w.strip(",.!?:") for p in VAGUE + OPENERS + CLOSERS for w in p.split()}
    for r in vague:
        assert not words & set(r["text"].split()), r["text"]
        colour = np.asarray(DIALOGS[r["route"]][3])
        img = np.asarray(Image.open(a / r["screenshot"]).convert("RGB")).astype(int)
        near = (np.abs(img - colour).sum(-1) < 40).sum()
        assert near > 300, (r, near)  # the dialog's title bar and icon in the route's colour
    other = make_triage(tmp_path / "c", 40, 5, 5, seed=4)
    assert (other / "train.jsonl").read_text() != (a / "train.jsonl").read_text()
