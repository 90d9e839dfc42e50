"""`polymodal components`: every registered component with its config schema; the README's tables of names agree
with the registries; field descriptions carry no measurements (those live in the README and docs)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.cli.components import KINDS, component_table
from polymodal.registry import REGISTRIES

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = {"modality": "Modalities", "encoder": "Encoders", "fusion": "Fusions", "task": "Tasks"}


def test_components_json_lists_every_registered_component_with_its_fields():
    result = CliRunner().invoke(app, ["components", "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.output)
    assert set(table) == set(KINDS)
    for kind in KINDS:
        assert sorted(table[kind]) == REGISTRIES[kind].names()
    late = table["fusion"]["late"]["config"]["properties"]
    assert late["hidden"]["default"] == 256 and late["hidden"]["description"]
    assert table["modality"]["image"]["facts"]["default_encoder"] == "image_cnn"
    assert ".png" in table["modality"]["image"]["facts"]["suffixes"]
    assert "blur" in table["modality"]["image"]["facts"]["corruptions"]
    assert "robustness" in table["task"]["classification"]["facts"]["evaluate_options"]


def test_components_table_prints_every_name():
    result = CliRunner().invoke(app, ["components"])
    assert result.exit_code == 0, result.output
    for kind in KINDS:
        for name in REGISTRIES[kind].names():
            assert name in result.output


def readme_names(section: str) -> set[str]:
    """The names in the first column of the table under `### {section}` in the README's Components section."""
    text = README.read_text()
    components = text.split("\n## Components", 1)[1].split("\n## ", 1)[0]
    block = components.split(f"\n### {section}\n", 1)[1].split("\n### ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|", block, re.M)}


def test_readme_tables_name_exactly_the_registered_components():
    for kind, section in SECTIONS.items():
        assert readme_names(section) == set(REGISTRIES[kind].names()), section


MEASUREMENT = re.compile(r"\d[\d,.]*\s?(ms|s|MB|GB|GiB|%|x faster|page faults)\b")


def test_field_descriptions_carry_no_measurements():
    def descriptions(schema):
        if isinstance(schema, dict):
            for k, v in schema.items():
                if k == "description" and isinstance(v, str):
                    yield v
                else:
                    yield from descriptions(v)
        elif isinstance(schema, list):
            for v in schema:
                yield from descriptions(v)

    from polymodal.config import Recipe

    schemas = [Recipe.model_json_schema()] + [e["config"] for k in component_table().values() for e in k.values()]
    found = [d for s in schemas for d in descriptions(s) if MEASUREMENT.search(d)]
    assert not found, found
