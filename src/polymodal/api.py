"""The Python API: `pm.fit(...)` -> Model, `pm.load(dir)` -> Model. A thin facade over the pipeline."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .config import Recipe, build_recipe
from .data import Table, as_table, check_columns, read_inputs
from .evaluation.evaluate import evaluate_parts, run_outputs
from .model import Parts
from .storage import load_parts, read_metrics, save_parts


class Model:
    """A trained multimodal model: predict, evaluate, save. Obtain one from `fit` or `load`."""

    def __init__(self, parts: Parts, directory: Path | None = None, metrics: dict | None = None) -> None:
        self.parts, self.directory, self.metrics = parts, directory, metrics or {}

    @property
    def inputs(self) -> dict[str, str]:
        return {s.name: s.modality.registry_name for s in self.parts.inputs}

    @property
    def classes(self) -> list[str] | None:
        return getattr(self.parts.task, "classes", None)

    def _table(self, data: Any) -> Table:
        if isinstance(data, dict):  # one sample: {input name or column: value}; absent keys are missing
            return as_table([data])
        return as_table(data)

    def _read(self, data: Any, require_target: bool, keep_raw: bool = False):
        table = self._table(data)
        cols = table.columns()
        for spec in self.parts.inputs:  # a sample keyed by input name works as well as by column
            if spec.column not in cols and spec.name in cols:
                table = Table([{**r, spec.column: r.get(spec.name)} for r in table.rows], table.base_dir,
                              table.source)
        if require_target and self.parts.task.needs_target:
            check_columns(table, [], self.parts.recipe.target.column)
        target = self.parts.recipe.target.column if require_target else None  # predictions never read targets
        require_target = require_target and self.parts.task.needs_target  # contrastive labels are optional
        return read_inputs(table, self.parts.inputs, self.parts.task, target, self.parts.recipe.data.on_bad_input,
                           require_target=require_target, show_progress=False, keep_raw=keep_raw)

    def predict(self, data: Any) -> list[dict] | dict:
        """Predictions for one sample (a dict; returns a dict) or a table (returns a list). Any input may be
        missing: leave the key out or set it to None."""
        single = isinstance(data, dict)
        read = self._read(data, require_target=False)
        read.targets = None
        out, _ = run_outputs(self.parts, read)
        decoded = self.parts.task.decode(out)
        for row, pred in zip(read.rows, decoded):
            pred["row"] = row
            src = read.table.rows[row]
            if "id" in src:
                pred["id"] = src["id"]
        return decoded[0] if single else decoded

    def generate(self, prompts: str | list[str], n: int = 1, steps: int | None = None, guidance: float | None = None,
                 seed: int = 0, sampler: str | None = None) -> list:
        """PIL images from a text-to-image model: n per prompt (prompt-major), seeded. steps, guidance and sampler
        (ddim, ddpm, dpm_solver) default to the recipe's."""
        from .generation import generate_from_parts

        return generate_from_parts(self.parts, [prompts] if isinstance(prompts, str) else list(prompts), n, steps,
                                   guidance, seed, sampler)

    def evaluate(self, data: Any, robustness: bool = False, baseline: Any = None, out: str | Path | None = None,
                 progress=None, classifier: str | Path | None = None, contrastive: str | Path | None = None,
                 steps: int | None = None, guidance: float | None = None, limit: int | None = None,
                 sampler: str | None = None) -> dict:
        """Metrics on a labelled table (path, DataFrame or rows), with modality reliance. With robustness=True,
        also a `robustness` report: every subset of inputs removed, curves over ten severities of each corruption,
        relative robustness, and effective robustness against `baseline` (a late-fusion model's report, or a path to
        one); curves are drawn as PNGs into `out` when given. A contrastive model reports retrieval recall@k both
        ways; a text-to-image model reports its denoising loss and, with `classifier` (a model trained on real
        images) and/or `contrastive`, generates for the table's captions (first `limit` rows) and scores them."""
        from .evaluation.robustness import load_baseline, plot_curves, robustness_report

        if self.parts.task.generates:  # text-to-image: generate for the table's captions and score the images
            from .evaluation.generation import generation_report

            result = evaluate_parts(self.parts, self._read(data, require_target=False))
            if classifier is not None or contrastive is not None or out is not None:
                result["generation"] = generation_report(self.parts, self._table(data), classifier, contrastive,
                                                         steps, guidance, limit=limit, progress=progress,
                                                         out=None if out is None else Path(out), sampler=sampler)
            return result
        read = self._read(data, require_target=True, keep_raw=robustness)
        result = evaluate_parts(self.parts, read)
        if robustness:
            if baseline is not None and not isinstance(baseline, dict):
                baseline = load_baseline(baseline)
            result["robustness"] = robustness_report(self.parts, read, baseline, progress=progress)
            if out is not None:
                result["robustness"]["plots"] = [str(p) for p in plot_curves(result["robustness"], Path(out))]
        return result

    def explain(self, data: Any, index: int = 0, out: str | Path | None = None, global_: bool = False) -> dict:
        """Why the model predicts what it does. For one sample (a dict) or row `index` of a table: exact modality
        Shapley values, Integrated-Gradients attributions per input, cross-modal attention maps, second-order
        interactions. With global_=True, over the table: mean and per-class Shapley shares, EMAP (two inputs),
        the 2-D map of fused representations. With `out`, writes PNGs, report.html and explanation.json."""
        from .explain import explain_global, explain_row

        read = self._read(data, require_target=global_ and not isinstance(data, dict))
        if global_:
            return explain_global(self.parts, read, None if out is None else Path(out))
        return explain_row(self.parts, read, 0 if isinstance(data, dict) else index, None if out is None else Path(out))

    def save(self, directory: str | Path) -> Path:
        self.directory = save_parts(self.parts, directory, self.metrics)
        return self.directory

    def info(self) -> dict:
        r = self.parts.recipe
        return {"inputs": {s.name: {"column": s.column, "modality": s.modality.registry_name,
                                    "encoder": c.encoder.get("type") or s.modality.default_encoder}
                           for s, c in zip(self.parts.inputs, r.inputs)},
                "target": r.target.column, "task": r.target.task, "task_state": self.parts.task.describe(),
                "fusion": r.model.fusion, "dim": r.model.dim,
                "parameters": sum(p.numel() for p in self.parts.net.parameters()),
                "metrics": self.metrics}


