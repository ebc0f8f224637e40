"""Callbacks that feed the experiment loggers (W&B, TensorBoard, CSV) beyond scalars.

- :class:`PredictionImages`: a few validation images with ground truth and
  prediction overlaid in the dataset's colours (W&B images, TensorBoard images).
- :class:`ModelCost`: parameters, GFLOPs and latency at the training input size,
  into the W&B run summary (other loggers get them as metrics).
"""

import logging

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from segbench.flops import count_flops
from segbench.latency import device_tags, time_callable

log = logging.getLogger(__name__)


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
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger | TensorBoardLogger)]
        if not loggers or not trainer.is_global_zero:
            return
        images = batch["image"][: self.num_images]
        with torch.no_grad():
            preds = pl_module(images).argmax(1)
        panels = overlays(
            images, batch["mask"][: self.num_images], preds, pl_module.hparams.data, self.alpha
        )
        for logger in loggers:
            if isinstance(logger, WandbLogger):
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


def overlays(
    images: torch.Tensor, masks: torch.Tensor, preds: torch.Tensor, data: dict, alpha: float = 0.5
) -> np.ndarray:
    """Side-by-side ``[input | ground truth | prediction]`` panels.

    Args:
        images: ``(N, 3, H, W)`` normalised images.
        masks: ``(N, H, W)`` ground-truth ids (``data["ignore_index"]`` allowed).
        preds: ``(N, H, W)`` predicted ids.
        data: Dataset facts: ``mean``, ``std``, ``colors``, ``ignore_index``.
        alpha: Opacity of the label colours.

    Returns:
        ``(N, H, 3 * W, 3)`` uint8 RGB.
    """
    mean = torch.tensor(data["mean"], device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(data["std"], device=images.device).view(1, 3, 1, 1)
    rgb = ((images.float() * std + mean).clamp(0, 1) * 255).permute(0, 2, 3, 1).cpu().numpy()
    palette = np.asarray(data["colors"], dtype=np.float32)

    def blend(labels: torch.Tensor) -> np.ndarray:
        labels = labels.cpu().numpy()
        valid = (labels >= 0) & (labels < len(palette))
        colored = palette[np.where(valid, labels, 0)]
        out = np.where(valid[..., None], (1 - alpha) * rgb + alpha * colored, rgb)
        return out

    panels = np.concatenate([rgb, blend(masks), blend(preds)], axis=2)
    return panels.round().astype(np.uint8)


def profile_figures(result: dict) -> dict:
    """A profile (``segbench.profiling``) as flat run-summary keys under ``profile/``.

    ``profile/latency_ms/<runtime>_<device type>_<precision>_b<batch>`` (median),
    ``profile/headroom_pct/<scenario>_<device>_<precision>`` (the budget check) and,
    as text, ``profile/skipped/<runtime>`` with the reason a runtime was not timed.
    """
    figures: dict = {
        "profile/params": result["params"]["total"],
        "profile/gflops": result["flops"]["gflops"],
        "profile/input_size": "x".join(str(v) for v in result["input_size"]),
    }
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
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(figures)
        else:
            logger.log_metrics(
                {k: v for k, v in figures.items() if isinstance(v, int | float)}, step=step
            )
            logger.save()


class ModelCost(L.Callback):
    """Puts parameters, GFLOPs and latency at the training input size into the run summary.

    Measured once at the end of fitting, on the training device, batch 1, with
    the network in eval mode. W&B gets them in the run summary
    (``model/params``, ``model/gflops``, ``model/latency_ms``, ...); other loggers
    as metrics at the last step.

    Args:
        latency_runs: Timed forward passes (0 skips the latency figure).
        warmup: Untimed passes before timing.
    """

    def __init__(self, latency_runs: int = 10, warmup: int = 2) -> None:
        self.latency_runs, self.warmup = latency_runs, warmup

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not trainer.loggers:
            return
        log_summary(trainer.loggers, self.measure(pl_module), trainer.global_step)

    def measure(self, pl_module: L.LightningModule) -> dict:
        """``model/params``, ``model/gflops``, ``model/latency_ms`` (median) and where measured."""
        net = pl_module.net
        height, width = pl_module.hparams.data["image_size"]
        figures: dict = {
            "model/params": sum(p.numel() for p in net.parameters()),
            "model/input_size": f"{height}x{width}",
        }
        figures["model/gflops"] = count_flops(net, (height, width))["gflops"]
        if self.latency_runs > 0:
            device = next(net.parameters()).device
            x = torch.zeros(1, 3, height, width, device=device)
            was_training = net.training
            net.eval()
            sync = torch.cuda.synchronize if device.type == "cuda" else None
            with torch.inference_mode():
                timing = time_callable(
                    lambda: net(x), warmup=self.warmup, runs=self.latency_runs, sync=sync
                )
            net.train(was_training)
            figures["model/latency_ms"] = timing["median_ms"]
            figures["model/latency_p90_ms"] = timing["p90_ms"]
            figures["model/latency_device"] = device_tags(device)["device"]
        return figures
