"""Text-to-image on easy-VQA (issue 6's goals): a conditional diffusion model trained with `polymodal fit` on images
captioned from their questions ("a red circle"), judged by a classifier trained on real images (attribute accuracy
>= 95%), with generation time per 64x64 image at 25 steps (batch of 16, <= 1 s on 2 CPU cores) and training time.

    python benchmarks/text_to_image.py [--epochs 30] [--minutes 25] [--eval-rows 240] [--out runs/bench-t2i]
                                       [--samplers ddpm] [--guidances 2,3,4] [--model DIR] [--snr-gamma G]

Sampler and guidance are picked on 96 training captions; --model evaluates an already trained model.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import lightning as L

import polymodal as pm
from polymodal.demo import easy_vqa_caption_tables
from polymodal.generation import image_grid


class TimeLimit(L.Callback):
    """Stop after the epoch in which the time budget runs out (the budget covers training only); keep the averaged
    weights of the first epoch that ends after `snapshot_minutes`, to report what shorter training reaches."""

    def __init__(self, minutes: float, snapshot_minutes: float, snapshot: Path) -> None:
        self.limit, self.snap_at, self.snapshot, self.start = minutes * 60, snapshot_minutes * 60, snapshot, None
        self.snap_info: dict | None = None

    def on_train_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"epoch {trainer.current_epoch}: {elapsed:.0f} s, train_loss "
              f"{float(trainer.callback_metrics.get('train_loss', float('nan'))):.4f}", flush=True)
        if self.snap_info is None and elapsed > self.snap_at:
            from safetensors.torch import save_file

            ema = next((c for c in trainer.callbacks if hasattr(c, "decay")), None)
            state = ema.state if ema is not None and ema.state is not None else module.net.state_dict()
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(self.snapshot))
            self.snap_info = {"epochs": trainer.current_epoch + 1, "seconds": round(elapsed, 1)}
        if elapsed > self.limit:
            trainer.should_stop = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--snapshot-minutes", type=float, default=10.0)
    ap.add_argument("--eval-rows", type=int, default=240)
    ap.add_argument("--guidances", default="2,3,4", help="guidance scales tried on 96 training captions; the "
                    "best is used on the test rows")
    ap.add_argument("--samplers", default="ddpm", help="samplers tried (25 steps) with each guidance")
    ap.add_argument("--snr-gamma", type=float, default=None, help="Min-SNR-gamma loss weighting (default: off)")
    ap.add_argument("--model", type=Path, default=None, help="evaluate this trained model instead of training one")
    ap.add_argument("--contrastive", default=None, help="a contrastive caption/image model for the CLIP-style score")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-t2i"))
    ap.add_argument("--grid", type=Path, default=None)
    args = ap.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    tables = easy_vqa_caption_tables()
    common = {"data": {"train": str(tables["train"]), "test": str(tables["test"])}}

    clf_dir = args.out / "classifier"
    if not (clf_dir / "config.json").is_file():
        clf = pm.fit({**common, "inputs": [{"name": "image", "modality": "image", "options": {"size": 64}}],
                      "target": {"column": "caption"}, "model": {"dim": 64},
                      "training": {"epochs": 8, "batch_size": 64, "progress": False}}, out=clf_dir)
        print(f"classifier (image -> caption, 24 classes): real test accuracy {clf.metrics['test']['accuracy']:.4f}",
              flush=True)

    recipe = {**common,
              "inputs": [{"name": "caption", "modality": "text", "encoder": {"type": "text_bow"}},
                         {"name": "image", "modality": "image", "options": {"size": 64}}],
              "target": {"task": "text_to_image",
                         "options": {"block_channels": [32, 64, 128], "patch": 2, "ema_decay": 0.995,
                                     "snr_gamma": args.snr_gamma}},
              "model": {"dim": 64},
              "training": {"epochs": args.epochs, "batch_size": 32, "lr": 0.001, "progress": False,
                           "schedule": "cosine"}}
    limit = TimeLimit(args.minutes, args.snapshot_minutes, args.out / "snapshot.safetensors")
    if args.model is not None:
        model, train_wall = pm.load(args.model), None
    else:
        original = L.Trainer.__init__

        def with_limit(self, *a, **kw):  # add the time budget to the Trainer polymodal builds
            kw["callbacks"] = [*kw.get("callbacks", []), limit]
            original(self, *a, **kw)

        L.Trainer.__init__ = with_limit
        try:
            started = time.perf_counter()
            model = pm.fit(recipe, out=args.out / "t2i")
            train_wall = time.perf_counter() - started
        finally:
            L.Trainer.__init__ = original
    t = model.metrics["training"]
    print(f"text-to-image: {t['epochs']} epochs, {t['seconds']:.0f} s of training", flush=True)

    prompts = [f"a {c} {s}" for c in ("red", "blue", "green", "yellow") for s in ("circle", "rectangle", "triangle")]
    sweep = {}
    with open(tables["train"]) as f:  # the first 96 training rows (their denoising loss is computed too: keep it small)
        train_rows = [json.loads(line) for _, line in zip(range(96), f)]
    for sampler in args.samplers.split(","):  # chosen on training captions, never on the test rows
        for g in (float(x) for x in args.guidances.split(",")):
            r = model.evaluate(train_rows, classifier=clf_dir, guidance=g, sampler=sampler)
            sweep[f"{sampler} {g}"] = r["generation"]["classifier"]["attribute_accuracy"]
            print(f"{sampler}, guidance {g}: attribute accuracy {sweep[f'{sampler} {g}']:.4f} on 96 training "
                  "captions", flush=True)
    sampler, guidance = max(sweep, key=sweep.get).split()
    guidance = float(guidance)
    started = time.perf_counter()
    images = model.generate(prompts[:4], n=4, steps=25, seed=0, sampler=sampler, guidance=guidance)  # a batch of 16
    per_image = (time.perf_counter() - started) / len(images)
    print(f"generation: {per_image:.3f} s per 64x64 image (25 {sampler} steps, guidance {guidance}, batch of 16)",
          flush=True)
    report = model.evaluate(tables["test"], classifier=clf_dir, contrastive=args.contrastive, limit=args.eval_rows,
                            guidance=guidance, sampler=sampler, out=args.out / "eval")
    report["sweep_on_train"] = sweep
    if args.grid:
        image_grid(model.generate(prompts, n=4, steps=25, guidance=guidance, seed=1, sampler=sampler),
                   cols=4).save(args.grid)
    result = {"train_seconds": t["seconds"], "train_wall_seconds": train_wall and round(train_wall, 1),
              "epochs": t["epochs"],
              "seconds_per_image": round(per_image, 3), **report}
    if limit.snap_info is not None:  # the same evaluation for the weights after `--snapshot-minutes`
        import shutil

        snap_dir = args.out / "t2i-snapshot"
        shutil.rmtree(snap_dir, ignore_errors=True)
        shutil.copytree(args.out / "t2i", snap_dir, ignore=shutil.ignore_patterns("checkpoints", "logs"))
        shutil.copy(args.out / "snapshot.safetensors", snap_dir / "model.safetensors")
        early = pm.load(snap_dir).evaluate(tables["test"], classifier=clf_dir, contrastive=args.contrastive,
                                           limit=args.eval_rows, guidance=guidance, sampler=sampler,
                                           out=args.out / "eval-snapshot")
        result["snapshot"] = {**limit.snap_info, **early}
    print(json.dumps(result, indent=2))
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
