"""evaluate(cfg): rebuild a network from its checkpoint and score it on a split."""

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from segbench.metrics import ConfusionMatrix, scores
from segbench.models import load_network
from segbench.runtimes import make_predictor

log = logging.getLogger(__name__)

#: Maps a normalised image batch ``(N, 3, H, W)`` to label maps ``(N, H, W)``.
Predictor = Callable[[torch.Tensor], torch.Tensor]


def evaluate(cfg: DictConfig) -> dict:
    """Scores ``cfg.ckpt_path`` on ``cfg.split`` and writes ``eval.json`` to the output dir.

    The dataset is the checkpoint's own unless ``cfg.data`` is given. Scores
    come from the same confusion matrix code as training's validation.
    """
    net, hparams = load_network(cfg.ckpt_path)
    data_cfg = cfg.get("data") or OmegaConf.create(hparams["datamodule"])
    datamodule = instantiate(data_cfg, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    datamodule.prepare_data()
    meta = hparams["data"]
    confmat = score_split(make_predictor(cfg, net, hparams), datamodule.loader(cfg.split),
                          meta["num_classes"], meta["ignore_index"])
    report = {"ckpt_path": str(cfg.ckpt_path), "split": cfg.split,
              "runtime": cfg.get("runtime") or "pytorch", "model_path": cfg.get("model_path"),
              **summarize(confmat, meta["class_names"])}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    log.info("%s mIoU %.4f, pixel acc %.4f -> %s", cfg.split, report["miou"],
             report["pixel_acc"], out / "eval.json")
    return report


def torch_predictor(net: torch.nn.Module, device: torch.device) -> Predictor:
    """A predictor running ``net`` in eval mode on ``device``."""
    net.eval().to(device)

    @torch.inference_mode()
    def predict(images: torch.Tensor) -> torch.Tensor:
        return net(images.to(device)).argmax(1)

    return predict


def score_split(predict: Predictor, batches: Iterable[dict], num_classes: int,
                ignore_index: int) -> torch.Tensor:
    """Runs ``predict`` over ``batches`` and returns the ``(C, C)`` confusion matrix."""
    confmat = ConfusionMatrix(num_classes, ignore_index)
    for batch in batches:
        confmat.update(predict(batch["image"]).cpu(), batch["mask"])
    return confmat.compute()


def summarize(confmat: torch.Tensor, class_names: list[str]) -> dict:
    """The JSON-ready scores of a confusion matrix."""
    result = scores(confmat)
    return {
        "miou": result["miou"].item(),
        "pixel_acc": result["pixel_acc"].item(),
        "mean_acc": result["mean_acc"].item(),
        "per_class_iou": dict(zip(class_names, result["iou"].tolist(), strict=True)),
        "per_class_acc": dict(zip(class_names, result["acc"].tolist(), strict=True)),
        "confusion_matrix": confmat.tolist(),
    }
