"""From a recipe and its tables to fitted inputs, task, read data and network: everything training needs."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..config import PRESETS, Recipe
from ..data import InputSpec, ReadTable, Table, check_columns, choose_group_input, is_missing, read_inputs
from ..data.shards import ShardTable, ShardValues, sample_positions
from ..encoders import ENCODERS
from ..encoders.transfer import load_source_modality, resolve_transfer
from ..errors import DataError, RecipeError, where
from ..fusion import FUSIONS
from ..modalities import MODALITIES, infer_modality
from ..modalities.augment import ImageAugmentConfig
from ..modalities.base import Modality
from ..modalities.image import looks_like_photos
from ..modalities.text import looks_like_language
from ..model import Parts, build_net, make_modality, make_task, validate_components
from ..tasks import TASKS, infer_task

FIT_SAMPLE = 20_000  # values a modality learns its state from when a shard table's values are read on demand


@dataclass
class Prepared:
    parts: Parts
    train: ReadTable
    validation: ReadTable
    test: ReadTable | None
    group_input: str | None
    everything: ReadTable | None = None  # training and validation rows together, when validation is carved from train


def resolve_recipe(recipe: Recipe, train: Table) -> Recipe:
    """Fill what the data decides: each input's modality, the task, and the modality options its encoder needs."""
    data = recipe.model_dump()
    check_columns(train, [InputSpec(i.name, i.source, None) for i in recipe.inputs], recipe.target.column)
    for cfg in data["inputs"]:
        column = cfg["column"] or cfg["name"]
        if cfg["encoder"].get("type") == "transfer":
            if "path" not in cfg["encoder"]:
                raise RecipeError(f"field `inputs.{cfg['name']}.encoder.path`: a transfer encoder needs the model "
                                  "directory to take it from")
            resolve_transfer(cfg)  # modality, options and architecture come from the source model
        if not cfg["modality"]:
            rows = train.rows[:2000] if isinstance(train, ShardTable) else train.rows  # a sample: each row is a read
            kind = infer_modality([r.get(column) for r in rows if not _missing(r.get(column))])
            if kind is None:
                raise DataError(f"{train.source}: column '{column}' has no values to infer its modality from; set "
                                f"`modality` for input '{cfg['name']}'")
            cfg["modality"] = kind
        mcls = MODALITIES.get(cfg["modality"], f"inputs.{cfg['name']}.modality")
        if data["target"]["task"]:
            TASKS.get(data["target"]["task"], "target.task").resolve_input(
                cfg["modality"], cfg["options"], cfg["encoder"], data["target"]["options"])
        if not cfg["encoder"].get("type"):  # the preset's encoder for this modality, where it has one
            preset = data["model"]["preset"]
            chosen = PRESETS[preset].get(cfg["modality"], {}) if preset != "auto" else \
                auto_encoder(cfg["modality"], train, column)
            cfg["encoder"] = {**chosen, **cfg["encoder"]}
        ecls = ENCODERS.get(cfg["encoder"].get("type") or mcls.default_encoder, f"inputs.{cfg['name']}.encoder.type")
        try:  # what the encoder needs of its input (a pretrained model's tokenizer, image size, sample rate)
            cfg["options"] = ecls.modality_options(cfg["modality"], cfg["options"], cfg["encoder"])
        except KeyError as e:
            raise RecipeError(f"field `inputs.{cfg['name']}.encoder.{e.args[0]}`: the {ecls.registry_name} "
                              "encoder needs it") from None
    if not data["target"]["task"]:
        try:
            data["target"]["task"] = infer_task(train.column(recipe.target.column))
        except ValueError as e:
            raise DataError(f"{where(train.source, column=recipe.target.column)}: {e}") from None
    TASKS.get(data["target"]["task"], "target.task").resolve_training(data["training"])
    validate_components(Recipe.model_validate(data))
    fill_defaults(data)  # the model directory records every field, defaults included
    return Recipe.model_validate(data)


