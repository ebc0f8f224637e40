"""Callbacks that turn a training run into files a report can read, and keep them true.

- :class:`MetricsJSON`: ``metrics.json`` (best score, per-class IoU, the per-epoch history).
- :class:`LastCheckpoint`: ``last.ckpt`` at the end of every epoch, improving or not.
- :class:`StopOnNonFinite`: a diverged run stops at its first non-finite loss, before
  any checkpoint of the broken weights is written.
"""

import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from segbench.errors import SegbenchError
from segbench.files import write_json
from segbench.profiling.params import count_params
from segbench.runtimes.latency import device_tags
from segbench.training.distributed import host_reads_are_free

log = logging.getLogger(__name__)


class MetricsJSON(L.Callback):
    """Writes ``metrics.json``: best score, its per-class IoU, the curve, size, time, budget.

    A row of the history is written at the end of every validated training epoch,
    when that epoch's ``train/loss_epoch`` exists too (Lightning computes it after
    validation) and before the epoch's checkpoints are written, so they carry the
    history up to their own epoch; the file is written again once they exist (next
    epoch's start, the end, or an exception such as a divergence), naming them.
    Rewritten atomically each time, so a killed run still leaves its history; a
    resumed run continues the history from the checkpoint. Each history row holds
    the epoch, optimizer step, training images seen so far (all processes) and wall
    time since the start of fitting, beside the logged ``train/`` and ``val/``
    metrics; the file states the device, the number of devices and the precision
    they ran at.

    Args:
        path: Output file.
        monitor: Metric that picks the best epoch (higher is better).
    """

    def __init__(self, path: str, monitor: str = "val/miou") -> None:
        self.path = Path(path)
        self.monitor = monitor
        self.history: list[dict] = []
        self.best: dict | None = None
        self.wall_time_s = 0.0
        self.images_seen = 0
        self.device: dict = {}
        self._start = time.monotonic()
        self._validated = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic() - self.wall_time_s
        root = trainer.strategy.root_device
        self.device = {
            "device": device_tags(root)["device"],
            "device_type": root.type,
            "devices": trainer.world_size,
            "precision": str(trainer.precision),
        }

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        self.images_seen += len(images) * trainer.world_size

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.monitor in trainer.callback_metrics:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._validated:
            return
        self._validated = False
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "images_seen": self.images_seen,
            "wall_time_s": round(time.monotonic() - self._start, 2),
        }
        row.update(
            {
                k: _number(v)
                for k, v in trainer.callback_metrics.items()
                if k.startswith(("val/", "train/")) and not k.endswith("_step")
            }
        )
        self.history = [r for r in self.history if r["epoch"] != row["epoch"]] + [row]
        value = row[self.monitor]
        if self.best is None or (not math.isnan(value) and value > self.best[self.monitor]):
            self.best = row
        if trainer.is_global_zero:
            # trainer.current_epoch counts completed epochs: this one is not yet
            self.write(trainer, pl_module, epochs=trainer.current_epoch + 1)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning saves best.ckpt after on_train_epoch_end: name it now it exists.
        self.on_fit_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, err) -> None:
        try:
            self.on_fit_end(trainer, pl_module)
        except OSError as write_err:  # e.g. the disk that failed the run: keep its error
            log.warning("metrics.json not updated: %s", write_err)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.best is not None:
            self.write(trainer, pl_module, epochs=trainer.current_epoch)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, epochs: int) -> None:
        self.wall_time_s = time.monotonic() - self._start
        params = count_params(pl_module)
        best = self.best or {}
        ckpt, last = trainer.checkpoint_callback, last_checkpoint(trainer)
        out = {
            f"best_{self.monitor.replace('/', '_')}": best.get(self.monitor),
            "monitor": self.monitor,
            "best_epoch": best.get("epoch"),
            "best": {k: v for k, v in best.items() if k.startswith("val/")},
            "per_class_iou": {
                k.split("/iou_", 1)[1]: v for k, v in best.items() if k.startswith("val/iou_")
            },
            # epochs trained; with check_val_every_n_epoch > 1 there are fewer validations
            "epochs": epochs,
            "validations": len(self.history),
            "params": params["total"],
            "trainable_params": params["trainable"],
            "steps": trainer.global_step,
            "images_seen": self.images_seen,
            "wall_time_s": round(self.wall_time_s, 2),
            **self.device,
            "best_checkpoint": getattr(ckpt, "best_model_path", None) or None,
            "last_checkpoint": str(last) if last else None,
            "history": self.history,
        }
        write_json(self.path, out, allow_nan=True)

    def state_dict(self) -> dict:
        return {
            "history": self.history,
            "best": self.best,
            "wall_time_s": self.wall_time_s,
            "images_seen": self.images_seen,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict["history"]
        self.best = state_dict["best"]
        self.wall_time_s = state_dict["wall_time_s"]
        self.images_seen = state_dict.get("images_seen", 0)  # checkpoints before it was kept


def _number(value) -> float:
    return float(value.item() if hasattr(value, "item") else value)


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` at the end of every training epoch.

    Lightning's ``save_last=True`` writes ``last.ckpt`` only in a step where a
    top-k checkpoint is saved, so after an epoch that does not improve the
    monitored metric it would be older than the model (and a resume would go back
    in time); ``save_last="link"`` links it to that same older file. This one saves
    unconditionally, after :class:`MetricsJSON` has recorded the epoch.

    Args:
        dirpath: The checkpoint folder.
    """

    FILENAME = "last"

    def __init__(self, dirpath: str) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=self.FILENAME,
            monitor=None,
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )

    @property
    def path(self) -> Path:
        return Path(self.dirpath or ".") / f"{self.FILENAME}{self.FILE_EXTENSION}"

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # As save_last did: a run that saved no epoch (fast_dev_run) still leaves its weights.
        if not self._last_checkpoint_saved:
            self.best_model_path = str(self.path)
            self._save_checkpoint(trainer, str(self.path))


def last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The run's ``last.ckpt`` if it has been written, else None."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint) and callback.path.is_file():
            return callback.path
    return None


class DivergedError(SegbenchError, FloatingPointError):
    """Training produced a non-finite loss or weights."""


class StopOnNonFinite(L.Callback):
    """Stops training at the first non-finite training loss, weights or validation loss.

    Every step's loss is checked; the losses are read back to the host every
    ``sync_every`` steps (default: every step on the CPU, every 50 on an
    accelerator, where a read drains the GPU's queue) and always before
    validation and at the end of each epoch, so it fires before Lightning's
    checkpoint callbacks run: no checkpoint of diverged weights is written or
    marked best, ``metrics.json`` keeps pointing at the last good ones, and the
    error names the first bad step. Under DDP the ranks decide together, so none
    is left waiting.
    """

    def __init__(self, sync_every: int | None = None) -> None:
        self.sync_every = sync_every
        self._pending: list[tuple[int, int, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # the step as metrics.csv numbers it (the optimizer step has been counted)
        self._pending.append((max(trainer.global_step - 1, 0), batch_idx, loss.detach()))
        every = self.sync_every or (1 if host_reads_are_free(loss.device) else 50)
        if len(self._pending) >= every:
            self._check_losses(trainer)

    def _check_losses(self, trainer) -> None:
        pending, self._pending = self._pending, []
        flags = [torch.isfinite(loss).all() for *_, loss in pending]
        finite = torch.stack(flags).tolist() if flags else []  # one read for all of them
        first = next((i for i, ok in enumerate(finite) if not ok), None)
        if trainer.strategy.reduce_boolean_decision(first is not None, all=False):
            if first is None:
                self._stop(trainer, "train/loss is non-finite on another rank", "training")
            step, batch_idx, loss = pending[first]
            self._stop(trainer, f"train/loss is {loss.item():g}", f"batch {batch_idx}", step)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check_losses(trainer)
            self._check_weights(trainer, pl_module, "before validation")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        if trainer.strategy.reduce_boolean_decision(not math.isfinite(float(loss)), all=False):
            self._stop(trainer, f"val/loss is {float(loss):g}", "validation")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_losses(trainer)
        self._check_weights(trainer, pl_module, "at the end of the epoch")

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        named = list(pl_module.named_parameters())
        # one device-to-host copy for all tensors, not one per parameter
        finite = torch.stack([torch.isfinite(p).all() for _, p in named]).tolist() if named else []
        bad = [n for (n, _), ok in zip(named, finite, strict=True) if not ok]
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            self._stop(
                trainer, f"weights are not finite ({', '.join(bad[:3]) or 'on a rank'})", when
            )

    @staticmethod
    def _stop(trainer: L.Trainer, what: str, where: str, step: int | None = None) -> None:
        group = trainer.optimizers[0].param_groups[0] if trainer.optimizers else {}
        lr = group.get("initial_lr", group.get("lr"))  # as configured, before any schedule
        last = last_checkpoint(trainer)
        raise DivergedError(
            f"training diverged: {what} at step "
            f"{trainer.global_step if step is None else step} (epoch "
            f"{trainer.current_epoch}, {where}); stopped before any checkpoint of these "
            "weights was written ("
            + (f"the last good one: {last}" if last else "no checkpoint was written")
            + ")\n  fix: lower the learning rate"
            + (f" (optimizer.lr={lr:g} now; try 10x lower)" if lr is not None else "")
            + ", clip gradients (trainer.gradient_clip_val=1.0), or train in full precision "
            "(trainer.precision=32-true)"
        )
