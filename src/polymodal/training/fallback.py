"""`training.fallback`: beside the model of every input, a model of each input alone, joined as one ensemble. A row
with every input is read by the full model alone (its predictions unchanged); a row that lost an input by the model
of the inputs left (`rows: closest`), by that model and the full model reading those inputs, the mean of their
probabilities (`rows: widest`), or by the full model alone as without fallback (`rows: first`): the rule that
scores best on the validation rows with each input removed in turn (ties to closest, which is the model of the
inputs left exactly). Each fit is a whole fit (its own epochs, soup,
refit) on the same validation split; the test split is scored once, by the joined model."""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..config import Recipe
from ..data import Table
from ..errors import RecipeError
from ..model import Member, Parts, join_parts, make_task
from ..storage import MEMBERS, load_parts, read_metrics, save_parts
from ..tasks.base import Task
from .fit import several_processes
from .join import join_models
from .progress_log import append_line

FITS = "fits"  # where the fits train (checkpoints and logs, for --resume) until the joined model is saved


def check_fallback(recipe: Recipe) -> None:
    """Refuse, by field, what `training.fallback` cannot do: it needs two inputs or more and a task whose outputs
    are averaged (classification, multilabel, regression), trained in one process."""
    cfg = recipe.training
    if len(recipe.inputs) < 2:
        raise RecipeError("field `training.fallback`: a model of one input has no input to fall back from")
    task = make_task(recipe)
    if type(task).combine is Task.combine or type(task).ensemble_net is not Task.ensemble_net:
        raise RecipeError(f"field `training.fallback`: the {task.registry_name} task does not combine models "
                          "row by row (classification, multilabel and regression do)")
    if several_processes(cfg):
        raise RecipeError("field `training.fallback`: the models train one after another in one process")


def member_recipe(recipe: Recipe, inputs: list[str] | None, fits: int) -> Recipe:
    """The recipe of one fit: every input (None) or those named, no fallback of its own, the time limit shared."""
    data = recipe.model_dump(mode="json")
    data["training"].update(fallback=False, time_limit=None if recipe.training.time_limit is None
                            else recipe.training.time_limit / fits)
    if inputs is not None:
        data["inputs"] = [i for i in data["inputs"] if i["name"] in inputs]
        # the defaults that follow from the number of inputs are resolved again for one
        data["model"].update(unimodal_heads=None, alone="auto")
        data["training"].update(modality_dropout=0.0, select="clean")
    return Recipe.model_validate(data)


RULES = ("closest", "widest", "first")  # ties go to the earlier: closest is the model of the inputs left, exactly


def choose_rows(parts: Parts, recipe: Recipe, tables: dict[str, Table | None], log_path: Path) -> dict:
    """The row rule whose mean validation score over "each input removed in turn" is best (rows with every input
    read the same under each). The validation rows are read again as the fits split them (keeping the first fit's
    would hold every decoded training value through the other fits: a split shares them); without validation rows
    the fits did not train on (refit, none carved), closest."""
    from ..evaluation.evaluate import score
    from ..evaluation.reliance import without
    from .prepare import prepare

    full = member_recipe(recipe, None, 1)
    if full.training.refit:
        append_line(log_path, "rows: closest (the fits refit on their validation rows: none left to choose by)")
        return {"chosen": "closest", "validation": None}
    prep = prepare(full, {**tables, "test": None})
    val = prep.validation
    if not len(val):
        append_line(log_path, "rows: closest (no validation rows to choose by)")
        return {"chosen": "closest", "validation": None}
    state = {s.name: json.dumps(s.modality.state(), sort_keys=True, default=str) for s in parts.inputs}
    if {s.name: json.dumps(s.modality.state(), sort_keys=True, default=str) for s in prep.parts.inputs} != state:
        append_line(log_path, "rows: closest (the validation rows read again do not match the trained inputs)")
        return {"chosen": "closest", "validation": None}
    task, names = parts.task, list(val.ids)
    tried = {}
    for rule in RULES:
        parts.net.rows = rule
        each = {n: round(score(parts, without(val, {n}), recipe.training.batch_size)[task.monitor], 6) for n in names}
        tried[rule] = {"without": each, "mean": round(sum(each.values()) / len(each), 6)}
        append_line(log_path, f"rows {rule}: validation {task.monitor} with each input removed {each} "
                              f"(mean {tried[rule]['mean']})")
    sign = 1 if task.monitor_mode == "max" else -1  # the best mean; ties to the earlier rule
    best = max(RULES, key=lambda r: (sign * tried[r]["mean"], -RULES.index(r)))
    append_line(log_path, f"joined: rows {best} (a row with every input read by the full model alone)")
    return {"chosen": best, "validation": tried, "monitor": task.monitor}


def fit_fallback(recipe: Recipe, tables: dict[str, Table | None], out: Path, resume: bool,
                 fit_one: Callable[[Recipe, dict, Path, bool], tuple[Parts, dict]]) -> tuple[Parts, dict]:
    """The model of every input and one per input alone (`fit_one(recipe, tables, out, resume)` each, in
    out/fits/K until the end), joined with the row rule `choose_rows` picks, the test split scored once, saved to
    `out` (members under out/members/K with their training logs)."""
    check_fallback(recipe)
    log_path = out / "train.log"
    names = [i.name for i in recipe.inputs]
    plan: list[list[str] | None] = [None] + [[n] for n in names]
    members, fitted = [], []
    started = time.perf_counter()
    for k, inputs in enumerate(plan):
        where = out / FITS / str(k)
        what = "every input" if inputs is None else f"{inputs[0]} alone"
        if resume and (where / "config.json").is_file():  # finished before the crash: kept as it is
            append_line(log_path, f"fallback fit {k + 1} of {len(plan)} ({what}): already trained, {where}")
            parts, metrics = load_parts(where), read_metrics(where)
        else:
            append_line(log_path, f"fallback fit {k + 1} of {len(plan)} ({what}): {where}")
            parts, metrics = fit_one(member_recipe(recipe, inputs, len(plan)), {**tables, "test": None}, where,
                                     resume)
        members.append(Member(parts, None, metrics, f"{what} (training.fallback)"))
        fitted.append(metrics)
    chosen = choose_rows(join_parts(members, rows="closest"), recipe, tables, log_path)
    parts, joined = join_models(members, None, None, tables.get("test"), recipe.training.batch_size,
                                list(recipe.data.allow_root or []), rows=chosen["chosen"])
    full = fitted[0]
    metrics = {**{k: v for k, v in full.items() if k not in ("test",)}, **joined}
    metrics["training"] = {**full.get("training", {}),
                           "seconds": round(time.perf_counter() - started, 2),
                           "fallback": [{"inputs": plan[k] or names,
                                         **{key: m.get("training", {}).get(key) for key in
                                            ("epochs", "best_epoch", "seconds")},
                                         "validation": m.get("validation")} for k, m in enumerate(fitted)],
                           "fallback_rows": chosen}
    save_parts(parts, out, metrics)
    for k in range(len(plan)):  # each fit's log beside its member; checkpoints are not needed any more
        log = out / FITS / str(k) / "train.log"
        if log.is_file():
            shutil.copy2(log, out / MEMBERS / str(k) / "train.log")
    shutil.rmtree(out / FITS, ignore_errors=True)
    summary = ", ".join(f"{k}: {v}" for k, v in (metrics.get("test") or metrics.get("validation") or {}).items()
                        if isinstance(v, float))
    append_line(log_path, f"model with {len(plan) - 1} fallback models saved to {out} ({summary})")
    return parts, metrics
