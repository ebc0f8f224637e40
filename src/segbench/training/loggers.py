"""Callbacks that feed the experiment loggers (W&B, TensorBoard, CSV) beyond scalars.

- :class:`PredictionImages`: a few validation images with ground truth and
  prediction overlaid in the dataset's colours (W&B images, TensorBoard images).
- :class:`ModelCost`: parameters, GFLOPs and latency at the training input size,
  into the W&B run summary (other loggers get them as metrics).
- :class:`WandbLogger`: Lightning's, minus a setting wandb warns about on every run;
  :func:`drop_noise` filters the other lines that bury a run's results.
"""

import logging
import warnings

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from segbench.evaluation.visualize import overlay_panels
from segbench.profiling.profile import profile_network

log = logging.getLogger(__name__)


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` (same arguments), without passing ``anonymous=None`` on.

    Lightning always hands wandb.init an ``anonymous`` setting, and wandb >= 0.19 prints
    "The anonymous setting has no effect" on every run for it.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def drop_noise() -> None:
    """Filters third-party lines that say nothing about the run (idempotent).

    Lightning's advertising tip on every ``Trainer`` and torch's FutureWarning that
    Lightning's own pytree helper (the model summary's FLOP count) triggers.
    """
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )


class PredictionImages(L.Callback):
    """Logs ``num_images`` overlays of the first validation batch.

    Each image is ``[input | ground truth | prediction]`` side by side, labels
    blended over the input with the dataset's class colours; ignored pixels of
    the ground truth stay uncoloured. Cheap: one extra forward pass of a few
    images every ``every_n_epochs`` epochs (and at the last epoch).

    Args:
        num_images: Images per logging step.
        every_n_epochs: Logging period in epochs.
        alpha: Opacity of the label colours.
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 5, alpha: float = 0.5) -> None:
        self.num_images, self.every_n_epochs, self.alpha = num_images, every_n_epochs, alpha

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: dict,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking:
            return
        last = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if not (last or trainer.current_epoch % self.every_n_epochs == 0):
            return
        loggers = [
            lg for lg in trainer.loggers if isinstance(lg, LightningWandbLogger | TensorBoardLogger)
        ]
        if not loggers or not trainer.is_global_zero:
            return
        images = batch["image"][: self.num_images]
        with torch.no_grad():
            preds = pl_module(images).argmax(1)
        panels = overlay_panels(
            images, batch["mask"][: self.num_images], preds, pl_module.hparams.data, self.alpha
        )
        for logger in loggers:
            if isinstance(logger, LightningWandbLogger):
                logger.log_image(
                    "val/predictions",
                    list(panels),
                    step=trainer.global_step,
                    caption=["input | ground truth | prediction"] * len(panels),
                )
            else:
                logger.experiment.add_images(
                    "val/predictions", panels, trainer.global_step, dataformats="NHWC"
                )


def profile_figures(result: dict, device_type: str = "cpu") -> dict:
    """A profile (:func:`segbench.profiling.profile.profile_network`) as flat summary keys.

    The headline under ``model/``: ``params``, ``gflops``, ``input_size`` and the
    eager fp32 batch-1 latency on ``device_type`` (``latency_ms``, ``latency_p90_ms``,
    ``latency_device``). The details under ``profile/``:
    ``profile/latency_ms/<runtime>_<device type>_<precision>_b<batch>`` (median),
    ``profile/headroom_pct/<scenario>_<device>_<precision>`` (the budget check) and,
    as text, ``profile/skipped/<runtime>`` with the reason a runtime was not timed.
    """
    figures: dict = {
        "model/params": result["params"]["total"],
        "model/gflops": result["flops"]["gflops"],
        "model/input_size": "x".join(str(v) for v in result["input_size"]),
    }
    eager = [
        r
        for r in result.get("latency", [])
        if r["runtime"] == "pytorch" and r["precision"] == "fp32" and r["batch"] == 1
    ]
    eager.sort(key=lambda r: r["device_type"] != device_type)
    if eager:
        figures["model/latency_ms"] = eager[0]["median_ms"]
        figures["model/latency_p90_ms"] = eager[0]["p90_ms"]
        figures["model/latency_device"] = eager[0]["device"]
    for r in result.get("latency", []):
        key = f"{r['runtime']}_{r['device_type']}_{r['precision']}_b{r['batch']}"
        figures[f"profile/latency_ms/{key}"] = r["median_ms"]
    for r in result.get("budget", []):
        key = f"{r['scenario']}_{r['device']}_{r['precision']}"
        figures[f"profile/headroom_pct/{key}"] = r["headroom_pct"]
    for r in result.get("skipped", []):
        figures.setdefault(f"profile/skipped/{r['runtime']}", r["reason"])
    return figures


def log_summary(loggers: list, figures: dict, step: int) -> None:
    """W&B gets ``figures`` in the run summary; other loggers their numbers at ``step``."""
    for logger in loggers:
        if isinstance(logger, LightningWandbLogger):
            logger.experiment.summary.update(figures)
        else:
            logger.log_metrics(
                {k: v for k, v in figures.items() if isinstance(v, int | float)}, step=step
            )
            logger.save()


class ModelCost(L.Callback):
    """Puts parameters, GFLOPs and latency at the training input size into the run summary.

    Measured once at the end of fitting, on the training device, batch 1, eager
    fp32, with :func:`segbench.profiling.profile.profile_network` (the same code
    as ``segbench profile``). W&B gets them in the run summary (``model/params``,
    ``model/gflops``, ``model/latency_ms``, ...); other loggers as metrics at the
    last step. With ``profile=true`` the run's after-fit profile (every runtime,
    the budget) supplies these figures instead, so nothing is measured twice.

    Args:
        latency_runs: Timed forward passes (0 skips the latency figure).
        warmup: Untimed passes before timing.
        profile: The run profiles itself after fitting (``train.py profile=true``).
    """

    def __init__(self, latency_runs: int = 10, warmup: int = 2, profile: bool = False) -> None:
        self.latency_runs, self.warmup, self.profile = latency_runs, warmup, profile

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.profile or not trainer.is_global_zero or not trainer.loggers:
            return
        log_summary(trainer.loggers, self.measure(pl_module), trainer.global_step)

    def measure(self, pl_module: L.LightningModule) -> dict:
        """``model/params``, ``model/gflops``, ``model/latency_ms`` (median) and where measured."""
        net = pl_module.net
        device = next(net.parameters()).device
        was_training = net.training
        result = profile_network(
            net,
            pl_module.hparams.data["image_size"],
            batch_size=1,
            latency=self.latency_runs > 0,
            devices=[device.type],
            precisions=["fp32"],
            warmup=self.warmup,
            runs=self.latency_runs,
        )
        net.train(was_training)
        return profile_figures(result, device.type)
