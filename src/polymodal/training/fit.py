"""Fit: prepare, train with Lightning (progress bar, early stopping, checkpoints, resume), restore the best
weights, evaluate, save the model directory."""
from __future__ import annotations

import gc
import json
import logging
import os
import random
import shutil
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader

from ..config import Recipe, TrainingConfig
from ..data import (
    ChunkCollator,
    ChunkedBatchSampler,
    Collator,
    GroupedBatchSampler,
    PrefetchLoader,
    ReadTable,
    Table,
    check_columns,
    read_inputs,
)
from ..encoders.base import FeatureCache, feature_cache_dir
from ..errors import RecipeError
from ..evaluation.evaluate import evaluate_parts, run_outputs
from ..model import Parts, build_net, ensemble_net, make_task
from ..storage import save_parts
from ..tasks import Task
from .module import BestWeights, EMAWeights, LitMultimodal, average_states
from .prepare import Prepared, prepare
from .progress_log import EpochLog, append_line
from .runtime import configure_process

log = logging.getLogger("polymodal")
for _name in ("lightning.pytorch", "lightning.fabric"):  # keep Lightning's banners (GPU/TPU, tips) out of the way
    logging.getLogger(_name).setLevel(logging.WARNING)


def loader(data: ReadTable, parts: Parts, batch_size: int, shuffle: bool, group: str | None, seed: int,
           workers: int = 0, augment: float = 0.0, prefetch: int = 0, steps_per_call: int | None = None,
           modality_dropout: float | dict[str, float] = 0.0, augment_with: list[str] | None = None) -> DataLoader:
    """Batches of a read table. With `steps_per_call` (training), each item is a list of that many batches."""
    keys = data.ids[group] if group else list(range(len(data)))
    sampler = GroupedBatchSampler(keys, batch_size, shuffle, seed)
    collate = Collator(data, parts.modalities, parts.task, augment=augment, seed=seed,
                       modality_dropout=modality_dropout, shard=steps_per_call is not None,
                       augment_with=augment_with)
    if steps_per_call is not None:
        sampler, collate = ChunkedBatchSampler(sampler, steps_per_call), ChunkCollator(collate)
    # a generator of its own: making an iterator (each epoch, each validation) draws a seed from it, not from torch's
    # global stream, so a run resumed in the middle of an epoch continues that stream where it was
    return PrefetchLoader(_Keys(len(data)), batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                          persistent_workers=workers > 0, prefetch=prefetch,
                          generator=torch.Generator().manual_seed(seed))


