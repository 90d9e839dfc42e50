"""easy-VQA captions: an image's shape and colour read from its questions."""
from __future__ import annotations

from polymodal.demo import attributes_from_questions


def test_open_answers_name_the_attributes():
    qs = [("what shape is in the image?", "circle"), ("what color is the circle?", "red")]
    assert attributes_from_questions(qs) == {"shape": "circle", "colour": "red"}


def test_yes_no_questions_confirm_or_rule_out():
    assert attributes_from_questions([("is there a blue shape?", "yes")]) == {"colour": "blue"}
    assert attributes_from_questions([("is there not a triangle?", "no")]) == {"shape": "triangle"}
    ruled_out = [("is there a circle?", "no"), ("does the image contain a triangle?", "no")]
    assert attributes_from_questions(ruled_out) == {"shape": "rectangle"}  # the only shape left
    assert attributes_from_questions([("is there a circle?", "no")]) == {}