def fill_defaults(data: dict) -> None:
    for cfg in data["inputs"]:
        mcls = MODALITIES.get(cfg["modality"])
        cfg["options"] = mcls.Config.model_validate(cfg["options"]).model_dump(mode="json")
        enc = dict(cfg["encoder"])
        etype = enc.pop("type", None) or mcls.default_encoder
        cfg["encoder"] = {"type": etype, **ENCODERS.get(etype).Config.model_validate(enc).model_dump(mode="json")}
    fusion = data["model"]["fusion"]
    data["model"]["fusion"] = FUSIONS.get(fusion.get("method", "concat")).Config.model_validate(fusion).model_dump(
        mode="json")
    data["target"]["options"] = TASKS.get(data["target"]["task"]).Config.model_validate(
        data["target"]["options"]).model_dump(mode="json")


def auto_encoder(modality: str, train: Table, column: str) -> dict[str, Any]:
    """The auto preset's encoder for an input, from its first training values (in table order: the same every run):
    balanced's frozen efficientnet for a column of photos, best's frozen MiniLM for natural language (when its
    package is installed), else the modality's own default ({})."""
    if modality not in ("image", "text"):
        return {}
    rows = train.rows[:2000] if modality == "text" else train.rows[:200]  # images: a header read each
    values = [r.get(column) for r in rows if not _missing(r.get(column))]
    if modality == "image":
        return PRESETS["balanced"]["image"] if looks_like_photos(values, train.base_dir) else {}
    from ..encoders.pretrained import shipped_models

    minilm = PRESETS["best"]["text"]
    return minilm if minilm["path"] in shipped_models() and looks_like_language(values) else {}


def _missing(value: Any) -> bool:
    return not isinstance(value, (list, tuple)) and is_missing(value)


def validation_keys(raw: ReadTable, column: str | None, group_input: str | None) -> list[int]:
    """The key that holds rows together when validation is carved from train: the `data.validation_group` column
    (whole events, subjects, speakers go to one side), else the batching group input's value, else the row."""
    if column is None:
        return raw.ids[group_input] if group_input else list(range(len(raw)))
    source = raw.table
    cells = source.column(column)
    values = [cells[r] for r in raw.rows]
    missing = [raw.rows[i] + 1 for i, v in enumerate(values) if _missing(v)]
    if missing:
        raise DataError(f"{source.source}, row {missing[0]}: column '{column}' (data.validation_group) is empty")
    codes: dict[Any, int] = {}
    return [codes.setdefault(str(v), len(codes)) for v in values]


