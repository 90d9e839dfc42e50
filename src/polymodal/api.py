"""The Python API: `pm.fit(...)` -> Model, `pm.load(dir)` -> Model. A thin facade over the pipeline."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .config import Recipe, build_recipe
from .data import Table, as_table, check_columns, read_inputs
from .evaluation.evaluate import Run, TargetNeed, evaluate_run, run_outputs
from .model import Parts
from .storage import load_parts, read_metrics, save_parts


class Model:
    """A trained multimodal model: predict, evaluate, save. Obtain one from `fit` or `load`."""

    def __init__(self, parts: Parts, directory: Path | None = None, metrics: dict | None = None) -> None:
        self.parts, self.directory, self.metrics = parts, directory, metrics or {}
        self.allow_roots: list[str | Path] = []  # set: file cells outside these folders are bad inputs

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

    def _read(self, data: Any, target: TargetNeed, keep_raw: bool = False):
        """Read a table (or one sample) through the model's inputs; the target column required, read when present
        (optional), or not read at all (none: predictions never read targets)."""
        table = self._table(data)
        cols = table.columns()
        for spec in self.parts.inputs:  # a sample keyed by input name works as well as by column
            if spec.column not in cols and spec.name in cols:
                table = Table([{**r, spec.column: r.get(spec.name)} for r in table.rows], table.base_dir,
                              table.source)
        column = self.parts.recipe.target.column
        if target == "required":
            check_columns(table, [], column)
        return read_inputs(table, self.parts.inputs, self.parts.task, None if target == "none" else column,
                           self.parts.recipe.data.on_bad_input, require_target=target == "required",
                           show_progress=False, keep_raw=keep_raw, allow_roots=self.allow_roots)

    def predict(self, data: Any) -> list[dict] | dict:
        """Predictions for one sample (a dict; returns a dict) or a table (returns a list). Any input may be
        missing: leave the key out or set it to None."""
        single = isinstance(data, dict)
        read = self._read(data, "none")
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
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.parts.task.generate(self.parts, prompts, n, steps, guidance, seed, sampler)

    def evaluate(self, data: Any, **options: Any) -> dict:
        """The task's evaluation report on a table (path, DataFrame or rows). The options follow the task
        (`evaluation_options()` lists them):

        - classification, multilabel, regression: metrics and modality reliance; `robustness=True` adds every subset
          of inputs removed and curves over ten severities of each corruption (PNGs into `out`), with effective
          robustness against `baseline` (a late-fusion model's report, or a path to one); `progress(done, kind)`;
          `by="event"`: also each group's metrics (rows sharing a value in that column; text models too).
        - contrastive: retrieval recall@k both ways (class-level with the label column); no options.
        - text_to_image: the denoising loss; with `classifier` (a model trained on real images), `contrastive` or
          `out`, generates for the table's captions (first `limit` rows; `steps`, `guidance`, `sampler`) and scores
          them.
        """
        run = Run(self.parts, read=lambda target, keep_raw: self._read(data, target, keep_raw),
                  table=lambda: self._table(data), load=load)
        return evaluate_run(run, **options)

    def evaluation_options(self) -> list[str]:
        """The keyword options `evaluate` takes for this model's task."""
        from .evaluation.evaluate import evaluation_options

        return evaluation_options(self.parts)

    def explain(self, data: Any, index: int = 0, out: str | Path | None = None, global_: bool = False) -> dict:
        """Why the model predicts what it does. For one sample (a dict) or row `index` of a table: exact modality
        Shapley values, Integrated-Gradients attributions per input, cross-modal attention maps, second-order
        interactions. With global_=True, over the table: mean and per-class Shapley shares, EMAP (two inputs),
        the 2-D map of fused representations. With `out`, writes PNGs, report.html and explanation.json."""
        from .explain import explain_global, explain_row

        read = self._read(data, "required" if global_ and not isinstance(data, dict) else "none")
        if global_:
            return explain_global(self.parts, read, None if out is None else Path(out))
        return explain_row(self.parts, read, 0 if isinstance(data, dict) else index, None if out is None else Path(out))

    def export(self, out: str | Path, format: str = "torch", data: Any = None, inputs: list[str] | None = None) -> dict:
        """Export the network (torch.export `.pt2`, or ONNX) into `out` with export.json; `data` (a table) gives the
        example rows the parity and latency are measured on (default: placeholder values). Returns the report."""
        from .export import export_model

        return export_model(self.parts, out, format, data, inputs)  # type: ignore[arg-type]

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
        resume: bool = False, validation_group: str | None = None, preset: str | None = None,
        threshold: str | float | None = None, positive_class: str | None = None, **training: Any) -> Model:
    """Train a model.

    `recipe` is a YAML path, a dict or a Recipe; or a table (DataFrame / list of rows / path to a table) with
    `label=` and `inputs=` ({column: modality} or [column, ...] to infer modalities); `validation_group=` holds out
    whole groups of that column when validation is carved from train; `preset=` (auto, fast, balanced, best) picks
    the encoders of inputs that name none (auto, the default: the frozen efficientnet for photos, the frozen MiniLM
    for natural language, small encoders from scratch otherwise); `threshold=` ("validation", "argmax" or a
    probability) and `positive_class=` set how a two-class model decides. Keyword arguments that name training fields
    (epochs, batch_size, lr, seed, fallback=True for a model of each input alone beside the full one, ...)
    override the recipe.
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
    if validation_group is not None:
        base["data.validation_group"] = validation_group
    if preset is not None:
        base["model.preset"] = preset
    if threshold is not None:
        base["target.options.threshold"] = threshold
    if positive_class is not None:
        base["target.options.positive_class"] = positive_class
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


def ensemble(members: list[Any], *, validation: Any = None, test: Any = None, out: str | Path | None = None,
             batch_size: int = 64, allow_roots: list[str | Path] | None = None, rows: str = "all") -> Model:
    """Join trained models into one ensemble: each member a Model or a model directory, or (that, [inputs]) to
    hold it to some of its inputs (an audio + lips model read from the lips alone). Members may read different
    inputs (audio alone, lips alone, both): each row is combined over the members that see one of their inputs in
    it (mean probabilities; text: CTC step probabilities averaged, or whole texts rescored). With `validation` (a
    table none of the members trained on), the ensemble's CTC search or decision threshold is chosen there, where
    its task chooses one; `test` is scored once. `out`: the model directory (members under out/members/K);
    `allow_roots`: file cells of those tables may name files only under these folders. `rows`: "all" combines each
    row over every member that sees it; "closest" over the members whose inputs best match the row's (an audio +
    image model for rows with both, an image model for rows without their audio); "widest" over every member that
    sees it but those covered by a wider member with all its inputs in the row (rows with both: the audio + image
    model; rows without their audio: the image model and the audio + image model reading the image); "first" by
    the first member listed that sees it, alone."""
    from .model import Member
    from .training.join import join_models

    joined = []
    for item in members:
        reads = None
        if isinstance(item, tuple):
            item, reads = item
            reads = tuple([reads] if isinstance(reads, str) else reads)
        model = item if isinstance(item, Model) else load(item)
        source = str(model.directory) if model.directory is not None else f"member {len(joined)}"
        joined.append(Member(model.parts, reads, model.metrics, source))
    out_dir = Path(out) if out is not None else None
    tables = [None if t is None else as_table(t) for t in (validation, test)]
    parts, metrics = join_models(joined, out_dir, *tables, batch_size, list(allow_roots or []), rows)
    return Model(parts, out_dir, metrics)


def _is_recipe_path(value: Any) -> bool:
    return isinstance(value, (str, Path)) and Path(value).suffix.lower() in (".yaml", ".yml")


def _table(value: Any, path: str | None) -> Table | None:
    if value is not None and not isinstance(value, (str, Path)):
        return as_table(value)
    if path:
        return as_table(path)
    return None
