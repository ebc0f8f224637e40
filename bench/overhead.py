"""Framework overhead: segbench's training step vs a bare PyTorch loop.

Both loops train the same network (same config, same initial weights) on the
same in-memory batches with the same optimizer, in this one process. segbench's
loop is the real thing: the LightningModule, Trainer, callbacks (checkpointing,
MetricsJSON, LR monitor) and CSV logger that train.py composes; only the
progress bar is off, as in a non-interactive job. Per-step time is measured
between consecutive batch starts (so it includes everything the framework does
per step) over the steady-state steps of each repeat; the two loops alternate
so drift in machine load hits both.

    python -m bench.overhead [--repeats 5] [--steps 30] [model=unet backbone=mobilenet ...]
"""

import argparse
import copy
import statistics
import time

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.common import compose, machine, save


class StepTimer(L.Callback):
    """Records the wall time between consecutive training-batch starts."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


def make_batches(cfg, steps: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    b, (h, w) = cfg.data.batch_size, cfg.data.image_size
    return [
        {
            "image": torch.randn(b, 3, h, w, generator=g),
            "mask": torch.randint(0, cfg.data.num_classes, (b, h, w), generator=g),
        }
        for _ in range(steps)
    ]


def bare_loop(net, loss_fn, optimizer, batches) -> list[float]:
    net.train()
    starts = []
    for batch in batches:
        starts.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(batch["image"]), batch["mask"])
        loss.backward()
        optimizer.step()
    starts.append(time.perf_counter())
    return [b - a for a, b in zip(starts, starts[1:], strict=False)]


def segbench_loop(cfg, module, batches, tmp_index: int) -> list[float]:
    from segbench.training.checkpoint_io import AtomicCheckpointIO

    timer = StepTimer()
    callbacks = [
        instantiate(c) for name, c in cfg.callbacks.items() if c and name != "rich_progress_bar"
    ]
    loggers = [instantiate(c) for c in cfg.logger.values() if c]
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, timer],
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=1,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=f"{cfg.paths.output_dir}/{tmp_index}",
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.step_times()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps dropped from each repeat")
    args, overrides = parser.parse_known_args()
    cfg = compose("train", ["logger=csv", "trainer.accelerator=cpu", "scheduler=none", *overrides])

    from segbench.training.module import SegmentationModule

    torch.manual_seed(0)
    template = SegmentationModule(
        net=OmegaConf.to_container(cfg.model, resolve=True),
        data={
            "num_classes": cfg.data.num_classes,
            "ignore_index": cfg.data.ignore_index,
            "class_names": list(cfg.data.class_names),
            "image_size": list(cfg.data.image_size),
            "mean": list(cfg.data.mean),
            "std": list(cfg.data.std),
        },
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
    )
    batches = make_batches(cfg, args.steps)
    bare, framework = [], []
    for r in range(args.repeats):
        net = copy.deepcopy(template.net)
        bare.append(
            statistics.median(
                bare_loop(
                    net,
                    instantiate(cfg.loss),
                    instantiate(cfg.optimizer)(net.parameters()),
                    batches,
                )[args.warmup :]
            )
        )
        framework.append(
            statistics.median(
                segbench_loop(cfg, copy.deepcopy(template), batches, r)[args.warmup :]
            )
        )
        print(
            f"repeat {r}: bare {bare[-1] * 1e3:.1f} ms/step, "
            f"segbench {framework[-1] * 1e3:.1f} ms/step, ratio {framework[-1] / bare[-1]:.3f}"
        )
    ratios = [f / b for f, b in zip(framework, bare, strict=True)]
    result = {
        "machine": machine(),
        "config": {
            "model": cfg.model._target_,
            "backbone": OmegaConf.to_container(cfg.backbone),
            "batch_size": cfg.data.batch_size,
            "image_size": list(cfg.data.image_size),
            "optimizer": cfg.optimizer._target_,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
        "bare_ms_per_step": [t * 1e3 for t in bare],
        "segbench_ms_per_step": [t * 1e3 for t in framework],
        "ratio": {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)},
    }
    print(
        f"ratio segbench/bare: min {min(ratios):.3f} median {statistics.median(ratios):.3f} "
        f"max {max(ratios):.3f} (target <= 1.03)"
    )
    save("overhead", result)


if __name__ == "__main__":
    main()
