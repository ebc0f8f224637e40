"""train(cfg): compose data, network, module, callbacks and loggers; fit; report."""

import json
import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from segbench.config import save_resolved
from segbench.errors import ConfigError
from segbench.models import check_compatible
from segbench.models.init import initialize
from segbench.models.transfer import load_matching
from segbench.profiling.profile import profile_trained
from segbench.training.checkpoint_io import AtomicCheckpointIO
from segbench.training.loggers import drop_noise, log_summary, profile_figures
from segbench.training.losses import build_loss
from segbench.training.module import SegmentationModule
from segbench.training.preflight import build_trainer, check_checkpoint_space, check_train_config
from segbench.training.rundir import checkpoint_dir
from segbench.training.testing import check_test_split, score_test_split

log = logging.getLogger(__name__)

# The `lightning` package gives its logger a console handler of its own and also
# propagates to the root logger, which Hydra configures: every line would print
# twice. Let Hydra's handlers (console and the run's log file) take it alone.
if logging.getLogger().hasHandlers():
    logging.getLogger("lightning").handlers.clear()
drop_noise()


def train(cfg: DictConfig) -> dict:
    """Trains the configured network and returns the run's ``metrics.json`` content.

    Writes into ``cfg.paths.output_dir``: ``config.yaml`` (resolved),
    ``checkpoints/{best,last}.ckpt``, ``metrics.json`` and the loggers' files.
    """
    out = Path(cfg.paths.output_dir)
    check_train_config(cfg)
    save_resolved(cfg, out / "config.yaml")
    check_compatible(cfg.model, cfg.backbone)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info("data: %s", cfg.data.dataset._target_)
    datamodule = instantiate(cfg.data, augment=instantiate(cfg.augment.train))
    datamodule.setup("fit")  # fails here, before any model is built, on a bad root
    check_test_split(datamodule, cfg.get("test_split"))

    module = build_module(cfg, datamodule)
    callbacks = instantiate_group(cfg, "callbacks")
    loggers = instantiate_group(cfg, "logger")
    check_monitor(cfg, module)
    trainer = build_trainer(
        cfg, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    if trainer.is_global_zero and not trainer.fast_dev_run:
        check_checkpoint_space(checkpoint_dir(cfg), module)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(
        module,
        train_dataloaders=datamodule.train_dataloader(),
        val_dataloaders=datamodule.val_dataloader(),
        ckpt_path=cfg.get("ckpt_path"),
    )
    if cfg.get("test_split"):  # the best checkpoint by validation, scored once on held-out data
        score_test_split(trainer, module, datamodule, cfg.test_split, out / "metrics.json")

    if cfg.get("profile") and trainer.is_global_zero:
        result = profile_trained(module.net, cfg, out / "profile.json")
        # W&B: the run summary (model/ headline, profile/ details); other loggers: the numbers.
        device = next(module.net.parameters()).device.type
        log_summary(loggers, profile_figures(result, device), trainer.global_step)

    return read_metrics(out / "metrics.json")


def build_module(cfg: DictConfig, datamodule) -> SegmentationModule:
    """The LightningModule of ``cfg``: network (initialised, transfer weights loaded), loss, optim."""
    log.info("model: %s on %s", cfg.model._target_, cfg.backbone.name)
    module = SegmentationModule(
        net=OmegaConf.to_container(cfg.model, resolve=True),
        data=datamodule.meta,
        loss=build_loss(cfg.loss, datamodule, cache_dir=Path(cfg.paths.data_dir) / ".cache"),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        datamodule=OmegaConf.to_container(cfg.data, resolve=True),
    )
    initialize(module.net, cfg.init.scheme)
    if cfg.init.get("checkpoint"):
        load_matching(module.net, cfg.init.checkpoint)
    return module


def read_metrics(metrics_file: Path) -> dict:
    """The run's ``metrics.json`` (empty if none was written), logged in one line."""
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if metrics:
        log.info(
            "best val/miou %.4f at epoch %s; checkpoint %s; metrics %s",
            metrics.get("best_val_miou") or float("nan"),
            metrics.get("best_epoch"),
            metrics.get("best_checkpoint"),
            metrics_file,
        )
    return metrics


def instantiate_group(cfg: DictConfig, group: str) -> list:
    """Instantiates every entry of ``cfg.<group>`` (loggers, callbacks) that names a ``_target_``.

    An entry without one is a leftover setting, e.g. ``experiment=arch_comparison``
    sets ``logger.wandb.project`` and the command line then picks ``logger=csv``:
    it is ignored with a warning instead of failing the run.
    """
    objects = []
    for name, node in (cfg.get(group) or {}).items():
        if not node:
            continue
        if "_target_" not in node:
            log.warning(
                "%s.%s has settings but no _target_ (its config is not selected: add it, "
                "e.g. %s=[...,%s]); ignored",
                group,
                name,
                group,
                name,
            )
            continue
        objects.append(instantiate(node))
    return objects


def check_monitor(cfg: DictConfig, module: SegmentationModule) -> None:
    """Refuses a checkpoint monitor that names no logged metric."""
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor")
    if monitor is None:
        return
    logged = ["val/loss", "val/miou", "val/pixel_acc", "val/mean_acc", "train/loss"]
    logged += [f"val/iou_{name}" for name in module.class_names]
    if monitor not in logged:
        raise ConfigError(
            "callbacks.model_checkpoint.monitor", monitor, "is not a logged metric", allowed=logged
        )
