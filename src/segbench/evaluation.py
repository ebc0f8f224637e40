"""evaluate(cfg): rebuild a network from its checkpoint and score it on a split."""

import json
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from segbench.metrics import ConfusionMatrix, scores
from segbench.models import load_network

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """Scores ``cfg.ckpt_path`` on ``cfg.split`` and writes ``eval.json`` to the output dir.

    The dataset is the checkpoint's own unless ``cfg.data`` is given. Scores
    come from the same confusion matrix code as training's validation.
    """
    net, hparams = load_network(cfg.ckpt_path)
    data_cfg = cfg.get("data") or OmegaConf.create(hparams["datamodule"])
    datamodule = instantiate(data_cfg, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    datamodule.prepare_data()
    device = torch.device(cfg.device)
    net.to(device)
    confmat = ConfusionMatrix(hparams["data"]["num_classes"], hparams["data"]["ignore_index"])
    confmat.to(device)
    with torch.inference_mode():
        for batch in datamodule.loader(cfg.split):
            confmat.update(net(batch["image"].to(device)).argmax(1), batch["mask"].to(device))
    result = scores(confmat.compute().cpu())
    names = hparams["data"]["class_names"]
    report = {
        "ckpt_path": str(cfg.ckpt_path),
        "split": cfg.split,
        "miou": result["miou"].item(),
        "pixel_acc": result["pixel_acc"].item(),
        "mean_acc": result["mean_acc"].item(),
        "per_class_iou": dict(zip(names, result["iou"].tolist(), strict=True)),
        "per_class_acc": dict(zip(names, result["acc"].tolist(), strict=True)),
        "confusion_matrix": confmat.compute().cpu().tolist(),
    }
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    log.info("%s mIoU %.4f, pixel acc %.4f -> %s", cfg.split, report["miou"],
             report["pixel_acc"], out / "eval.json")
    return report

