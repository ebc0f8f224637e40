"""evaluate(cfg): rebuild a network from its checkpoint and score it on a split."""

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from segbench.data.datamodule import SegmentationDataModule, data_for_checkpoint
from segbench.errors import ConfigError
from segbench.evaluation.cityscapes import evaluate_predictions
from segbench.evaluation.metrics import ConfusionMatrix, scores
from segbench.evaluation.visualize import overlay_grid, plot_confusion_matrix
from segbench.files import write_json, write_text
from segbench.models import load_network
from segbench.runtimes import Predictor, make_predictor
from segbench.runtimes.pytorch import torch_device

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    """Scores ``cfg.ckpt_path`` on ``cfg.split`` and writes its report to the output dir.

    The dataset is the checkpoint's own (``data.root=`` re-points it) unless
    ``data=<name>`` picks another (:func:`checkpoint_data`). Scores come from
    the same confusion matrix code as training's validation. With
    ``cfg.predictions`` set, scores that folder of Cityscapes label-id PNGs
    instead (:func:`evaluate_cityscapes_folder`).

    Writes ``eval.json``, ``eval.md`` (per-class table), ``confusion_matrix.png``
    and ``overlays.png`` (image | ground truth | prediction of frames spread over
    the split, with a colour legend).
    """
    if cfg.get("predictions"):
        return evaluate_cityscapes_folder(cfg)
    torch_device(cfg.device)  # no CUDA here: say so before loading anything
    net, hparams = load_network(cfg.ckpt_path)
    datamodule = checkpoint_data(cfg, hparams)
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
        split = datamodule.get_split(cfg.split)
        picked = spread_indices(len(split), cfg.num_overlays)
        samples = stack_samples(split, picked)
        overlay_grid(
            samples["image"],
            samples["mask"],
            predict(samples["image"]).cpu(),
            meta,
            out / "overlays.png",
            row_labels=[f"{cfg.split} #{i}" for i in picked],
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


def checkpoint_data(cfg: DictConfig, hparams: dict) -> SegmentationDataModule:
    """The dataset to score or export a checkpoint on (evaluate.py, export.py).

    ``data=<name> data.root=...`` on the command line names a dataset of the user's own.
    Otherwise the checkpoint's stored dataset config is used, and each ``data.<key>=``
    given without ``data=<name>`` (``data.root=<folder>``: the same dataset moved)
    replaces the stored value. A relative stored root (checkpoints of older versions;
    train.py now stores it absolute) is taken from the current directory if it exists
    there, else refused naming ``data.root``.
    """
    data = container(cfg.get("data")) or {}
    loader = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers}
    if data.get("_target_"):
        return data_for_checkpoint(hparams, data, **loader)
    overrides = {k: v for k, v in data.items() if v is not None}
    stored = hparams.get("datamodule")
    if "root" not in overrides and isinstance(stored, dict) and stored.get("root"):
        overrides["root"] = stored_root(str(stored["root"]), str(cfg.ckpt_path))
    return data_for_checkpoint(hparams, None, **overrides, **loader)


def stored_root(root: str, ckpt_path: str) -> str:
    """A checkpoint's dataset root, absolute; a relative one must exist from the current dir.

    Raises:
        ConfigError: a relative root that does not exist here, naming ``data.root`` and the fix.
    """
    path = Path(root)
    if path.is_absolute():
        return root
    if path.exists():
        log.warning("the checkpoint's data.root %r is relative: using %s", root, path.resolve())
        return str(path.resolve())
    raise ConfigError(
        "data.root",
        root,
        f"{ckpt_path} stores a relative dataset root (relative to where it was trained), "
        f"and {path.resolve()} does not exist",
        fix=f"point at the dataset: ckpt_path={ckpt_path} data.root=<dataset folder>",
    )


def spread_indices(length: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(length)``, first and last included."""
    if count <= 0 or length <= 0:
        return []
    if count >= length:
        return list(range(length))
    if count == 1:
        return [0]
    return [round(i * (length - 1) / (count - 1)) for i in range(count)]


def stack_samples(dataset, indices: list[int]) -> dict[str, torch.Tensor]:
    """The samples ``indices`` of ``dataset``, images and masks stacked (overlay pictures)."""
    samples = [dataset[i] for i in indices]
    return {
        key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in ("image", "mask")
    }


def _pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def container(node) -> dict | None:
    """A config node as a resolved plain dict (None stays None)."""
    return OmegaConf.to_container(node, resolve=True) if node else None
