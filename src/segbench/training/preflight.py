"""Checks before a training run builds anything: config values, the trainer, disk space.

Each failure names the key or file, the bad value and the fix, before the first
sample is read (config values) or before the first training step (the trainer,
the checkpoint folder), instead of a stack trace from deep inside Lightning or
PyTorch, or a full disk found after an epoch of training.
"""

import logging
import shutil
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from segbench.checks import require_int, require_number, require_size
from segbench.data.reading import MIN_SIZE
from segbench.errors import ConfigError, user_error
from segbench.files import WriteError, atomic_write
from segbench.profiling.params import count_params

log = logging.getLogger(__name__)

_UNSET = object()

#: Whole-number settings: key, minimum, other allowed values, an example.
INT_SETTINGS = (
    ("trainer.max_epochs", 1, (-1, None), "trainer.max_epochs=12 (-1: no limit)"),
    ("trainer.min_epochs", 0, (None,), "trainer.min_epochs=1"),
    ("trainer.max_steps", 1, (-1, None), "trainer.max_steps=1000 (-1: no limit)"),
    ("trainer.check_val_every_n_epoch", 1, (None,), "trainer.check_val_every_n_epoch=1"),
    ("trainer.log_every_n_steps", 1, (), "trainer.log_every_n_steps=10"),
    ("trainer.num_sanity_val_steps", 0, (-1,), "trainer.num_sanity_val_steps=1"),
    ("trainer.accumulate_grad_batches", 1, (), "trainer.accumulate_grad_batches=1"),
    ("seed", 0, (None,), "seed=42 (null: not seeded)"),
)
#: Numbers: key, bounds (see require_number), may be null, an example.
NUMBER_SETTINGS = (
    # lr=0 is allowed: a run that only evaluates or re-saves loaded weights (init.checkpoint).
    ("optimizer.lr", {"minimum": 0}, False, "optimizer.lr=0.001"),
    ("optimizer.weight_decay", {"minimum": 0}, True, "optimizer.weight_decay=0.0001"),
    ("optimizer.momentum", {"minimum": 0, "maximum": 1, "exclusive_max": True}, False, "0.9"),
    ("trainer.gradient_clip_val", {"minimum": 0}, True, "trainer.gradient_clip_val=1.0"),
    ("loss.label_smoothing", {"minimum": 0, "maximum": 1, "exclusive_max": True}, False, "0.1"),
)


def check_train_config(cfg: DictConfig) -> None:
    """Refuses config values of the wrong type or range before anything is built.

    Raises:
        ConfigError: naming the key, the value, what is allowed and an example.
    """
    for key, minimum, also, example in INT_SETTINGS:
        if (value := OmegaConf.select(cfg, key, default=_UNSET)) is not _UNSET:
            require_int(key, value, minimum, fix=f"e.g. {example}", also=also)
    for key, bounds, nullable, example in NUMBER_SETTINGS:
        value = OmegaConf.select(cfg, key, default=_UNSET)
        if value is _UNSET or (value is None and nullable):
            continue
        fix = f"e.g. {example if '=' in example else f'{key}={example}'}"
        require_number(key, value, fix=fix, **bounds)
    for key in ("trainer.limit_train_batches", "trainer.limit_val_batches"):
        if (value := OmegaConf.select(cfg, key, default=_UNSET)) is not _UNSET:
            check_batch_limit(key, value)
    check_crop(cfg)


def check_batch_limit(key: str, value: object) -> None:
    """A Lightning batch limit: a whole number of batches, or a fraction in [0, 1]."""
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return
    require_int(key, value, 0, fix=f"a number of batches or a fraction, e.g. {key}=0.5")


