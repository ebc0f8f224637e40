"""evaluate(cfg): rebuild a network from its checkpoint and score it on a split."""

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from segbench.data.datamodule import data_for_checkpoint
from segbench.errors import ConfigError
from segbench.evaluation.cityscapes import evaluate_predictions
from segbench.evaluation.metrics import ConfusionMatrix, scores
from segbench.evaluation.visualize import overlay_grid, plot_confusion_matrix
from segbench.files import write_json, write_text
from segbench.models import load_network
from segbench.runtimes import Predictor, make_predictor

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """Scores ``cfg.ckpt_path`` on ``cfg.split`` and writes its report to the output dir.

    The dataset is the checkpoint's own unless ``cfg.data`` is given. Scores
    come from the same confusion matrix code as training's validation. With
    ``cfg.predictions`` set, scores that folder of Cityscapes label-id PNGs
    instead (:func:`evaluate_cityscapes_folder`).

    Writes ``eval.json``, ``eval.md`` (per-class table), ``confusion_matrix.png``
    and ``overlays.png`` (image | ground truth | prediction).
    """
    if cfg.get("predictions"):
        return evaluate_cityscapes_folder(cfg)
    net, hparams = load_network(cfg.ckpt_path)
    datamodule = data_for_checkpoint(
        hparams, container(cfg.get("data")), batch_size=cfg.batch_size, num_workers=cfg.num_workers
    )
    meta = hparams["data"]
    predict = make_predictor(cfg.get("runtime"), net, cfg.device, cfg.get("model_path"))
    confmat = score_split(
        predict, datamodule.loader(cfg.split), meta["num_classes"], meta["ignore_index"]
    )
    report = {
        "ckpt_path": str(cfg.ckpt_path),
        "split": cfg.split,
        "runtime": cfg.get("runtime") or "pytorch",
        "model_path": cfg.get("model_path"),
        **summarize(confmat, meta["class_names"]),
    }
    out = Path(cfg.paths.output_dir)
    write_json(out / "eval.json", report)
    write_text(out / "eval.md", markdown_table(report, title=f"{cfg.split}: {cfg.ckpt_path}"))
    plot_confusion_matrix(confmat, meta["class_names"], out / "confusion_matrix.png")
    if cfg.get("num_overlays", 0) > 0:
        samples = first_samples(datamodule.get_split(cfg.split), cfg.num_overlays)
        overlay_grid(
            samples["image"],
            samples["mask"],
            predict(samples["image"]).cpu(),
            meta,
            out / "overlays.png",
        )
    log.info(
        "%s mIoU %.4f, pixel acc %.4f -> %s",
        cfg.split,
        report["miou"],
        report["pixel_acc"],
        out / "eval.json",
    )
    return report


def evaluate_cityscapes_folder(cfg: DictConfig) -> dict:
    """Scores ``cfg.predictions`` (label-id PNGs) against Cityscapes ``gtFine`` like the official script.

    The ground-truth root is ``cfg.gt_root``, else ``cfg.data.root``.
    """
    root = cfg.get("gt_root") or OmegaConf.select(cfg, "data.root")
    if not root:
        raise ConfigError(
            "gt_root",
            root,
            "no Cityscapes root to read gtFine/ from",
            fix="pass gt_root=<Cityscapes folder> (or data=cityscapes data.root=...)",
        )
    result = {
        "predictions": str(cfg.predictions),
        "gt_root": str(root),
        "split": cfg.split,
        **evaluate_predictions(
            Path(root), Path(cfg.predictions), cfg.split, instances=cfg.get("instances", True)
        ),
    }
    out = Path(cfg.paths.output_dir)
    write_json(out / "eval.json", result)
    lines = [
        f"# {cfg.split}: {cfg.predictions}",
        "",
        f"IoU class {_pct(result['miou'])}, iIoU class {_pct(result.get('miiou'))}, "
        f"IoU category {_pct(result['category_miou'])}, "
        f"iIoU category {_pct(result.get('category_miiou'))}",
        "",
        "| class | IoU | iIoU |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {_pct(iou)} | {_pct(result.get('class_iiou', {}).get(name))} |"
        for name, iou in result["class_iou"].items()
    ]
    write_text(out / "eval.md", "\n".join(lines) + "\n")
    log.info(
        "IoU class %.4f, category %.4f -> %s",
        result["miou"],
        result["category_miou"],
        out / "eval.json",
    )
    return result


def score_split(
    predict: Predictor, batches: Iterable[dict], num_classes: int, ignore_index: int
) -> torch.Tensor:
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


def markdown_table(report: dict, title: str = "") -> str:
    """Per-class IoU and accuracy of :func:`summarize`'s output as a Markdown table."""
    lines = [f"# {title}", ""] if title else []
    lines += [
        f"mIoU {_pct(report['miou'])}, pixel accuracy {_pct(report['pixel_acc'])}, "
        f"class-average accuracy {_pct(report['mean_acc'])}",
        "",
        "| class | IoU | accuracy |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {_pct(iou)} | {_pct(report['per_class_acc'][name])} |"
        for name, iou in report["per_class_iou"].items()
    ]
    return "\n".join(lines) + "\n"


def first_samples(dataset, count: int) -> dict[str, torch.Tensor]:
    """The first ``count`` samples of ``dataset`` stacked (for overlay pictures)."""
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    return {
        key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in ("image", "mask")
    }


def _pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def container(node) -> dict | None:
    """A config node as a resolved plain dict (None stays None)."""
    return OmegaConf.to_container(node, resolve=True) if node else None
