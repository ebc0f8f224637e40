"""Training throughput: images/s, and how much of each step waits for data.

Three figures for one model under the CamVid recipe (``experiment=camvid_recipe``):

- ``loader``: images/s of the training DataLoader alone (frames from ``data.cache``,
  augmentation, normalisation and collation in the workers);
- ``step``: images/s of the training step alone, on one batch already on the device
  (forward, loss, backward, optimizer; the recipe's precision and memory format): the
  ceiling;
- ``train``: images/s of Lightning's real loop (``SegmentationModule``, the recipe's loss,
  optimizer and schedule), each step split into *waiting for data* (from the end of one
  step to the start of the next: fetching the batch and copying it to the device) and
  *compute* (``on_train_batch_start`` to ``on_train_batch_end``). On CUDA both ends are
  timed after ``torch.cuda.synchronize()``, so GPU work is charged to the step that
  queued it (this removes the overlap of the next fetch with the GPU: the figure is
  at most what training without the synchronisation gets).

The run is GPU-bound (step-bound) when ``train`` is close to ``step`` and the data wait
is a small share. Target on one H100: U-Net/MobileNetV2 at 360x480 >= 600 images/s.

    python -m bench.throughput                  # CPU, U-Net/MobileNetV2, 360x480, batch 16
    python -m bench.throughput --gpu            # trainer=gpu: bf16, channels_last, 8 workers
    python -m bench.throughput --gpu --steps 300 model=pspnet   # any train.py override
"""

import argparse
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.common import CAMVID, compose, machine, save
from segbench.files import write_json


