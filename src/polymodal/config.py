"""The recipe: one validated schema for data, inputs, model and training. CLI flags fill it; `--set` overrides any
field. Component-specific fields (modality options, encoder, fusion, task) are validated against the `Config` of
the component the registry names, so each component declares its fields once."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import RecipeError
from .modalities.augment import ImageAugmentConfig
from .registry import format_validation_error
from .tasks import TASKS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    train: str | None = Field(None, description="Training table (jsonl, csv or parquet). Paths in cells are "
                              "relative to the table's folder.")
    validation: str | None = Field(None, description="Validation table; default: carved from train.")
    test: str | None = Field(None, description="Test table, evaluated after training.")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Share of train rows held out for validation "
                                       "when no validation table is given.")
    validation_group: str | None = Field(None, description="A column whose rows are held out together when "
                                         "validation is carved from train (an event, a subject, a speaker), so "
                                         "validation measures what a new group scores, as a test split of new "
                                         "groups does.")
    on_bad_input: Literal["error", "skip"] = Field("error", description="A row with an unreadable value: stop "
                                                   "with an error naming it, or skip it (skips are counted).")
    allow_root: list[str] = Field(default_factory=list, description="Folders the tables' file cells may name; "
                                  "a path leaving them (after symlinks and `..`) is a bad input. Empty: any path.")


class InputConfig(_Strict):
    name: str = Field(..., description="The input's name (used in predictions and explanations).")
    column: str | None = Field(None, description="Table column holding the values (default: the name).")
    modality: str | None = Field(None, description="text, image, audio, video or signal (default: inferred from "
                                 "the values).")
    options: dict[str, Any] = Field(default_factory=dict, description="Modality options (image size, audio "
                                    "sample rate, ...).")
    encoder: dict[str, Any] = Field(default_factory=dict, description="Encoder: {type: NAME, ...its fields}; "
                                    "default: the modality's from-scratch encoder.")

    @property
    def source(self) -> str:
        return self.column or self.name


class TargetConfig(_Strict):
    column: str | None = Field(None, description="Table column holding the target (for a contrastive model: an "
                               "optional label column that makes retrieval metrics class-level).")
    task: str | None = Field(
        None, description="A name in the task registry (`polymodal components` lists them). Default: inferred from "
        "the values (lists: multilabel; fractional numbers: regression; otherwise classification).")

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str | None) -> str | None:
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task '{task}' (choose from: {', '.join(TASKS.names())})")
        return task

    @model_validator(mode="after")
    def _task_fits(self) -> "TargetConfig":
        TASKS.get(self.task or "classification").check_target(self.column)  # the task says whether it needs one
        return self

    options: dict[str, Any] = Field(default_factory=dict, description="Task options (label_smoothing, ...).")


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # modality -> the encoder an input of that modality gets when the recipe names none (measured in the README);
    # auto (the default) decides from the data: balanced's for photos, best's for natural language, fast's otherwise
    "auto": {},
    "fast": {},  # every modality's own default: small encoders trained from scratch
    "balanced": {"image": {"type": "efficientnet"}},  # frozen ImageNet backbone for photos
    "best": {"image": {"type": "efficientnet"},
             "text": {"type": "pretrained", "path": "all-minilm-l6-v2", "freeze": True}},
}


class ModelConfig(_Strict):
    preset: Literal["auto", "fast", "balanced", "best"] = Field(
        "auto", description="Encoders for the inputs whose recipe names none: fast (small encoders trained from "
        "scratch), balanced (images through the frozen ImageNet efficientnet), best (also text through the "
        "frozen MiniLM sentence encoder), auto (the frozen efficientnet for a column of photos: colour images of "
        "a median shorter side of 128 px or more; the frozen MiniLM for natural language: 1,000 or more distinct "
        "words in a column's first 2,000 values; fast's encoders for everything else).")
    dim: int = Field(128, ge=4, description="Width of every encoder's tokens and pooled vector.")
    fusion: dict[str, Any] = Field(default_factory=lambda: {"method": "concat"},
                                   description="Fusion: {method: NAME, ...its fields}.")
    unimodal_heads: float | None = Field(None, ge=0, description="Weight of auxiliary per-input heads' losses "
                                         "(each input alone predicts the target), a remedy for a model that learns to "
                                         "ignore its weaker input; 0: none. Default: 1.0 for a model of two or more "
                                         "inputs (with `alone: auto`, a row that has one input left is predicted by "
                                         "that input's head), 0 for one input.")
    unimodal_head: Literal["linear", "mlp"] = Field(
        "linear", description="Each auxiliary head: a linear layer on the input's pooled vector, or the fusion's "
        "post-layer (Linear-GELU of width fusion.hidden) and then the task head, the same stack a model trained on "
        "that input alone has.")
    alone: Literal["auto", "fused", "head"] = Field(
        "auto", description="How a row with a single input present is predicted: through the fusion (with the "
        "missing inputs' learnt embeddings), or by that input's auxiliary head (needs unimodal_heads > 0), which is "
        "trained on that input alone. auto: head when the model has auxiliary heads, else fused.")


class TrainingConfig(_Strict):
    epochs: int = Field(10, ge=0, description="Maximum training epochs (0: no training: a pretrained generator "
                        "scored as it is, zero-shot).")
    batch_size: int = Field(64, ge=1, description="Rows per batch.")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    modality_dropout: float | dict[str, float] = Field(
        0.1, description="Probability of hiding each input per training row (one number, or per input name), so the "
        "model learns to predict from any subset; a row never loses all its inputs.")
    augment: float = Field(0.0, ge=0, le=1, description="Probability that a training value is replaced by a random "
                           "corruption of itself (its modality's noise, blur, dropout, typos...) at a random "
                           "severity: training for noisy inputs.")
    augment_with: list[str] | None = Field(None, min_length=1, description="The corruptions `augment` draws "
                                           "from (names as `polymodal components` lists them per modality, e.g. "
                                           "[white_noise]); inputs with none of them are not augmented. Default: "
                                           "all of each modality's.")
    image_augment: ImageAugmentConfig = Field(
        default_factory=ImageAugmentConfig, description="Augmentations of image inputs and of video clips (every "
        "frame of a clip alike) in training batches, drawn afresh each step: {crop: smallest area a random resized "
        "crop keeps, flip: random horizontal flips, jitter: brightness and contrast change}. Inputs whose frozen "
        "backbone caches its features per value (a frozen efficientnet or Hugging Face image model) are left as "
        "they are. The contrastive task's own `target.options.image_augment` does the same for its images.")
    select: Literal["clean", "robust"] = Field(
        "clean", description="Which validation score picks the best epoch and stops early: the score with every "
        "input (clean), or the mean of that and the score with each input alone (robust: for models that must "
        "work when inputs are missing).")
    schedule: Literal["onecycle", "cosine", "constant"] = Field(
        "onecycle", description="Learning-rate schedule over the planned steps (onecycle: 15% warm-up from lr/25, then "
        "cosine decay; cosine: 5% warm-up from 0, then cosine decay; constant).")
    layer_decay: float = Field(1.0, gt=0, le=1, description="Layer-wise learning-rate decay for a pretrained "
                               "backbone that learns (pretrained with freeze: false, efficientnet with "
                               "train_blocks): its last block learns at lr, each block below at layer_decay times the "
                               "one above, the embeddings or stem lowest; the rest of the model at lr. 1: off.")
    backbone_frozen_epochs: int = Field(0, ge=0, description="Freeze-then-unfreeze: for this many first epochs a "
                                        "pretrained backbone that learns is held still (its learning rate 0) while "
                                        "the new layers settle; then it learns.")
    soup: int = Field(0, ge=0, description="Greedy soup (Wortsman et al., 2022): keep the weights of the `soup` "
                      "best validation epochs; after training, starting from the best, each next one joins the "
                      "average of the weights if the monitored validation score does not drop. Needs validation "
                      "rows; the kept copies cost `soup` times the model's memory. 0 or 1: the best epoch alone.")
    refit: bool = Field(False, description="After training and every choice made on the validation rows (epochs, "
                        "soup, threshold), train the model again from scratch on the training and validation rows "
                        "together for the chosen number of epochs (the soup's epochs averaged again), and keep that "
                        "model: more rows, and more groups (subjects, speakers) when validation holds whole groups "
                        "out. Needs validation carved from the training table (not a separate table). The reported "
                        "validation scores are the first model's; the test score is the refit model's.")
    ensemble: int = Field(1, ge=1, le=32, description="Train this many models with seeds seed, seed + 1, ... "
                          "(each its own initial weights and data order; one validation split, the first seed's) "
                          "and keep them as one model whose output is their mean probability (classification), "
                          "mean label probability (multilabel), mean value (regression) or, for text with a CTC "
                          "decoder, the mean of their per-step token probabilities read by one search. Costs that "
                          "many times the training and the prediction. Each member is a full fit (refit, soup "
                          "included); the decision threshold and a text model's search (`search: validation`) are "
                          "chosen on the ensemble's validation outputs.")
    fallback: bool = Field(False, description="Also train a model of each input alone (after the model of every "
                           "input, on the same validation split) and keep them all as one model: a row with every "
                           "input is read by the full model alone (its predictions unchanged); a row that lost an "
                           "input by the model of the inputs left (`polymodal ensemble --rows closest`), by that "
                           "model and the full model reading those inputs (`--rows widest`) or by the full model "
                           "alone (`--rows first`), whichever scores best on the validation rows with each input "
                           "removed in turn (ties: closest). "
                           "Classification, multilabel and regression with two inputs or more; costs the fits of the "
                           "inputs alone (time, disk); `time_limit` is shared among the fits. The model directory "
                           "holds them as members/K.")
    seed: int = Field(0, description="Seeds data order, splits and weights.")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without validation improvement.")
    group_by: str | None = Field("auto", description="Batch rows that share this input's value together so it is "
                                 "encoded once per batch; 'auto' picks an input whose values repeat; null: off.")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, ...")
    devices: int | str = Field("auto", description="Lightning devices.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, fsdp, deepspeed, ...")
    num_nodes: int = Field(1, ge=1, description="Machines taking part (torchrun or SLURM start one process per "
                           "device on each; Lightning reads their environment).")
    precision: str = Field("32-true", description="Lightning precision: 32-true, bf16-mixed, 16-mixed.")
    num_workers: int = Field(0, ge=0, description="DataLoader workers. 0 is measured fastest on 2 cores, from a shard "
                             "directory too (a worker takes a core from the training step).")
    prefetch: int = Field(0, ge=0, description="With num_workers 0: batches collated ahead in a background thread "
                          "while the current one trains (0: in the training loop). For a model on a GPU, where the "
                          "CPU waits while it computes; on a CPU the thread competes with torch's own threads and "
                          "slows training (measured in the README).")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: every core the process "
                                "may run on, its CPU affinity).")
    steps_per_call: int = Field(1, ge=1, description="Batches handed to each Lightning training call, one optimizer "
                                "step each (the same batches and updates as 1). For models whose step takes a few "
                                "milliseconds on a CPU, where Lightning's per-call bookkeeping shows; predictive "
                                "tasks only (a generator or a joint embedding space uses 1). The CSV log's step "
                                "column and the progress bar count calls.")
    keep_memory: bool = Field(True, description="On Linux (glibc): keep freed memory in the process while training "
                              "instead of returning it to the OS after every step, so the next step's large tensors "
                              "do not page-fault fresh pages (process-wide: the process stays at its training "
                              "peak).")
    progress: bool = Field(True, description="Show a progress bar (train.log in the model directory gets one line "
                           "per epoch either way).")
    checkpoint_every: int | None = Field(None, ge=1, description="Also write `checkpoints/last.ckpt` every this many "
                                         "optimizer steps within an epoch (long epochs: `--resume` then continues "
                                         "in the middle of one, as the uninterrupted run would); default: at each "
                                         "epoch's end only.")
    time_limit: float | None = Field(None, gt=0, description="Stop training after this many seconds (the epoch in "
                                     "progress ends early); the best weights so far are kept. None: no limit.")
    feature_cache: str | None = Field(None, description="A directory where frozen pretrained encoders (efficientnet, "
                                      "whisper, pretrained with freeze) keep each distinct value's features across "
                                      "runs, one safetensors file per value under a folder per network (named by a "
                                      "fingerprint of its weights): a second run, or another recipe over the same "
                                      "inputs, reads them instead of computing them. Default: the environment "
                                      "variable POLYMODAL_FEATURE_CACHE, else none (features are cached in memory "
                                      "for the run only).")


class Recipe(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    inputs: list[InputConfig] = Field(..., min_length=1, description="The model's inputs, one per column.")
    target: TargetConfig = Field(..., description="What to predict ({task: contrastive} alone for a joint embedding "
                                 "space without labels).")
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> "Recipe":
        names = [i.name for i in self.inputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"input names must be unique; repeated: {', '.join(sorted(dup))}")
        return self

    @model_validator(mode="after")
    def _robust_defaults(self) -> "Recipe":
        """Robust to a missing input by default (measured on avdigits: no clean cost; README, Missing and noisy
        inputs): auxiliary heads for two or more inputs, and a row left with one input predicted by its head. The
        resolved values are what the model directory's recipe records."""
        if self.model.unimodal_heads is None:
            self.model.unimodal_heads = 1.0 if len(self.inputs) > 1 else 0.0
        if self.model.alone == "auto":
            self.model.alone = "head" if self.model.unimodal_heads > 0 else "fused"
        return self


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML)."""
    if "=" not in text:
        raise RecipeError(f"--set expects FIELD=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    if not key.strip():
        raise RecipeError(f"--set expects FIELD=VALUE, got '{text}'")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_override(data: dict, path: list[str], value: Any) -> None:
    """Set a nested field; list items (inputs) are addressed by their name or their index."""
    node: Any = data
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            match = [item for item in node if isinstance(item, dict) and item.get("name") == key]
            if match:
                item = match[0]
            elif key.isdigit() and int(key) < len(node):
                item = node[int(key)]
            else:
                raise RecipeError(f"--set {'.'.join(path)}: no list item named '{key}'")
            if last:
                node[node.index(item)] = value
                return
            node = item
            continue
        if not isinstance(node, dict):
            raise RecipeError(f"--set {'.'.join(path)}: '{'.'.join(path[:i])}' is not a section")
        if last:
            node[key] = value
        else:
            node = node.setdefault(key, {})


def load_recipe_dict(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"recipe not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{p}: a recipe is a mapping (data, inputs, target, model, training)")
    base = p.resolve().parent
    for key in ("train", "validation", "test"):  # table paths in a recipe are relative to the recipe
        val = (data.get("data") or {}).get(key)
        if isinstance(val, str) and not Path(val).is_absolute():
            data["data"][key] = str(base / val)
    return data


def validate_recipe(data: dict, source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(f"{source}: " + format_validation_error(e)) from None
    except UnicodeError as e:  # undecodable bytes from a shell argument arrive as lone surrogates
        raise RecipeError(f"{source}: a value is not valid text ({e.reason}: {e.object[e.start:e.end]!a})") from None


def build_recipe(recipe: str | Path | dict | Recipe | None = None, overrides: list[str] | None = None,
                 base: dict | None = None) -> Recipe:
    """A recipe from a YAML path, a dict or a Recipe, with `--set`-style overrides applied on top."""
    if isinstance(recipe, Recipe):
        data = recipe.model_dump()
    elif isinstance(recipe, dict):
        data = copy.deepcopy(recipe)
    elif recipe is not None:
        data = load_recipe_dict(recipe)
    else:
        data = {}
    for key, value in (base or {}).items():
        if value is not None:
            apply_override(data, key.split("."), value)
    for text in overrides or []:
        path, value = parse_override(text)
        apply_override(data, path, value)
    return validate_recipe(data, str(recipe) if isinstance(recipe, (str, Path)) else "recipe")