class RandomStreams(L.Callback):
    """Every random stream training draws from (torch, numpy and Python's global generators, the batch order, the
    collator's augmentation and modality-dropout draws), saved in each checkpoint and restored on resume, so a
    resumed run continues exactly as the uninterrupted one would have (checked by benchmarks/crash_resume.py)."""

    def __init__(self, loader: DataLoader) -> None:
        sampler, collate = loader.batch_sampler, loader.collate_fn
        self.sampler = getattr(sampler, "batches", sampler)  # a ChunkedBatchSampler wraps the grouped one
        self.collator = getattr(collate, "collate", collate)  # a ChunkCollator wraps the Collator
        self.batches_done: int | None = None  # set while a checkpoint is written in the middle of an epoch

    def state_dict(self) -> dict:
        numpy_state = np.random.get_state()
        epoch = getattr(self.sampler, "epoch", None)
        if epoch is not None and self.batches_done is not None:  # the sampler already holds the next epoch's order
            epoch -= 1
        return {"torch": torch.get_rng_state(), "python": random.getstate(),
                "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
                "sampler_epoch": epoch, "batches_done": self.batches_done or 0,
                "collator": self.collator.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
        kind, keys, *rest = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        if state.get("sampler_epoch") is not None and hasattr(self.sampler, "set_epoch"):
            # the order the next epoch would have had, or the interrupted epoch's from its next batch on
            self.sampler.set_epoch(state["sampler_epoch"], state.get("batches_done", 0))
        self.collator.rng.bit_generator.state = state["collator"]


class LastCheckpoint(L.Callback):
    """`last.ckpt` at the end of every training epoch (after its validation, so the best weights and early-stopping
    state are in it), written atomically by AtomicCheckpointIO. (Lightning's ModelCheckpoint with save_top_k=0 writes
    `last` only when training ends.)"""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(str(self.path))


class StepCheckpoint(L.Callback):
    """`last.ckpt` every `every` optimizer steps within an epoch too (`training.checkpoint_every`), for epochs
    long enough that losing one hurts (a table of millions of rows). `--resume` then continues in the middle of the
    epoch: the sampler skips the batches done and each batch's random draws are keyed by its place in the epoch, so
    the run ends as the uninterrupted one would."""

    def __init__(self, path: Path, every: int, streams: RandomStreams, steps_per_call: int) -> None:
        self.path, self.streams = path, streams
        self.every, self.steps_per_call = every, max(1, steps_per_call)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        done = (batch_idx + 1) * self.steps_per_call  # batches (optimizer steps) of this epoch done
        if done >= trainer.num_training_batches * self.steps_per_call:
            return  # the epoch's end: LastCheckpoint writes it after validation
        if trainer.global_step // self.every > (trainer.global_step - self.steps_per_call) // self.every:
            self.streams.batches_done = done
            try:
                trainer.save_checkpoint(str(self.path))
            finally:
                self.streams.batches_done = None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all: into a file beside, flushed to disk, then renamed over the old one,
    so a kill mid-write leaves the previous checkpoint for `--resume`."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: object = None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


MAY_CHANGE_ON_RESUME = ("progress", "num_workers", "prefetch", "threads", "keep_memory", "time_limit", "epochs",
                        "checkpoint_every", "feature_cache", "patience")


def claim_checkpoints(ckpt_dir: Path, recipe: Recipe, resume: bool, log_path: Path) -> str | None:
    """The checkpoint to resume from, or None: then this run starts over, and the folder is emptied and marked with
    its recipe at once, before any data is read, so a run killed at any moment leaves either no checkpoint or its
    own. `--resume` continues `last.ckpt` when the same recipe made it (epochs, patience and how the run shows
    itself may change); with none, or one from another recipe, it starts over and says so (a retry loop always
    gets going)."""
    last, made_by = ckpt_dir / "last.ckpt", ckpt_dir / "recipe.json"
    this_recipe = recipe.model_dump(mode="json")
    for key in MAY_CHANGE_ON_RESUME:
        this_recipe["training"].pop(key, None)
    note = None
    if resume and last.is_file():
        old = json.loads(made_by.read_text()) if made_by.is_file() else this_recipe
        if old == this_recipe:
            return str(last)
        note = (f"--resume: {last} was made by another recipe (`{_first_difference(old, this_recipe)}` differs): "
                "starting from the beginning")
    elif resume:
        note = f"--resume: no checkpoint at {last} yet: starting from the beginning"
    if note:
        log.warning(note)
        append_line(log_path, note)
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:
        return None  # under DDP the first process alone owns the folder
    if ckpt_dir.is_dir():  # an earlier run's checkpoints: this run supersedes them
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    tmp = made_by.with_name("recipe.json.partial")
    tmp.write_text(json.dumps(this_recipe))
    os.replace(tmp, made_by)
    return None


def _first_difference(a: object, b: object, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}.{i}")
    return path or "(the whole recipe)"


class _Keys:
    """The loader's dataset: hands each sampled key (a row position, or a batch's rows in a chunk) to the collator."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __getitem__(self, key):
        return key

    def __getitems__(self, keys):
        return keys  # a batch as the sampler made it (a Rows keeps the key its random draws are seeded by)

    def __len__(self) -> int:
        return self.n


def feature_cache_counts(net: torch.nn.Module) -> dict[str, dict]:
    """Per frozen encoder with a feature cache: values computed, values read from the cache directory, its folder."""
    counts = {}
    for name, module in net.named_modules():
        cache = getattr(module, "_cache", None)
        if isinstance(cache, FeatureCache) and (cache.computed or cache.read):
            folder = cache.folder()
            counts[name.removeprefix("encoders.").removesuffix(".encoder")] = {
                "computed": cache.computed, "read": cache.read, "folder": str(folder) if folder else None}
    return counts


GAP = 0.10  # validation and test scores further apart than this (on a 0-1 scale) are worth a warning


def score_gap(metric: str, validation: dict | None, test: dict | None) -> str | None:
    """A warning when the validation score and the test score part ways: the validation rows then say little of
    new data (they share events, speakers or subjects with training that the test rows do not)."""
    v, t = (validation or {}).get(metric), (test or {}).get(metric)
    if not isinstance(v, (int, float)) or not isinstance(t, (int, float)) or not (0 <= v <= 1 and 0 <= t <= 1):
        return None
    if abs(v - t) <= GAP:
        return None
    return (f"validation {metric} {v:.3f} and test {metric} {t:.3f} part ways (by {abs(v - t):.3f}): the "
            "validation rows may share groups (events, speakers, subjects, sources) with training that the test "
            "rows do not, so they choose epochs and settings badly; hold out whole groups with "
            "`data.validation_group` (quick form: --validation-group COLUMN)")


def greedy_soup(parts: Parts, validation: ReadTable, top: list[dict], batch_size: int, log_path: Path) -> dict:
    """Greedy soup over the kept epochs (best first): each joins the average of the weights if the task's monitored
    validation score (every input present) does not get worse; the network ends with the soup's weights."""
    task = parts.task
    sign = 1 if task.monitor_mode == "max" else -1

    def score(state: dict) -> float:
        parts.net.load_state_dict(state)
        return evaluate_parts(parts, validation, batch_size)[task.monitor]

    members = [top[0]]
    current = first = score(top[0]["state"])
    for candidate in top[1:]:
        value = score(average_states([m["state"] for m in members + [candidate]]))
        if sign * value >= sign * current:
            members.append(candidate)
            current = value
    parts.net.load_state_dict(average_states([m["state"] for m in members]))
    parts.net.eval()
    result = {"epochs": [m["epoch"] for m in members], "tried": [t["epoch"] for t in top],
              f"validation_{task.monitor}": round(current, 6), f"best_epoch_{task.monitor}": round(first, 6)}
    append_line(log_path, f"greedy soup of epochs {result['epochs']} (of {result['tried']}): validation "
                          f"{task.monitor} {current:.4f} (the best epoch alone {first:.4f})")
    return result


def choose_decoding(parts: Parts, validation: ReadTable, batch_size: int, log_path: Path | None) -> dict:
    """Let the task choose how it decodes (a search) among its candidates, on the validation rows."""
    task = parts.task
    if not len(validation):
        message = "the task chooses its search on validation rows, and there are none: it keeps the fixed one"
        log.warning(message)
        append_line(log_path, "warning: " + message)
        return {"skipped": message}
    tried: dict[str, float] = {}
    best: tuple[float, dict] | None = None
    for settings in task.decoding_candidates(parts.net):
        task.use_decoding(parts.net, settings)
        out, target = run_outputs(parts, validation, batch_size)
        score = task.decoding_score(out, target)
        tried[task.decoding_name(settings)] = round(score, 6)
        append_line(log_path, f"  search {task.decoding_name(settings)} on the validation rows: {score:.4f}")
        if best is None or score < best[0]:
            best = (score, settings)
    assert best is not None
    task.use_decoding(parts.net, best[1])
    chosen = task.decoding_name(best[1])
    append_line(log_path, f"decoding chosen on the validation rows: {chosen} ({best[0]:.4f}); tried: "
                + ", ".join(f"{k} {v:.4f}" for k, v in tried.items()))
    return {"chosen": chosen, "settings": best[1], "validation": tried}


def calibrate(parts: Parts, validation: ReadTable, batch_size: int, log_path: Path | None) -> dict:
    """Let the task choose its decisions (a threshold) on the validation rows' outputs of the trained network."""
    if not len(validation):
        message = ("the task chooses its decision threshold on validation rows, and there are none (data.validation "
                   "or data.validation_fraction > 0): it keeps its default")
        log.warning(message)
        append_line(log_path, "warning: " + message)
        return {"skipped": message}
    out, target = run_outputs(parts, validation, batch_size)
    chosen = parts.task.calibrate(out, target)
    append_line(log_path, "chosen on the validation rows: " + ", ".join(f"{k} {v}" for k, v in chosen.items()))
    log.info("chosen on the validation rows: %s", chosen)
    return chosen


class KeepEpochs(L.Callback):
    """CPU copies of the weights at the end of the given epochs (0-based), for a refit's soup."""

    def __init__(self, epochs: list[int]) -> None:
        self.epochs = set(epochs)
        self.states: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch in self.epochs:
            self.states.append({k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()})


def several_processes(cfg: TrainingConfig) -> bool:
    """Whether the training config asks for more than one process (DDP, several nodes or devices)."""
    return cfg.strategy == "ddp" or cfg.num_nodes > 1 or (isinstance(cfg.devices, int) and cfg.devices > 1)


def check_refit(recipe: Recipe, tables: dict[str, Table | None]) -> None:
    """`training.refit` needs validation rows carved from the training table, and one process."""
    cfg = recipe.training
    if not cfg.refit:
        return
    if tables.get("validation") is not None or recipe.data.validation_fraction <= 0:
        raise RecipeError("field `training.refit`: the refit trains on the training and validation rows together, "
                          "so the validation rows must be carved from the training table (data.validation_fraction "
                          "> 0, no separate validation table)")
    if several_processes(cfg):
        raise RecipeError("field `training.refit`: the refit runs in one process (not under ddp)")


def refit(parts: Parts, prep: Prepared, plan, chosen: dict, out: Path, seconds_left: float | None) -> dict:
    """Train the network again from its initial weights on the training and validation rows together, for the
    epochs chosen on validation (and average the weights of the soup's epochs, where a soup chose them); the
    network ends with these weights. The task keeps what it chose on validation (a threshold)."""
    recipe, cfg = parts.recipe, parts.recipe.training
    log_path = out / "train.log"
    soup_epochs = (chosen.get("soup") or {}).get("epochs") or []
    # up to the best epoch, or the soup's last (a soup may take epochs after the best one)
    epochs = max([chosen["best_epoch"], *soup_epochs]) + 1 if plan.keep_best and chosen.get("best_epoch") is not None \
        else chosen["epochs"]
    if seconds_left is not None and seconds_left <= 0:
        message = "training.refit skipped: the time limit is spent (the first model is kept)"
        log.warning(message)
        append_line(log_path, "warning: " + message)
        return {"skipped": message}
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts.net = build_net(recipe, parts.inputs, parts.task)  # prep.parts is this same Parts
    data = prep.everything
    dl = loader(data, parts, cfg.batch_size, True, prep.group_input, cfg.seed, cfg.num_workers, cfg.augment,
                cfg.prefetch, plan.steps_per_call, plan.modality_dropout, cfg.augment_with)
    # the same schedule as the first run (planned over training.epochs), stopped at the chosen epoch
    module = LitMultimodal(parts.net, parts.task, cfg, total_steps=dl.batch_sampler.optimizer_steps * cfg.epochs,
                           unimodal_weight=recipe.model.unimodal_heads, plan=plan,
                           kinds={n: m.registry_name for n, m in parts.modalities.items()})
    keep = KeepEpochs(sorted(soup_epochs) if len(soup_epochs) > 1 else [])
    ema = EMAWeights(plan.ema_decay) if plan.ema_decay > 0 else None
    callbacks = [keep, EpochLog(log_path, seconds_left)] + ([ema] if ema is not None else [])
    append_line(log_path, f"refit: {epochs} epochs on the training and validation rows ({len(data)} rows)"
                + (f", averaging epochs {sorted(soup_epochs)}" if len(soup_epochs) > 1 else ""))
    trainer = L.Trainer(
        max_epochs=epochs, max_time=None if seconds_left is None else {"seconds": seconds_left},
        accelerator=cfg.accelerator, devices=1, precision=cfg.precision, callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=cfg.progress, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(out), use_distributed_sampler=False)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # the refit has no validation rows
        trainer.fit(module, dl)
    if ema is not None and ema.state is not None:
        parts.net.load_state_dict(ema.state)
    elif len(keep.states) > 1:
        parts.net.load_state_dict(average_states(keep.states))
    parts.net.eval()
    result = {"epochs": trainer.current_epoch, "rows": len(data), "seconds": round(time.perf_counter() - started, 2)}
    if len(keep.states) > 1:
        result["averaged_epochs"] = sorted(soup_epochs)[:len(keep.states)]  # fewer where a time limit cut it short
    return result


def fit_model(recipe: Recipe, tables: dict[str, Table | None], out: str | Path, resume: bool = False) -> tuple[
        Parts, dict]:
    if recipe.training.fallback:
        from .fallback import fit_fallback

        return fit_fallback(recipe, tables, Path(out), resume, fit_model)
    if recipe.training.ensemble > 1:
        return fit_ensemble(recipe, tables, Path(out), resume)
    parts, metrics, _ = _fit(recipe, tables, out, resume)
    return parts, metrics


def fit_ensemble(recipe: Recipe, tables: dict[str, Table | None], out: Path, resume: bool) -> tuple[Parts, dict]:
    """`training.ensemble: N`: N fits with seeds seed .. seed + N - 1 on one validation split (the first seed's),
    each in `members/K` (kept there until the ensemble is saved; `--resume` continues each member from its own last
    checkpoint), then one model of them all: the task combines their outputs; its threshold (if it chooses one) is
    chosen on the ensemble's validation outputs; the test split is scored once, by the ensemble."""
    cfg = recipe.training
    task = make_task(recipe)  # (a task inferred from the data is one of those that combine)
    if type(task).ensemble_net is not Task.ensemble_net:
        task.ensemble_net([])  # raises now where the recipe already says this task's networks cannot be ensembled
    elif type(task).combine is Task.combine:
        task.combine([])  # raises: this task's outputs are not averaged
    if several_processes(cfg):
        raise RecipeError("field `training.ensemble`: the members train one after another in one process")
    log_path = out / "train.log"
    members: list[tuple[Parts, dict, Prepared]] = []
    for k in range(cfg.ensemble):
        data = recipe.model_dump(mode="json")
        data["training"].update(ensemble=1, seed=cfg.seed + k,
                                time_limit=None if cfg.time_limit is None else cfg.time_limit / cfg.ensemble)
        append_line(log_path, f"ensemble member {k + 1} of {cfg.ensemble} (seed {cfg.seed + k}): "
                              f"{out / 'members' / str(k)}")
        members.append(_fit(Recipe.model_validate(data), {**tables, "test": None}, out / "members" / str(k),
                            resume, split_seed=cfg.seed, member=True))
        if k == 0:  # raises before the other members train when this network cannot be ensembled
            ensemble_net([members[0][0].net], members[0][0].task)
    first, _, prep = members[0]
    resolved = first.recipe.model_dump(mode="json")
    resolved["training"].update(ensemble=cfg.ensemble, seed=cfg.seed, time_limit=cfg.time_limit)
    parts = Parts(Recipe.model_validate(resolved), first.inputs, first.task,
                  ensemble_net([m[0].net for m in members], first.task))
    parts.net.eval()
    metrics: dict = {"training": {
        "seconds": round(sum(m[1]["training"]["seconds"] + m[1]["training"].get("refit", {}).get("seconds", 0)
                             for m in members), 2),
        "members": [{"seed": cfg.seed + k, **{key: m[1]["training"].get(key) for key in
                                              ("epochs", "best_epoch", "soup", "refit", "seconds")},
                     "validation": m[1].get("validation")} for k, m in enumerate(members)],
        "train_rows": len(prep.train), "validation_rows": len(prep.validation)}}
    cache_dir = cfg.feature_cache or os.environ.get("POLYMODAL_FEATURE_CACHE") or None
    with feature_cache_dir(cache_dir):
        if not cfg.refit and len(prep.validation):  # refit members have trained on the validation rows
            if parts.task.decoding_candidates(parts.net):
                metrics["training"]["decoding"] = choose_decoding(parts, prep.validation, cfg.batch_size, log_path)
            if parts.task.calibrates():
                metrics["training"]["calibrated"] = calibrate(parts, prep.validation, cfg.batch_size, log_path)
            metrics["validation"] = evaluate_parts(parts, prep.validation, cfg.batch_size)
        elif parts.task.calibrates() or parts.task.decoding_candidates(parts.net):
            append_line(log_path, "the ensemble keeps the first member's threshold or search (its members refit on "
                                  "the validation rows, so the ensemble's validation outputs cannot choose one)")
        if tables.get("test") is not None:
            rec = parts.recipe
            check_columns(tables["test"], parts.inputs, rec.target.column)
            test = read_inputs(tables["test"], parts.inputs, parts.task, rec.target.column, rec.data.on_bad_input,
                               show_progress=cfg.progress, allow_roots=rec.data.allow_root)
            metrics["test"] = evaluate_parts(parts, test, cfg.batch_size)
    summary = ", ".join(f"{k}: {v}" for k, v in (metrics.get("test") or metrics.get("validation") or {}).items()
                        if isinstance(v, float))
    append_line(log_path, f"ensemble of {cfg.ensemble} saved ({summary})")
    save_parts(parts, out, metrics)
    shutil.rmtree(out / "members", ignore_errors=True)
    return parts, metrics


def _fit(recipe: Recipe, tables: dict[str, Table | None], out: str | Path, resume: bool = False,
         split_seed: int | None = None, member: bool = False) -> tuple[Parts, dict, Prepared]:
    """One model. `member`: an ensemble's member, whose search the ensemble chooses (unless the members refit)."""
    cfg = recipe.training
    check_refit(recipe, tables)
    configure_process(cfg.threads, cfg.keep_memory)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(out)
    ckpt = claim_checkpoints(out / "checkpoints", recipe, resume, out / "train.log")
    prep: Prepared = prepare(recipe, tables, split_seed)
    parts = prep.parts
    plan = parts.task.training_plan(cfg, len(parts.inputs))
    train_dl = loader(prep.train, parts, cfg.batch_size, True, prep.group_input, cfg.seed, cfg.num_workers,
                      cfg.augment, cfg.prefetch, plan.steps_per_call, plan.modality_dropout, cfg.augment_with)
    val_dl = loader(prep.validation, parts, cfg.batch_size, False, prep.group_input, cfg.seed, cfg.num_workers,
                    prefetch=cfg.prefetch) \
        if len(prep.validation) else None
    module = LitMultimodal(parts.net, parts.task, cfg, total_steps=train_dl.batch_sampler.optimizer_steps * cfg.epochs,
                           unimodal_weight=recipe.model.unimodal_heads, plan=plan,
                           kinds={n: m.registry_name for n, m in parts.modalities.items()})
    robust = plan.alone_scores
    monitor = f"val_{'robust_' if robust else ''}{parts.task.monitor}" if val_dl is not None else "train_loss"
    mode = parts.task.monitor_mode if val_dl is not None else "min"
    best = BestWeights(monitor, mode, keep=cfg.soup if val_dl is not None and plan.keep_best else 1)
    ckpt_dir = out / "checkpoints"
    streams = RandomStreams(train_dl)
    callbacks = [best, streams, LastCheckpoint(ckpt_dir / "last.ckpt"), EpochLog(out / "train.log", cfg.time_limit)]
    if cfg.checkpoint_every:
        callbacks.append(StepCheckpoint(ckpt_dir / "last.ckpt", cfg.checkpoint_every, streams,
                                        plan.steps_per_call or 1))
    ema = EMAWeights(plan.ema_decay) if plan.ema_decay > 0 else None
    if ema is not None:
        callbacks.append(ema)
    if val_dl is not None and plan.early_stopping:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(monitor, patience=cfg.patience, mode=mode))
    trainer = L.Trainer(
        max_epochs=cfg.epochs, max_time=None if cfg.time_limit is None else {"seconds": cfg.time_limit},
        accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        # a batch may leave parameters unused (an input's "missing" embedding when no row lacks it, auxiliary
        # heads): plain DDP stops on those, so ddp looks for them
        strategy="ddp_find_unused_parameters_true" if cfg.strategy == "ddp" else cfg.strategy,
        precision=cfg.precision, callbacks=callbacks, logger=L.pytorch.loggers.CSVLogger(str(out), name="logs"),
        enable_progress_bar=cfg.progress, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=10, deterministic=False, default_root_dir=str(out), plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False)  # under DDP the training sampler shards each global batch itself
    gc.collect()
    gc.freeze()  # what setup made (data, model) stays out of the collector's scans while training allocates per batch
    started = time.perf_counter()
    cache_dir = cfg.feature_cache or os.environ.get("POLYMODAL_FEATURE_CACHE") or None
    try:
        with warnings.catch_warnings(), feature_cache_dir(cache_dir):
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch.*")
            warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
            if cfg.epochs > 0:
                trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt)
    finally:
        gc.unfreeze()
    train_seconds = time.perf_counter() - started
    rank = trainer.global_rank
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()  # what follows runs in one process: no metric syncing
    if rank != 0:  # under DDP the first process evaluates and saves the model directory
        return parts, {}, prep
    if ema is not None and ema.state is not None:
        parts.net.load_state_dict(ema.state)  # averaged weights where the task keeps them (or, without, the last)
    elif best.state is not None and plan.keep_best:
        parts.net.load_state_dict(best.state)
    parts.net.eval()
    metrics: dict = {"training": {"seconds": round(train_seconds, 2), "epochs": trainer.current_epoch,
                                  "best_epoch": best.best_epoch, "monitor": monitor,
                                  "train_rows": len(prep.train), "validation_rows": len(prep.validation),
                                  "skipped_rows": len(prep.train.skipped)}}
    with feature_cache_dir(cache_dir):
        if len(best.top) > 1 and ema is None:
            metrics["training"]["soup"] = greedy_soup(parts, prep.validation, best.top, cfg.batch_size,
                                                      out / "train.log")
        if parts.task.decoding_candidates(parts.net) and (cfg.refit or not member):
            metrics["training"]["decoding"] = choose_decoding(parts, prep.validation, cfg.batch_size, out / "train.log")
        if parts.task.calibrates():
            metrics["training"]["calibrated"] = calibrate(parts, prep.validation, cfg.batch_size, out / "train.log")
        if len(prep.validation):
            metrics["validation"] = evaluate_parts(parts, prep.validation, cfg.batch_size)
        if cfg.refit:
            left = None if cfg.time_limit is None else cfg.time_limit - (time.perf_counter() - started)
            metrics["training"]["refit"] = refit(parts, prep, plan, metrics["training"], out, left)
        if prep.test is not None:
            metrics["test"] = evaluate_parts(parts, prep.test, cfg.batch_size)
        caches = feature_cache_counts(parts.net)
    gap = score_gap(parts.task.monitor, metrics.get("validation"), metrics.get("test"))
    if gap:
        log.warning(gap)
        append_line(out / "train.log", "warning: " + gap)
        metrics["training"]["warnings"] = [gap]
    if caches:
        metrics["training"]["frozen_features"] = caches
        append_line(out / "train.log", "frozen features: " + "; ".join(
            f"{name}: {c['computed']} computed, {c['read']} read from {c['folder'] or 'nowhere (no feature_cache)'}"
            for name, c in caches.items()))
    save_parts(parts, out, metrics)
    return parts, metrics, prep
