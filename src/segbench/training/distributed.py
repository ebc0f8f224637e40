"""Scaling out and speeding up: exact metrics under DDP, channels_last memory format,
a compiled training forward.

DDP evaluation: Lightning gives each process a ``DistributedSampler``, which pads
the dataset by repeating its first samples so every rank gets the same number
(``torch.utils.data.DistributedSampler``, ``drop_last=False``). Counting those
repeats would make a 2-process mIoU differ from a 1-process one. The padded
positions are known: rank ``r`` of ``R`` receives positions ``r, r + R, ...``
of the padded index list, and only positions ``>= len(dataset)`` are repeats,
so they are the last ones each rank sees. :func:`unpadded_count` says how many
samples of a batch are real, and the module scores only those.
"""

import logging

import lightning as L
import torch
from torch.utils.data import DistributedSampler

from segbench.errors import ConfigError

log = logging.getLogger(__name__)


def host_reads_are_free(device: torch.device | str) -> bool:
    """Whether reading a tensor's value back to Python costs nothing: on the CPU it does
    not; on an accelerator it waits for every kernel queued so far."""
    return torch.device(device).type == "cpu"


def unpadded_count(sampler: object, seen: int, batch_size: int) -> int:
    """How many of the next ``batch_size`` samples of this rank are not padding.

    Args:
        sampler: The evaluation loader's sampler.
        seen: Samples this rank has already received in this epoch.
        batch_size: Samples in the current batch.
    """
    if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
        return batch_size
    real = len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))
    return max(0, min(batch_size, real - seen))


def eval_sampler(trainer: L.Trainer | None, stage: str, dataloader_idx: int = 0) -> object:
    """The sampler of the loader a ``val``/``test`` step is reading, or None."""
    if trainer is None:
        return None
    loaders = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
    if isinstance(loaders, list | tuple):
        loaders = loaders[dataloader_idx] if len(loaders) > dataloader_idx else None
    return getattr(loaders, "sampler", None)


class ChannelsLast(L.Callback):
    """Runs the network in ``torch.channels_last`` memory format.

    On CUDA with 16-bit precision (``trainer.precision=16-mixed|bf16-mixed``)
    convolutions then use the tensor cores without layout transposes; on CPU
    the gain depends on the kernels (measure before relying on it). Weights are
    converted once at fit start; inputs by a forward pre-hook on the network.

    Args:
        enabled: ``true`` converts, ``false`` leaves the network as it is, ``auto``
            converts when training runs on CUDA with 16-bit precision (``trainer=gpu``).
    """

    def __init__(self, enabled: bool | str = False) -> None:
        self.enabled = _switch("callbacks.channels_last.enabled", enabled)
        self._hook = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._hook is not None or not self.wanted(trainer):
            return
        net = getattr(pl_module, "net", pl_module)
        net.to(memory_format=torch.channels_last)
        self._hook = net.register_forward_pre_hook(_to_channels_last)
        log.info("channels_last memory format on %s", type(net).__name__)

    def wanted(self, trainer: L.Trainer) -> bool:
        """Whether to convert: ``enabled``, or for ``auto`` CUDA with 16-bit precision."""
        if self.enabled != "auto":
            return bool(self.enabled)
        cuda = trainer.strategy.root_device.type == "cuda"
        return cuda and str(trainer.precision).startswith(("16", "bf16"))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _switch(key: str, value: object) -> bool | str:
    """``value`` if it is ``auto``, ``true`` or ``false``; else a ConfigError naming ``key``."""
    if not (value == "auto" or isinstance(value, bool)):
        raise ConfigError(key, value, "unknown setting", allowed=("auto", "true", "false"))
    return value


def _to_channels_last(module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(
        a.contiguous(memory_format=torch.channels_last)
        if isinstance(a, torch.Tensor) and a.ndim == 4
        else a
        for a in args
    )


class CompileTraining(L.Callback):
    """Runs the training step's forward through ``torch.compile`` (inductor).

    Only training uses the compiled network; validation, test, checkpoints, export and
    profiling see the eager one, which holds the same parameters (the state_dict keys do
    not change). The first training steps pay the compilation; a new input shape (the
    last, smaller batch of an epoch) compiles once more, with dynamic shapes.

    Args:
        enabled: ``true`` compiles, ``false`` does not, ``auto`` compiles when training
            runs on CUDA.
        mode: ``torch.compile``'s ``mode`` (``null``: its default; e.g.
            ``max-autotune-no-cudagraphs``).
    """

    def __init__(self, enabled: bool | str = False, mode: str | None = None) -> None:
        self.enabled, self.mode = _switch("callbacks.compile.enabled", enabled), mode

    def wanted(self, trainer: L.Trainer) -> bool:
        """Whether to compile: ``enabled``, or for ``auto`` training on CUDA."""
        if self.enabled != "auto":
            return bool(self.enabled)
        return trainer.strategy.root_device.type == "cuda"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.wanted(trainer):
            pl_module.compile_training(mode=self.mode)
            log.info("training forward compiled with torch.compile (mode %s)", self.mode)