def check_crop(cfg: DictConfig) -> None:
    """Refuses a training crop larger than the stored frames or below the networks' minimum.

    A crop beyond the frame is mostly padding and costs crop-area memory per sample
    (``augment.size=[4000,4000]`` on 360x480 frames). Checked on ``augment.size``
    where the augmentation has one, else on each ``*Crop`` transform's height/width.
    """
    image = OmegaConf.select(cfg, "data.image_size")
    if OmegaConf.select(cfg, "augment.size") is not None:
        crops = [("augment.size", OmegaConf.select(cfg, "augment.size"))]
    else:
        crops = [
            (f"augment.train[{i}]", [t["height"], t["width"]])
            for i, t in enumerate(OmegaConf.select(cfg, "augment.train") or [])
            if "Crop" in str(t.get("_target_", "")) and "height" in t and "width" in t
        ]
    for key, size in crops:
        fix = f"use [H, W] no larger than data.image_size={list(image)}, e.g. {key}=[240,320]"
        height, width = require_size(key, list(size), MIN_SIZE, fix=fix)
        if height > image[0] or width > image[1]:
            raise ConfigError(
                key,
                [height, width],
                f"the crop is larger than the frames (data.image_size={list(image)}): it would "
                "be mostly padding, at the crop's cost in memory and time per sample",
                fix=fix,
            )


def build_trainer(cfg: DictConfig, **kwargs) -> L.Trainer:
    """Instantiates ``cfg.trainer``; Lightning's refusal of a setting names the trainer key.

    Raises:
        ConfigError: ``trainer.<key>`` with Lightning's reason (precision, accelerator, ...).
    """
    try:
        return instantiate(cfg.trainer, **kwargs)
    except Exception as err:
        cause = err.__cause__ or err
        if user_error(err) or not isinstance(cause, MisconfigurationException | ValueError):
            raise
        message = str(cause).strip().splitlines()[0]
        key = trainer_key(cfg.trainer, message)
        fix = {"accelerator": "trainer=cpu (or trainer.accelerator=cpu) without a GPU"}.get(
            key, "see conf/trainer/default.yaml and Lightning's Trainer arguments"
        )
        raise ConfigError(
            f"trainer.{key}" if key else "trainer",
            cfg.trainer.get(key) if key else None,
            f"refused by Lightning: {message}",
            fix=fix,
        ) from None


def trainer_key(trainer: DictConfig, message: str) -> str | None:
    """The trainer setting Lightning's ``message`` is about: named, or its value quoted."""
    text = message.lower()
    keys = sorted((k for k in trainer if k != "_target_"), key=len, reverse=True)
    named = [k for k in keys if k.replace("_", " ") in text or k in text]
    valued = [
        k for k in keys if isinstance(v := trainer.get(k), str) and len(v) > 2 and v.lower() in text
    ]
    return next(iter(named + valued), None)


def check_checkpoint_space(checkpoint_dir: str | Path, module: L.LightningModule) -> None:
    """Fails now if ``checkpoint_dir`` cannot be written or lacks room for the checkpoints.

    A checkpoint holds the weights and the optimizer's state (Adam: two tensors per
    trainable weight); the folder must hold ``best.ckpt``, ``last.ckpt`` and the
    temporary copy written before a rename.

    Raises:
        WriteError: naming the folder or file, the reason and the fix.
    """
    folder = Path(checkpoint_dir)
    probe = folder / ".write-test"
    try:
        atomic_write(probe, lambda f: f.write(b"segbench"))
    except WriteError as err:
        raise WriteError(str(err).replace(str(probe), str(folder / "last.ckpt"), 1)) from None
    probe.unlink(missing_ok=True)
    params = count_params(module)
    checkpoint = 4 * params["total"] + 8 * params["trainable"] + 2**20
    need, free = 3 * checkpoint, shutil.disk_usage(folder).free
    if free < need:
        raise WriteError(
            f"{folder}: {free / 2**20:.0f} MiB free, but the checkpoints need about "
            f"{need / 2**20:.0f} MiB (best.ckpt, last.ckpt and a temporary copy of "
            f"~{checkpoint / 2**20:.0f} MiB each)\n  fix: free disk space or write the run "
            "elsewhere (hydra.run.dir=... or paths.log_dir=...)"
        )
    log.info("checkpoints: %s (~%.0f MiB each)", folder, checkpoint / 2**20)
