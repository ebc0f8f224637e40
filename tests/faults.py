"""Faults injected into real ``train.py`` runs: ``+callbacks.<name>._target_=tests.faults.<Class>``.

Each one is a Lightning callback doing what goes wrong in real use: a kill -9
mid-epoch, weights that blow up after good epochs, a disk that fills up.
"""

import os
import signal
from pathlib import Path

import lightning as L
import torch

#: KillAt only fires while this variable is set, so the rerun of the same command survives.
KILL_ENV = "SEGBENCH_TEST_KILL"


class KillAt(L.Callback):
    """SIGKILLs its own process after batch ``batch`` of epoch ``epoch`` (when KILL_ENV is set)."""

    def __init__(self, epoch: int, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if os.environ.get(KILL_ENV) and (trainer.current_epoch, batch_idx) == (
            self.epoch,
            self.batch,
        ):
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonWeightsAt(L.Callback):
    """Sets the first weight tensor to NaN at the start of epoch ``epoch`` (a late divergence)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class FillDiskAt(L.Callback):
    """Fills the file system holding ``path`` at the start of epoch ``epoch`` (a full disk)."""

    def __init__(self, path: str, epoch: int) -> None:
        self.path, self.epoch = Path(path), epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch != self.epoch:
            return
        with open(self.path, "wb", buffering=0) as f:
            try:
                while f.write(b"\0" * 65536):
                    pass
            except OSError:
                pass


class StepMarker(L.Callback):
    """Creates ``path`` when the first training batch starts (proof that training began)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.path.touch()
