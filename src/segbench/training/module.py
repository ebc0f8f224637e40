"""The LightningModule: loss, metrics, logging and optimisation around a zoo network."""

import logging
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from segbench.data.transforms import normalize_uint8, pixel_stats
from segbench.evaluation.metrics import ConfusionMatrix, scores
from segbench.models import build_network
from segbench.training.distributed import eval_sampler, host_reads_are_free, unpadded_count

log = logging.getLogger(__name__)


class SegmentationModule(L.LightningModule):
    """Trains a segbench network.

    The network is built here from its config, which the checkpoint keeps, so
    a checkpoint alone rebuilds it (:func:`segbench.models.load_network`).

    Args:
        net: Resolved model config (``conf/model/*.yaml`` with the backbone).
        data: Dataset facts (:attr:`SegmentationDataModule.meta`).
        loss: Loss ``(logits, target) -> scalar``.
        optimizer: Factory ``params -> Optimizer`` (Hydra ``_partial_``).
        scheduler: Factory ``(optimizer, total_iters=) -> LRScheduler``, stepped
            every optimizer step, or None.
        datamodule: Resolved data config (``conf/data/*.yaml``), kept so that
            evaluation can rebuild the dataset the network was trained on.
    """

    def __init__(
        self,
        net: dict,
        data: dict,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        datamodule: dict | None = None,
    ) -> None:
        super().__init__()
        # logger=False: train() logs the whole resolved config; these would overwrite its `data`.
        self.save_hyperparameters(ignore=["loss", "optimizer", "scheduler"], logger=False)
        self.net = build_network(net)
        self.loss = loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.class_names = data["class_names"]
        self.val_confmat = ConfusionMatrix(data["num_classes"], data["ignore_index"])
        self.test_confmat = ConfusionMatrix(data["num_classes"], data["ignore_index"])
        self._eval_seen = 0  # samples this rank has scored in the current val/test epoch
        # Mean loss over the split's valid pixels, summed across ranks by torchmetrics (Lightning's
        # own sync_dist mean floor-divides its integer batch count).
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.ignore_index = data["ignore_index"]
        # For frames the training loader sends as uint8 (data.uint8_batches); not saved.
        mean255, std255 = pixel_stats(data["mean"], data["std"])
        self.register_buffer("mean255", mean255, persistent=False)
        self.register_buffer("std255", std255, persistent=False)
        # One frame at the stored size: Lightning's model summary counts its FLOPs with
        # torch.utils.flop_counter (as segbench.profiling does) instead of printing 0.
        self.example_input_array = torch.zeros(1, 3, *data.get("image_size", (64, 64)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Converts a uint8 batch (``data.uint8_batches``) on the device: frames normalised,
        masks widened to int64. Anything else (the model summary's example input) passes."""
        if not isinstance(batch, dict):
            return batch
        if batch["image"].dtype == torch.uint8:
            batch["image"] = normalize_uint8(batch["image"], self.mean255, self.std255)
        if batch["mask"].dtype != torch.long:
            batch["mask"] = batch["mask"].long()
        return batch

    def compile_training(self, **options) -> None:
        """Run the training step's forward through ``torch.compile(self.net, **options)``.

        The compiled wrapper is kept out of the module's registry, so the state_dict
        holds each weight once under its usual key and everything but the training step
        (validation, test, export) runs the eager network.
        """
        object.__setattr__(self, "_compiled_net", torch.compile(self.net, **options))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        net = self.__dict__.get("_compiled_net")
        logits = (self.net if net is None else net)(batch["image"])
        loss = self.loss(logits, target_like(batch["mask"], logits))
        size, free = batch["image"].shape[0], self._host_reads_are_free()
        # A progress-bar value is read back to the host after every step (Lightning converts
        # it), which on a GPU waits for the step to finish; there the bar shows the epoch's
        # mean loss instead, read once per epoch.
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=free, batch_size=size)
        if not free:
            self.log(
                "loss",
                loss,
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                logger=False,
                batch_size=size,
            )
        return loss

    def _host_reads_are_free(self) -> bool:
        return host_reads_are_free(self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_confmat)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_confmat)

    def on_validation_epoch_start(self) -> None:
        self._eval_seen = 0

    def on_test_epoch_start(self) -> None:
        self._eval_seen = 0

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val", self.val_confmat)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test", self.test_confmat)

    def _eval_step(self, batch: dict, stage: str, confmat: ConfusionMatrix) -> None:
        images, masks = batch["image"], batch["mask"]
        # Under DDP the sampler pads with repeated samples: score each sample once.
        keep = unpadded_count(eval_sampler(self._trainer, stage), self._eval_seen, len(images))
        self._eval_seen += len(images)
        if keep == 0:
            return
        images, masks = images[:keep], masks[:keep]
        logits = self(images)
        masks = target_like(masks, logits)
        loss_metric = self.val_loss if stage == "val" else self.test_loss
        loss_metric.update(self.loss(logits, masks), weight=(masks != self.ignore_index).sum())
        self.log(f"{stage}/loss", loss_metric, on_epoch=True, batch_size=keep)
        confmat.update(logits.argmax(1), masks)

    def _log_scores(self, stage: str, confmat: ConfusionMatrix) -> None:
        result = scores(confmat.compute())
        confmat.reset()
        metrics = {
            f"{stage}/pixel_acc": result["pixel_acc"],
            f"{stage}/mean_acc": result["mean_acc"],
        }
        metrics.update(
            {
                f"{stage}/iou_{name}": iou
                for name, iou in zip(self.class_names, result["iou"], strict=True)
            }
        )
        # The confusion matrix is already reduced across processes.
        self.log_dict({k: v.float() for k, v in metrics.items()}, prog_bar=False, sync_dist=False)
        self.log(f"{stage}/miou", result["miou"].float(), prog_bar=True)

    def configure_optimizers(self) -> dict:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(
            optimizer, total_iters=self.trainer.estimated_stepping_batches
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def target_like(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The label map at the logits' resolution (nearest), for low-resolution outputs.

    ERFNet's encoder-only stage predicts at 1/8 of the input and is trained on
    labels subsampled to that size, as in the reference code.
    """
    if mask.shape[-2:] == logits.shape[-2:]:
        return mask
    return nn.functional.interpolate(mask[:, None].float(), size=logits.shape[-2:], mode="nearest")[
        :, 0
    ].to(mask.dtype)
