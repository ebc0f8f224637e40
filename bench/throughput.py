"""Training throughput: images/s, and how much of each step waits for data, CPU and GPU.

Three figures for one model under the CamVid recipe (``experiment=camvid_recipe``):

- ``loader``: images/s of the training DataLoader alone (frames from ``data.cache``,
  augmentation, normalisation and collation in the workers);
- ``step``: images/s of the training step alone, on one batch already on the device
  (forward, loss, backward, optimizer; the recipe's precision and memory format,
  ``callbacks.compile`` if enabled): the ceiling. On CUDA it also reports the CPU's share
  of the step: the time to queue one step's kernels after a synchronisation (nothing
  queued ahead, so no launch waits) over the step's time. Near 1 the step is bound by
  the CPU (Python and kernel launches), not the GPU;
- ``train``: images/s of Lightning's real loop (``SegmentationModule``, the recipe's loss,
  optimizer and schedule), over wall-clock time with no synchronisation inside the timed
  steps, so the CPU may queue ahead as in training. The *data wait* is the device's idle
  time between the end of one step's work and the start of the next (fetching the batch
  and copying it in): on CUDA from events recorded at ``on_train_batch_start`` /
  ``on_train_batch_end`` and read once at the end, on the CPU from the host clock.

The run is GPU-bound when ``train`` is close to ``step``, the data wait is a small share
and the CPU share of the step is well under 1. Target on one H100: U-Net/MobileNetV2 at
360x480 >= 600 images/s.

    python -m bench.throughput                  # CPU, U-Net/MobileNetV2, 360x480, batch 16
    python -m bench.throughput --gpu            # trainer=gpu: bf16, channels_last, 8 workers
    python -m bench.throughput --gpu --batch 32 --workers 14 callbacks.compile.enabled=true
    python -m bench.throughput --gpu --steps 300 model=pspnet   # any train.py override
    python -m bench.throughput --loader-only --steps 40 data.uint8_batches=true
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
    """Wall time, and the device's idle gaps between steps, of Lightning's training loop.

    Steps before ``warmup`` are not timed. The window opens (synchronised) at the start of
    step ``warmup`` and closes (synchronised) at the end of training; inside it nothing
    waits for the device. On CUDA, events on the current stream mark each step's start
    and end; the gap between one step's end and the next one's start is time the GPU had
    no work of the loop (the batch was not there yet).
    """

    def __init__(self, warmup: int, cuda: bool) -> None:
        self.warmup, self.cuda = warmup, cuda
        self.device = torch.device("cuda" if cuda else "cpu")
        self.starts: list = []
        self.ends: list = []
        self.images: list[int] = []
        self.window = [None, None]

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step < self.warmup:
            return
        if self.window[0] is None:
            self.window[0] = _sync_now(self.device)
        self.starts.append(self._mark())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if len(self.ends) < len(self.starts):
            self.ends.append(self._mark())
            self.images.append(len(batch["image"]))

    def on_train_end(self, trainer, pl_module) -> None:
        self.window[1] = _sync_now(self.device)

    def result(self) -> dict:
        """images/s over the window; per-step device time and idle gaps (ms)."""

        def ms(a, b) -> float:
            return a.elapsed_time(b) if self.cuda else 1000 * (b - a)

        steps = [ms(a, b) for a, b in zip(self.starts, self.ends, strict=True)]
        gaps = [ms(a, b) for a, b in zip(self.ends[:-1], self.starts[1:], strict=True)]
        busy, idle = sum(steps[1:]), sum(gaps)  # each gap precedes steps[1:]
        return {
            "images_per_s": sum(self.images) / (self.window[1] - self.window[0]),
            "data_wait_share": idle / (busy + idle) if gaps else 0.0,
            "median_wait_ms": float(np.median(gaps)) if gaps else 0.0,
            "max_wait_ms": max(gaps, default=0.0),
            "median_step_ms": float(np.median(steps)),
            "steps_timed": len(steps),
        }


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


def step_rate(module, batch: dict, cfg, steps: int, warmup: int, device: torch.device) -> dict:
    """Images/s of the bare training step on one device-resident batch, and its CPU share."""
    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))  # as the trainer sets it
    net = module.to(device).net.train()
    channels_last = instantiate(cfg.callbacks.channels_last)
    fake = argparse.Namespace(
        strategy=argparse.Namespace(root_device=device), precision=str(cfg.trainer.precision)
    )
    fmt = torch.channels_last if channels_last.wanted(fake) else torch.contiguous_format
    net.to(memory_format=fmt)
    if instantiate(cfg.callbacks.compile).wanted(fake):
        net = torch.compile(net, mode=cfg.callbacks.compile.mode)
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(fake.precision.split("-")[0])
    optimizer = module.optimizer_factory([p for p in net.parameters() if p.requires_grad])
    # a uint8 batch (data.uint8_batches) is converted as in the training loop
    batch = module.on_after_batch_transfer({k: v.to(device) for k, v in batch.items()}, 0)
    x = batch["image"].contiguous(memory_format=fmt)
    y = batch["mask"]
    loss_fn = module.loss.to(device)
    queued, times = [], []
    for _ in range(warmup + steps):
        start = _sync_now(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        queued.append(time.perf_counter() - start)
        times.append(_sync_now(device) - start)
    step, queue = float(np.median(times[warmup:])), float(np.median(queued[warmup:]))
    return {
        "images_per_s": len(x) / step,
        "median_step_ms": 1000 * step,
        "median_queue_ms": 1000 * queue,
        "cpu_share": queue / step,
    }


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
    timer = StepTimer(warmup, cuda=train_device(cfg).type == "cuda")
    trainer = instantiate(
        cfg.trainer,
        callbacks=[
            timer,
            instantiate(cfg.callbacks.channels_last),
            instantiate(cfg.callbacks.compile),
        ],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
    return {
        **timer.result(),
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
    parser.add_argument("--loader-only", action="store_true", help="time the loader alone")
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
    figures = measure(cfg, steps, warmup, args.loader_only)
    if args.loader_only:
        print(f"loader {figures['loader_images_per_s']:.1f} images/s")
    else:
        train, step = figures["train"], figures["step"]
        print(
            f"loader {figures['loader_images_per_s']:.1f} images/s | step {step['images_per_s']:.1f}"
            f" images/s (CPU share {step['cpu_share']:.0%}) | train {train['images_per_s']:.1f}"
            f" images/s on {train['device']} ({train['precision']}); data wait "
            f"{train['data_wait_share']:.1%} of the loop's device time -> bottleneck: "
            f"{figures['bottleneck']}"
        )
    result = {"machine": machine(), "overrides": overrides, **figures}
    if args.out:
        write_json(Path(args.out), result)
    else:
        save("throughput", result)


def measure(cfg, steps: int, warmup: int, loader_only: bool = False) -> dict:
    """The three figures (see the module docstring) for a composed train config; the
    loader's alone with ``loader_only``."""
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

    figures = {
        "model": cfg.model._target_,
        "image_size": list(cfg.augment.get("size") or cfg.data.image_size),
        "batch": cfg.data.batch_size,
        "num_workers": cfg.data.num_workers,
        "cache": cfg.data.cache,
        "uint8_batches": cfg.data.uint8_batches,
        "steps": steps,
        "warmup": warmup,
        "loader_images_per_s": loader_rate(datamodule, steps, warmup),
    }
    if loader_only:
        return figures
    batch = next(iter(datamodule.train_dataloader()))
    step = step_rate(module(), batch, cfg, steps, warmup, train_device(cfg))
    train = train_rate(cfg, datamodule, module(), steps, warmup)
    return {
        **figures,
        "compile": bool(instantiate(cfg.callbacks.compile).enabled),
        "step": step,
        "train": train,
        "train_share_of_step_ceiling": train["images_per_s"] / step["images_per_s"],
        "bottleneck": bottleneck(train, step),
    }


def bottleneck(train: dict, step: dict) -> str:
    """What limits training: data (over 10 % of the loop's device time idle between steps),
    else the CPU (queuing a step takes over 90 % of the step: Python and launches), else
    the step's compute."""
    if train["data_wait_share"] > 0.1:
        return "data (loader)"
    if step["cpu_share"] > 0.9 and train["device"].startswith("cuda"):
        return "CPU (queuing the step)"
    return "step (compute)"


if __name__ == "__main__":
    main()