class StepTimer(L.Callback):
    """Per-step data wait and compute time of Lightning's training loop (after ``warmup``)."""

    def __init__(self, warmup: int, sync: bool) -> None:
        self.warmup, self.sync = warmup, sync
        self.wait: list[float] = []
        self.compute: list[float] = []
        self.images: list[int] = []
        self._start = self._end = None

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = self._now()
        if self._end is not None and trainer.global_step >= self.warmup:
            self.wait.append(self._start - self._end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = self._now()
        if trainer.global_step > self.warmup:  # global_step counts the step just taken
            self.compute.append(self._end - self._start)
            self.images.append(len(batch["image"]))


def loader_rate(datamodule, steps: int, warmup: int) -> float:
    """Images/s of the training loader alone (workers already started when timing begins)."""
    seen, start = 0, None
    for i, batch in enumerate(_cycle(datamodule.train_dataloader())):
        if i == warmup:
            start = time.perf_counter()
        elif i > warmup:
            seen += len(batch["image"])
        if i == warmup + steps:
            break
    return seen / (time.perf_counter() - start)


def _cycle(loader):
    while True:
        yield from loader


def step_rate(module, batch: dict, cfg, steps: int, warmup: int, device: torch.device) -> float:
    """Images/s of the bare training step on one device-resident batch."""
    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))  # as the trainer sets it
    net = module.net.to(device).train()
    channels_last = instantiate(cfg.callbacks.channels_last)
    fake = argparse.Namespace(
        strategy=argparse.Namespace(root_device=device), precision=str(cfg.trainer.precision)
    )
    fmt = torch.channels_last if channels_last.wanted(fake) else torch.contiguous_format
    net.to(memory_format=fmt)
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(fake.precision.split("-")[0])
    optimizer = module.optimizer_factory([p for p in net.parameters() if p.requires_grad])
    x = batch["image"].to(device).contiguous(memory_format=fmt)
    y = batch["mask"].to(device)
    loss_fn = module.loss.to(device)
    times = []
    for _ in range(warmup + steps):
        start = _sync_now(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        times.append(_sync_now(device) - start)
    return len(x) / float(np.median(times[warmup:]))


def train_device(cfg) -> torch.device:
    """The device ``cfg.trainer`` trains on (one device)."""
    accelerator = cfg.trainer.accelerator
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu")


def _sync_now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def train_rate(cfg, datamodule, module, steps: int, warmup: int) -> dict:
    """Lightning's training loop for ``warmup + steps`` steps, timed by :class:`StepTimer`."""
    timer = StepTimer(warmup, sync=train_device(cfg).type == "cuda")
    trainer = instantiate(
        cfg.trainer,
        callbacks=[timer, instantiate(cfg.callbacks.channels_last)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
    wait, compute = np.array(timer.wait), np.array(timer.compute)
    n = min(len(wait), len(compute))
    total = float(wait[:n].sum() + compute[:n].sum())
    return {
        "images_per_s": sum(timer.images[:n]) / total,
        "data_wait_share": float(wait[:n].sum()) / total,
        "median_wait_ms": 1000 * float(np.median(wait[:n])),
        "median_compute_ms": 1000 * float(np.median(compute[:n])),
        "max_wait_ms": 1000 * float(wait[:n].max()),
        "steps_timed": n,
        "device": str(trainer.strategy.root_device),
        "precision": str(trainer.precision),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(CAMVID))
    parser.add_argument("--gpu", action="store_true", help="trainer=gpu (bf16, channels_last)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (CPU 8, GPU 200)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (CPU 2, GPU 30)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="default: the trainer's")
    parser.add_argument(
        "--out", default=None, help="result file (default bench/out/throughput.json)"
    )
    args, extra = parser.parse_known_args()  # the rest: train.py overrides
    steps = args.steps or (200 if args.gpu else 8)
    warmup = args.warmup if args.warmup is not None else (30 if args.gpu else 2)
    overrides = [
        "experiment=camvid_recipe",
        f"data.root={args.data_root}",
        "model=unet",
        "backbone=mobilenet",
        f"data.batch_size={args.batch}",
        f"loss.min_kept={args.batch * 360 * 480 // 16}",
        "trainer=gpu" if args.gpu else "trainer=cpu",
        *([f"data.num_workers={args.workers}"] if args.workers is not None else []),
        *extra,
    ]
    cfg = compose("train", overrides)
    L.seed_everything(0, workers=True)
    figures = measure(cfg, steps, warmup)
    print(
        f"loader {figures['loader_images_per_s']:.1f} images/s | step {figures['step_images_per_s']:.1f}"
        f" images/s | train {figures['train']['images_per_s']:.1f} images/s on "
        f"{figures['train']['device']} ({figures['train']['precision']}); data wait "
        f"{figures['train']['data_wait_share']:.1%} of step time -> bottleneck: "
        f"{figures['bottleneck']}"
    )
    result = {"machine": machine(), "overrides": overrides, **figures}
    if args.out:
        write_json(Path(args.out), result)
    else:
        save("throughput", result)


def measure(cfg, steps: int, warmup: int) -> dict:
    """The three figures (see the module docstring) for a composed train config."""
    from segbench.training.losses import build_loss
    from segbench.training.module import SegmentationModule

    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment.train))

    def module():
        return SegmentationModule(
            net=OmegaConf.to_container(cfg.model, resolve=True),
            data=datamodule.meta,
            loss=build_loss(cfg.loss, datamodule),
            optimizer=instantiate(cfg.optimizer),
            scheduler=instantiate(cfg.scheduler),
        )

    loader = loader_rate(datamodule, steps, warmup)
    batch = next(iter(datamodule.train_dataloader()))
    step = step_rate(module(), batch, cfg, steps, warmup, train_device(cfg))
    train = train_rate(cfg, datamodule, module(), steps, warmup)
    waiting = train["data_wait_share"] > 0.1
    return {
        "model": cfg.model._target_,
        "image_size": list(cfg.augment.get("size") or cfg.data.image_size),
        "batch": cfg.data.batch_size,
        "num_workers": cfg.data.num_workers,
        "cache": cfg.data.cache,
        "steps": steps,
        "warmup": warmup,
        "loader_images_per_s": loader,
        "step_images_per_s": step,
        "train": train,
        "train_share_of_step_ceiling": train["images_per_s"] / step,
        "bottleneck": "data (loader)" if waiting else "step (compute)",
    }


if __name__ == "__main__":
    main()