def split_rows(keys: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out about `fraction` of rows for validation, whole groups at a time (rows sharing a key stay together).

    Groups are taken in a seeded random order; one that would overshoot the target by more rows than it fills is
    passed over (a set whose largest event holds 80% of the rows must not lose it to validation). When every group
    is that large, the first drawn that leaves at least half the rows to train is held out alone (four subjects:
    one of them, as the seed draws), else the smallest."""
    groups: dict[Any, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key if key >= 0 else ("row", row), []).append(row)
    order = list(groups)
    random.Random(seed).shuffle(order)
    target = max(1, round(fraction * len(keys)))
    held: list[int] = []
    for g in order:
        if len(held) >= target:
            break
        if len(held) + len(groups[g]) - target > target - len(held):
            continue
        held.extend(groups[g])
    if not held:
        halves = [g for g in order if 2 * len(groups[g]) <= len(keys)]
        held = list(groups[halves[0] if halves else min(order, key=lambda g: len(groups[g]))])
    held_set = set(held)
    train = [r for r in range(len(keys)) if r not in held_set]
    if not train:
        raise DataError(f"too few rows ({len(keys)}) to hold out a validation split; give a validation table")
    return train, sorted(held)


def prepare(recipe: Recipe, tables: dict[str, Table | None], split_seed: int | None = None) -> Prepared:
    train_table = tables.get("train")
    if train_table is None:
        raise RecipeError("field `data.train`: no training table given")
    recipe = resolve_recipe(recipe, train_table)
    inputs = [InputSpec(c.name, c.source, make_modality(c.name, c.modality, c.options)) for c in recipe.inputs]
    task = make_task(recipe)
    by = getattr(task.config, "consensus_by", None)
    if by and by not in {s.name for s in inputs}:
        raise RecipeError(f"field `target.options.consensus_by`: '{by}' is not an input (the inputs: "
                          f"{', '.join(s.name for s in inputs)})")
    if recipe.training.image_augment.active() and ImageAugmentConfig(
            **recipe.target.options.get("image_augment", {})).active():
        raise RecipeError("fields `training.image_augment` and `target.options.image_augment` both augment the "
                          "images: set one")
    known = {n for s in inputs for n in s.modality.corruptions}
    unknown = sorted(set(recipe.training.augment_with or []) - known)
    if unknown:
        raise RecipeError(f"field `training.augment_with`: no input has the corruption {', '.join(unknown)} "
                          f"(these inputs have: {', '.join(sorted(known)) or 'none'}"
                          + ("; `rotation` is a signal's with the option `xyz: true`" if "rotation" in unknown else "")
                          + ")")
    col, bad, prog = recipe.target.column, recipe.data.on_bad_input, recipe.training.progress
    roots = recipe.data.allow_root
    raw = read_inputs(train_table, inputs, task, col, bad, show_progress=prog, encode_targets=False,
                      keep_raw=recipe.training.augment > 0, allow_roots=roots)

    group = choose_group_input(raw, recipe.training.group_by, {s.name: s.modality for s in inputs},
                               recipe.training.batch_size)
    if group is not None and group not in raw.ids:
        raise RecipeError(f"field `training.group_by`: '{group}' is not an input")
    val_table = tables.get("validation")
    if val_table is None:
        keys = validation_keys(raw, recipe.data.validation_group, group)
        train_pos, val_pos = split_rows(keys, recipe.data.validation_fraction,
                                        recipe.training.seed if split_seed is None else split_seed)
    else:
        train_pos, val_pos = list(range(len(raw))), []

    for spec, cfg in zip(inputs, recipe.inputs):  # modality state from the training rows only
        if cfg.encoder.get("type") == "transfer":
            load_source_modality(spec.modality, cfg.encoder)  # the vocabulary the transferred encoder knows
            continue
        if type(spec.modality).fit is Modality.fit:
            continue  # nothing to learn: no value is read for it
        used = sorted({raw.ids[spec.name][p] for p in train_pos} - {-1})
        if isinstance(raw.items[spec.name], ShardValues):  # values read on demand: fit on a seeded sample
            used = [used[k] for k in sample_positions(len(used), FIT_SAMPLE, recipe.training.seed)]
        spec.modality.fit([raw.items[spec.name][i] for i in used])
    if raw.targets is not None:
        try:
            task.fit([raw.targets[p] for p in train_pos])
        except ValueError as e:
            raise DataError(f"{train_table.source}, column '{col}': {e}") from None
        raw.targets = [task.encode(t) for t in raw.targets]
    train = raw.take(train_pos)
    everything = None
    if val_table is None:
        validation = raw.take(val_pos)
        everything = raw.take(sorted(train_pos + val_pos))
    else:
        check_columns(val_table, inputs, col)
        validation = read_inputs(val_table, inputs, task, col, bad, show_progress=prog, allow_roots=roots)
    test = None
    if tables.get("test") is not None:
        check_columns(tables["test"], inputs, col)
        test = read_inputs(tables["test"], inputs, task, col, bad, show_progress=prog, allow_roots=roots)
    try:
        net = build_net(recipe, inputs, task)
    except ValueError as e:
        raise RecipeError(f"field `target.options`: {e}") from None
    return Prepared(Parts(recipe, inputs, task, net), train, validation, test, group, everything)