def load(directory: str | Path) -> Model:
    """Load a model directory written by `fit` or `Model.save` (JSON + safetensors; nothing is unpickled)."""
    return Model(load_parts(directory), Path(directory), read_metrics(directory))


def fit(recipe: str | Path | dict | Recipe | Any | None = None, *, train: Any = None, validation: Any = None,
        test: Any = None, label: str | None = None, inputs: dict[str, str] | list[str] | None = None,
        fusion: str | None = None, out: str | Path | None = None, overrides: list[str] | None = None,
        resume: bool = False, **training: Any) -> Model:
    """Train a model.

    `recipe` is a YAML path, a dict or a Recipe; or a table (DataFrame / list of rows / path to a table) with
    `label=` and `inputs=` ({column: modality} or [column, ...] to infer modalities). Keyword arguments that name
    training fields (epochs, batch_size, lr, seed, ...) override the recipe.
    """
    from .training import fit_model

    if recipe is not None and not isinstance(recipe, (dict, Recipe)) and not _is_recipe_path(recipe):
        train, recipe = recipe, None
    base: dict[str, Any] = {}
    if label is not None:
        base["target"] = {"column": label}
    if inputs is not None:
        items = inputs.items() if isinstance(inputs, dict) else ((c, None) for c in inputs)
        base["inputs"] = [{"name": c, "modality": m} for c, m in items]
    if fusion is not None:
        base["model.fusion.method"] = fusion
    for key, value in training.items():
        base[f"training.{key}"] = value
    for key, value in (("train", train), ("validation", validation), ("test", test)):
        if isinstance(value, (str, Path)):
            base[f"data.{key}"] = str(value)
    rec = build_recipe(recipe, overrides, base)
    tables = {key: _table(value, getattr(rec.data, key)) for key, value in
              (("train", train), ("validation", validation), ("test", test))}
    out_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="polymodal-"))
    parts, metrics = fit_model(rec, tables, out_dir, resume=resume)
    return Model(parts, out_dir, metrics)


def _is_recipe_path(value: Any) -> bool:
    return isinstance(value, (str, Path)) and Path(value).suffix.lower() in (".yaml", ".yml")


def _table(value: Any, path: str | None) -> Table | None:
    if value is not None and not isinstance(value, (str, Path)):
        return as_table(value)
    if path:
        return as_table(path)
    return None
