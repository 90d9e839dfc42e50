"""Classification's report pins exact values: per-class precision, recall and F1 (moderation is judged on its
positive class), beside accuracy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymodal.tasks.classification import Classification, ClassificationConfig


def test_report_gives_per_class_precision_recall_and_f1():
    task = Classification(ClassificationConfig())
    task.fit(["no", "yes", "maybe"])  # classes sorted: maybe, no, yes
    pred = torch.tensor([1, 1, 2, 2, 2, 0])
    target = torch.tensor([1, 2, 2, 2, 1, 1])
    out = torch.nn.functional.one_hot(pred, 3).float() * 5
    report = task.report(out, target)
    assert report["accuracy"] == 0.5
    assert report["per_class_precision"] == {"maybe": 0.0, "no": 0.5, "yes": round(2 / 3, 6)}
    assert report["per_class_recall"] == {"maybe": 0.0, "no": round(1 / 3, 6), "yes": round(2 / 3, 6)}
    assert report["per_class_f1"] == {"maybe": 0.0, "no": 0.4, "yes": round(2 / 3, 6)}
    # true class -> predicted class -> rows; a class no row has is not a row of it ("maybe")
    assert report["confusion"] == {"no": {"maybe": 1, "no": 1, "yes": 1}, "yes": {"maybe": 0, "no": 1, "yes": 2}}


def test_balanced_class_weights_follow_the_training_counts():
    task = Classification(ClassificationConfig(class_weight="balanced"))
    task.fit(["a"] * 6 + ["b"] * 2)
    assert task.weights == [8 / 12, 8 / 4]
    out, target = torch.tensor([[0.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 1])
    l0, l1 = math.log(1 + math.exp(1)), math.log(1 + math.exp(-3))  # each row's cross-entropy
    w0, w1 = task.weights
    assert float(task.loss(out, target)) == pytest.approx((w0 * l0 + w1 * l1) / (w0 + w1), rel=1e-6)
    restored = Classification(ClassificationConfig(class_weight="balanced"))
    restored.load_state(task.state())
    assert restored.weights == task.weights


def test_the_threshold_chosen_maximises_the_metric_and_ties_go_to_the_one_nearest_half():
    from polymodal.tasks.classification import choose_threshold

    prob = np.array([0.1, 0.3, 0.35, 0.6, 0.8])
    positive = np.array([False, True, False, True, True])
    # above 0.2: 3 true positives, 1 false positive -> F1 6/7; above 0.5: 2 tp, 1 fn -> 0.8; above 0.05: 0.75
    assert choose_threshold(prob, positive, "f1") == (pytest.approx(0.2), pytest.approx(6 / 7))
    # accuracy is 4/5 above 0.2 and above 0.475 or 0.5: the tie goes to 0.5
    assert choose_threshold(prob, positive, "accuracy") == (0.5, pytest.approx(0.8))
    # balanced accuracy above 0.2: (3/3 + 1/2) / 2 = 0.75; above 0.5: (2/3 + 1) / 2 = 5/6
    assert choose_threshold(prob, positive, "balanced_accuracy") == (0.5, pytest.approx(5 / 6))


def test_a_threshold_decides_the_positive_class_and_survives_the_state():
    task = Classification(ClassificationConfig(threshold="validation"))
    task.fit(["ok"] * 6 + ["offensive"] * 2)
    assert task.positive == "offensive" and task.cutoff == 0.5  # the rarer class; 0.5 until validation chooses
    # rows' probability of "offensive" (class 0): 0.2, 0.4, 0.7, 0.9
    p = torch.tensor([0.2, 0.4, 0.7, 0.9])
    out = torch.stack([p.log(), (1 - p).log()], 1)
    target = torch.tensor([1, 0, 0, 0])
    chosen = task.calibrate(out, target)
    assert chosen["threshold"] == pytest.approx(0.3) and chosen["validation_score"] == 1.0
    assert chosen["validation_score_at_0.5"] == pytest.approx(0.8)  # 2 of 3 found, no false alarm: F1 0.8
    assert [d["label"] for d in task.decode(out)] == ["ok", "offensive", "offensive", "offensive"]
    assert task.decode(out)[1]["probabilities"]["offensive"] == pytest.approx(0.4)  # probabilities stay as they are
    report = task.report(out, target)
    assert report["accuracy"] == 1.0 and report["per_class_f1"] == {"offensive": 1.0, "ok": 1.0}
    assert report["threshold"] == {"positive_class": "offensive", "threshold": pytest.approx(0.3)}
    restored = Classification(ClassificationConfig())
    restored.load_state(task.state())
    assert torch.equal(restored.decided(out).argmax(-1), task.decided(out).argmax(-1))
    fixed = Classification(ClassificationConfig(threshold=0.7, positive_class="ok"))
    fixed.fit(["ok"] * 6 + ["offensive"] * 2)  # "ok" only where its probability (0.8, 0.6, 0.3, 0.1) is above 0.7
    assert [d["label"] for d in fixed.decode(out)] == ["ok", "offensive", "offensive", "offensive"]


def test_threshold_errors_name_the_field():
    with pytest.raises(ValueError, match="for two classes"):
        Classification(ClassificationConfig(threshold="validation")).fit(["a", "b", "c"])
    with pytest.raises(ValueError, match="positive_class 'c' is not a class"):
        Classification(ClassificationConfig(threshold=0.3, positive_class="c")).fit(["a", "b"])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        ClassificationConfig(threshold=1.5)


def test_fit_chooses_the_threshold_on_validation_and_the_reloaded_model_keeps_it(tmp_path):
    import polymodal as pm

    rng = np.random.default_rng(0)
    words = ["calm", "fine", "nice", "rude", "vile", "mean"]
    rows = []
    for i in range(240):  # a quarter offensive; one word in three of theirs is a rude one
        bad = i % 4 == 0
        pool = words[3:] if bad and rng.random() < 0.5 else words[:3]
        rows.append({"txt": " ".join(rng.choice(pool, 3)) + f" n{i % 7}", "y": "offensive" if bad else "ok"})
    recipe = {"inputs": [{"name": "txt", "modality": "text", "encoder": {"type": "text_bow"}}],
              "target": {"column": "y", "options": {"threshold": "validation"}},
              "data": {"validation_fraction": 0.25},
              "training": {"epochs": 4, "batch_size": 16, "progress": False}}
    model = pm.fit(recipe, train=rows[:200], test=rows[200:], out=tmp_path / "m")
    chosen = model.metrics["training"]["calibrated"]
    assert chosen["positive_class"] == "offensive" and 0 < chosen["threshold"] < 1
    assert chosen["validation_score"] >= chosen["validation_score_at_0.5"]
    assert model.metrics["test"]["threshold"]["threshold"] == chosen["threshold"]
    assert "chosen on the validation rows: threshold" in (tmp_path / "m" / "train.log").read_text()
    reloaded = pm.load(tmp_path / "m")
    for row in rows[200:220]:
        a, b = model.predict({"txt": row["txt"]}), reloaded.predict({"txt": row["txt"]})
        assert a["label"] == b["label"]
        assert (a["label"] == "offensive") == (a["probabilities"]["offensive"] > chosen["threshold"])


def test_consensus_gives_rows_sharing_a_value_their_mean_probabilities():
    from polymodal.tasks.classification import Classification

    task = Classification(Classification.Config(consensus_by="image"))
    out = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, math.log(4.0)], [1.0, 2.0]])
    # rows 0 and 1 share a value: (1/2, 1/2) and (3/4, 1/4) -> (5/8, 3/8); row 2 alone; row 3 has none
    got = task.consensus(out, [7, 7, 3, -1]).exp()
    assert got[0].tolist() == pytest.approx([0.625, 0.375]) and got[1].tolist() == pytest.approx([0.625, 0.375])
    assert got[2].tolist() == pytest.approx([0.2, 0.8])
    assert got[3].tolist() == pytest.approx(out[3].softmax(-1).tolist())


def test_consensus_by_an_input_shares_predictions_across_its_rows(tmp_path):
    import polymodal as pm
    from polymodal.errors import RecipeError

    rng = np.random.default_rng(0)
    rows = []
    for i in range(160):
        photo = f"photo{i % 20}"  # 20 photos, 8 rows each; the label belongs to the photo
        words = " ".join(rng.choice(["look", "this", "wow", "see", "now"], 3))
        label = "fake" if i % 20 < 10 else "real"
        rows.append({"photo": photo, "txt": words + (" hoax" if label == "fake" and rng.random() < 0.6 else ""),
                     "y": label})
    rec = {"inputs": [{"name": "txt", "modality": "text", "encoder": {"type": "text_bow"}},
                      {"name": "photo", "modality": "text", "encoder": {"type": "text_bow"}}],
           "target": {"column": "y", "options": {"consensus_by": "photo"}},
           "training": {"epochs": 2, "batch_size": 16, "progress": False}}
    model = pm.fit(rec, train=rows[:120], out=tmp_path / "m")
    test = [dict(r) for r in rows[120:]]
    test[0]["photo"] = None  # no photo: the row keeps its own prediction
    preds = model.predict(test)
    by_photo: dict = {}
    for r, p in zip(test, preds):
        if r["photo"] is not None:
            by_photo.setdefault(r["photo"], set()).add(round(p["probabilities"]["fake"], 6))
    assert by_photo and all(len(v) == 1 for v in by_photo.values())
    alone = pm.load(tmp_path / "m")
    alone.parts.task.config.consensus_by = None
    own = alone.predict(test)
    assert preds[0] == own[0]  # the row without a photo
    for photo in by_photo:
        members = [p["probabilities"]["fake"] for r, p in zip(test, own) if r["photo"] == photo]
        assert next(iter(by_photo[photo])) == pytest.approx(sum(members) / len(members), abs=1e-5)
    rec["target"]["options"]["consensus_by"] = "picture"
    with pytest.raises(RecipeError, match="consensus_by`: 'picture' is not an input"):
        pm.fit(rec, train=rows[:120], out=tmp_path / "bad")
