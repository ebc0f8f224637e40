"""Callbacks that turn a training run into files a report can read."""

import logging
import math
import time
from pathlib import Path

import lightning as L

from segbench.files import write_json
from segbench.profiling.params import count_params
from segbench.runtimes.latency import device_tags

log = logging.getLogger(__name__)


class MetricsJSON(L.Callback):
    """Writes ``metrics.json``: best score, its per-class IoU, the curve, size, time, budget.

    Rewritten (atomically) after every validation, so a killed run still leaves
    its history; a resumed run continues the history from the checkpoint. Each
    history row holds the epoch, optimizer step, training images seen so far (all
    processes) and wall time since the start of fitting, beside the logged
    ``train/`` and ``val/`` metrics; the file states the device, the number of
    devices and the precision they ran at.

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
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
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
            # trainer.current_epoch counts completed epochs: the one validated is not yet
            self.write(trainer, pl_module, epochs=trainer.current_epoch + 1)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.best is not None:
            self.write(trainer, pl_module, epochs=trainer.current_epoch)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, epochs: int) -> None:
        self.wall_time_s = time.monotonic() - self._start
        params = count_params(pl_module)
        best = self.best or {}
        ckpt = trainer.checkpoint_callback
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
            "last_checkpoint": getattr(ckpt, "last_model_path", None) or None,
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
