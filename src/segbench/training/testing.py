"""``test_split=<split>``: the best checkpoint scored on a held-out split after fitting.

The split is opened before training, so a dataset without it fails at once, naming
``test_split``. After fitting, the checkpoint the monitor picked on validation
(``best.ckpt``: with ``callbacks=[default,ema]`` its averaged weights) is loaded
and scored by the module's ``test_step`` (the same confusion matrix as
validation, reduced over all processes). The scores go to the loggers
(``test/miou``, ``test/iou_<class>``, ...; W&B also in the run summary) and into
``metrics.json``; nothing selects on them.
"""

import json
import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from segbench.data import SegmentationDataModule
from segbench.errors import ConfigError, DataError
from segbench.files import write_json
from segbench.models.checkpoint import read_checkpoint

log = logging.getLogger(__name__)

#: Splits that train or select the model: never a test split.
SELECTION_SPLITS = ("train", "val")


def check_test_split(datamodule: SegmentationDataModule, split: str | None) -> None:
    """Opens ``split`` before any training, or raises ConfigError naming ``test_split``."""
    if not split:
        return
    if split in SELECTION_SPLITS:
        raise ConfigError(
            "test_split",
            split,
            "trains or selects the model, so its score is not a test score",
            fix="test_split=test (a split the run never sees), or test_split=null",
        )
    try:
        dataset = datamodule.get_split(split)
    except (DataError, ConfigError) as err:
        first = str(err).splitlines()[0]
        raise ConfigError(
            "test_split",
            split,
            f"the dataset has no usable {split} split ({first})",
            fix=f"test_split=null to train without a test score, or set data.root to a copy "
            f"of the dataset that has the {split} split",
        ) from None
    log.info("test split: %s (%d samples), scored after fitting", split, len(dataset))


def score_test_split(
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: SegmentationDataModule,
    split: str,
    metrics_file: Path,
) -> dict:
    """Scores the best checkpoint on ``split``; returns the ``test/`` metrics.

    Also writes them into ``metrics_file`` (``test``: every ``test/`` metric,
    ``test_miou``, ``test_per_class_iou``, ``test_split``, ``test_checkpoint``)
    and the W&B run summary.
    """
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if best:
        # The checkpoint's state_dict (averaged weights under EMA), not Lightning's
        # ckpt_path="best", which would restore EMA's raw weights for testing.
        module.load_state_dict(read_checkpoint(best)["state_dict"])
    else:
        log.warning("no best checkpoint (checkpointing off?): testing the final weights")
    results = trainer.test(module, dataloaders=datamodule.loader(split), verbose=False)[0]
    scores = {k: float(v) for k, v in results.items() if k.startswith("test/")}
    log.info("%s split: test/miou %.4f (checkpoint %s)", split, scores["test/miou"], best)
    if not trainer.is_global_zero:
        return scores
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(scores)
    record_test(metrics_file, scores, split, best)
    return scores


def record_test(metrics_file: Path, scores: dict, split: str, checkpoint: str | None) -> None:
    """Adds the test scores to ``metrics.json`` beside the validation ones."""
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics.update(
        {
            "test_split": split,
            "test_checkpoint": checkpoint,
            "test_miou": scores.get("test/miou"),
            "test_per_class_iou": {
                k.split("/iou_", 1)[1]: v for k, v in scores.items() if k.startswith("test/iou_")
            },
            "test": scores,
        }
    )
    write_json(metrics_file, metrics, allow_nan=True)
