"""Accuracy after export: the scored split through PyTorch and every exported runtime.

The same metric code scores them all (:func:`segbench.evaluation.evaluate.score_split`);
``export.json`` gets each runtime's mIoU and per-class IoU, the mIoU difference
to PyTorch in points and the classes that moved by more than a point.
"""

import itertools
import math

import torch
from omegaconf import DictConfig

from segbench.evaluation.evaluate import score_split, summarize
from segbench.runtimes.pytorch import Predictor, torch_predictor

#: Per-class IoU changes above this many points are listed in ``class_delta_points``.
CLASS_DELTA_POINTS = 1.0


def accuracy(cfg: DictConfig, net: torch.nn.Module, models: dict, datamodule, meta: dict) -> dict:
    """mIoU and per-class IoU of PyTorch and of every exported runtime on ``cfg.split``.

    Returns:
        ``split``, ``images``, ``miou`` and ``per_class_iou`` per runtime,
        ``miou_delta_points`` (runtime - PyTorch, in points) and
        ``class_delta_points`` (classes whose IoU moved by more than
        :data:`CLASS_DELTA_POINTS`).
    """
    limit = cfg.get("evaluate_images")
    batches = math.ceil(limit / cfg.batch_size) if limit else None
    count = len(datamodule.get_split(cfg.split))
    result = {
        "split": cfg.split,
        "images": min(count, batches * cfg.batch_size) if batches else count,
        "miou": {},
        "per_class_iou": {},
    }
    predictors = [("pytorch", torch_predictor(net, torch.device(cfg.device))), *models.items()]
    for name, predict in predictors:
        rescore(cfg, result, name, predict, datamodule, meta)
    return result


def rescore(
    cfg: DictConfig, result: dict, name: str, predict: Predictor, datamodule, meta: dict
) -> float | None:
    """Scores ``predict`` as runtime ``name`` into ``result`` (of :func:`accuracy`).

    Returns:
        The runtime's mIoU minus PyTorch's, in points (``None`` for PyTorch itself).
    """
    limit = cfg.get("evaluate_images")
    batches = math.ceil(limit / cfg.batch_size) if limit else None
    summary = summarize(
        score_split(
            predict,
            itertools.islice(datamodule.loader(cfg.split), batches),
            meta["num_classes"],
            meta["ignore_index"],
        ),
        meta["class_names"],
    )
    result["miou"][name] = summary["miou"]
    result["per_class_iou"][name] = summary["per_class_iou"]
    _deltas(result)
    return result["miou_delta_points"].get(name)


def _deltas(result: dict) -> None:
    ref, ref_classes = result["miou"].get("pytorch"), result["per_class_iou"].get("pytorch")
    if ref is None:
        return
    result["miou_delta_points"] = {
        name: round((value - ref) * 100, 4)
        for name, value in result["miou"].items()
        if name != "pytorch"
    }
    result["class_delta_points"] = {}
    for name, classes in result["per_class_iou"].items():
        if name == "pytorch":
            continue
        moved = {
            cls: round((iou - ref_classes[cls]) * 100, 2)
            for cls, iou in classes.items()
            if not (math.isnan(iou) or math.isnan(ref_classes[cls]))
            and abs(iou - ref_classes[cls]) * 100 > CLASS_DELTA_POINTS
        }
        result["class_delta_points"][name] = moved
