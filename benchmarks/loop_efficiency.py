"""Loop efficiency: the wall time of one training epoch through polymodal's `fit` path (Lightning loop, sampler,
collation, modality dropout, logging) against pure forward + backward + optimizer time on the same batches already
collated in memory. 1.0 is the limit.

    .venv/bin/python benchmarks/loop_efficiency.py [--dataset easy-vqa|avdigits|avdigits-hard] [--epochs 5]
                                                     [--prefetch N] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import lightning as L
import torch

from fusion_zoo import dataset  # noqa: E402  (same folder)


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.times.append(time.perf_counter() - self._t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="easy-vqa", choices=["easy-vqa", "avdigits", "avdigits-hard"])
    ap.add_argument("--epochs", type=int, default=5, help="rounds of one fit epoch and one pure epoch")
    ap.add_argument("--fusion", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override, as `polymodal fit --set` (training.batch_size=160)")
    ap.add_argument("--prefetch", type=int, default=None, help="batches collated ahead in a thread (recipe default: "
                    "0, off)")
    args = ap.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from polymodal.config import build_recipe
    from polymodal.data import as_table
    from polymodal.training.fit import loader
    from polymodal.training.module import LitMultimodal
    from polymodal.training.prepare import prepare
    from polymodal.training.runtime import configure_process

    raw, _ = dataset(args.dataset)
    if args.fusion:
        raw["model"]["fusion"] = {"method": args.fusion}
    raw["training"].update({"progress": False, "epochs": args.epochs})
    if args.prefetch is not None:
        raw["training"]["prefetch"] = args.prefetch
    recipe = build_recipe(raw, args.set or None)
    cfg = recipe.training
    configure_process(cfg.threads, cfg.keep_memory)
    prep = prepare(recipe, {"train": as_table(recipe.data.train)})
    parts = prep.parts
    plan = parts.task.training_plan(cfg, len(parts.inputs))
    dl = loader(prep.train, parts, cfg.batch_size, True, prep.group_input, cfg.seed, cfg.num_workers, cfg.augment,
                cfg.prefetch, plan.steps_per_call, plan.modality_dropout)
    batches = list(loader(prep.train, parts, cfg.batch_size, True, prep.group_input, cfg.seed))  # collated once
    timer = EpochTimer()
    module = LitMultimodal(parts.net, parts.task, cfg, len(batches) * args.epochs, recipe.model.unimodal_heads)
    logs = tempfile.mkdtemp(prefix="loop-efficiency-")
    net = parts.net
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr)
    pure = []
    # interleaved (one fit epoch, one pure epoch, ...) so that a change in the machine's speed affects both sides
    for _ in range(args.epochs):
        # as fit's Trainer: a CSV logger written every 10 steps (no progress bar: a terminal's refresh is not the
        # loop); a new Trainer for each epoch, its setup outside the timed epoch
        trainer = L.Trainer(max_epochs=1, callbacks=[timer], logger=L.pytorch.loggers.CSVLogger(logs),
                            log_every_n_steps=10, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, dl)
        net.train()
        start = time.perf_counter()
        for inputs, target in batches:
            loss = parts.task.loss(net(inputs), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        pure.append(time.perf_counter() - start)
    fit_epoch, pure_epoch = min(timer.times), min(pure)
    rows = len(prep.train)
    print(f"{args.dataset} ({recipe.model.fusion['method']}, batch {cfg.batch_size}, "
          f"{plan.steps_per_call} steps per call, prefetch {cfg.prefetch}): {rows} rows, "
          f"{len(batches)} batches; fit epochs {', '.join(f'{t:.2f}' for t in timer.times)} s, pure epochs "
          f"{', '.join(f'{t:.2f}' for t in pure)} s")
    print("| measure | seconds per epoch | rows/s |")
    print("|---|---|---|")
    print(f"| fit (Lightning loop, sampler, collation) | {fit_epoch:.2f} | {rows / fit_epoch:.0f} |")
    print(f"| pure forward+backward+step on collated batches | {pure_epoch:.2f} | {rows / pure_epoch:.0f} |")
    print(f"| loop efficiency (pure / fit, fastest epoch of each) | {pure_epoch / fit_epoch:.3f} | |")
    ratios = sorted(p / f for p, f in zip(pure, timer.times))
    listed = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"| per-round ratios (median) | {statistics.median(ratios):.3f} ({listed}) | |")


if __name__ == "__main__":
    main()
