"""Cityscapes pixel-level scores of a folder of prediction PNGs, as the official script computes them.

``csEvalPixelLevelSemanticLabeling`` (cityscapesScripts) defines the numbers:
predictions are label *ids* (``helpers/labels.py``), one PNG per ground-truth
image named ``<city>_<seq>_<frame>*.png``; the confusion matrix runs over every
label id, and

- class IoU = TP / (TP + FP + FN) for the 19 evaluated classes, FP counted only
  on pixels whose ground truth is an evaluated class, FN including pixels
  predicted as an ignored id;
- category IoU merges the evaluated classes of each category;
- iIoU weights each ground-truth instance's TP and FN by
  ``avgClassSize[class] / instanceSize`` (instances from ``*_instanceIds.png``).

Here the counting goes through segbench's confusion matrix (torchmetrics) and
the class/category IoU through :func:`segbench.evaluation.metrics.scores`, so the numbers
agree with the official script (to float rounding) while sharing training's code.
"""

import fnmatch
import logging
import os
from pathlib import Path

import numpy as np
import torch
from cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling import args as official_args
from cityscapesscripts.helpers.labels import category2labels, id2label, labels
from PIL import Image

from segbench.errors import DataError
from segbench.evaluation.metrics import ConfusionMatrix, scores

log = logging.getLogger(__name__)

#: Every label id the official confusion matrix covers (license plate, id -1, is not one).
LABEL_IDS = sorted(label.id for label in labels if label.id >= 0)
NUM_IDS = max(LABEL_IDS) + 1
#: The evaluated classes (trainId 0..18), by label id.
EVAL_IDS = [label.id for label in labels if label.id >= 0 and not label.ignoreInEval]
#: The void category's label ids (0..6: unlabeled ... ground): never evaluated, never a
#: trained model's output, but what train ids 0..6 (road ... traffic light) read as.
VOID_IDS = [label.id for label in labels if label.id >= 0 and label.category == "void"]
#: Mean instance size per class over the training set; the official script's own table.
AVG_CLASS_SIZE: dict[str, float] = dict(official_args.avgClassSize)


def find_pairs(gt_root: Path, predictions: Path, split: str = "val") -> list[tuple[Path, Path]]:
    """Pairs ``gtFine/<split>/*/*_gtFine_labelIds.png`` with their prediction files.

    Raises:
        DataError: no ground truth, or a ground-truth image with no (or several) predictions.
    """
    gt_dir = Path(gt_root) / "gtFine" / split
    gt_files = sorted(gt_dir.glob("*/*_gtFine_labelIds.png"))
    if not gt_files:
        raise DataError(
            gt_dir,
            "no *_gtFine_labelIds.png files",
            fix="point gt_root (or data.root) at the Cityscapes folder that holds gtFine/",
        )
    if not Path(predictions).is_dir():
        raise DataError(
            predictions,
            "prediction folder not found",
            fix="pass predictions=<folder of <city>_<seq>_<frame>*.png label-id images>",
        )
    walk = [(root, files) for root, _, files in os.walk(predictions)]
    pairs = []
    for gt in gt_files:
        city, seq, frame = gt.name.split("_")[:3]
        pattern = f"{city}_{seq}_{frame}*.png"
        found = [Path(root) / f for root, files in walk for f in fnmatch.filter(files, pattern)]
        if len(found) != 1:
            problem = "no prediction" if not found else f"{len(found)} predictions ({found[:3]})"
            raise DataError(
                predictions,
                f"{problem} matching {pattern} for ground truth {gt}",
                fix="write exactly one <city>_<seq>_<frame>*.png per ground-truth image",
            )
        pairs.append((found[0], gt))
    return pairs


def evaluate_predictions(
    gt_root: Path, predictions: Path, split: str = "val", instances: bool = True
) -> dict:
    """Scores a folder of label-id PNGs against Cityscapes ``gtFine``.

    Args:
        gt_root: Cityscapes root (holds ``gtFine/<split>/<city>/``).
        predictions: Folder searched recursively for the prediction PNGs.
        split: ``gtFine`` split.
        instances: Also compute iIoU from ``*_gtFine_instanceIds.png``.

    Returns:
        ``class_iou`` / ``class_iiou`` / ``category_iou`` / ``category_iiou``
        (name -> score, NaN where undefined, as the official script) with their
        averages ``miou`` / ``miiou`` / ``category_miou`` / ``category_miiou``,
        the ``(34, 34)`` label-id ``confusion_matrix`` and the number of images.
    """
    confmat = ConfusionMatrix(NUM_IDS, ignore_index=-1)
    inst = _InstanceStats()
    pairs = find_pairs(gt_root, predictions, split)
    for pred_file, gt_file in pairs:
        pred, gt = _read_ids(pred_file), _read_ids(gt_file)
        if pred.shape != gt.shape:
            raise DataError(
                pred_file,
                f"size {pred.shape[::-1]} differs from ground truth {gt_file} {gt.shape[::-1]}",
            )
        for ids, path in ((pred, pred_file), (gt, gt_file)):
            bad = np.setdiff1d(np.unique(ids), LABEL_IDS)
            if bad.size:
                raise DataError(
                    path,
                    f"values {bad.tolist()[:5]} are no Cityscapes label ids (0..{NUM_IDS - 1})",
                    fix="write label ids (helpers/labels.py `id`), not train ids or colours",
                )
        confmat.update(
            torch.from_numpy(pred.astype(np.int64))[None],
            torch.from_numpy(gt.astype(np.int64))[None],
        )
        if instances:
            inst_file = gt_file.with_name(gt_file.name.replace("labelIds", "instanceIds"))
            inst.add(pred, _read_ids(inst_file))
    matrix = confmat.compute().double()
    check_label_ids(predictions, matrix)
    result = {"images": len(pairs), **_iou_scores(matrix)}
    if instances:
        result.update(inst.scores(matrix))
    result["confusion_matrix"] = matrix.long().tolist()
    log.info(
        "%d images: IoU class %.4f, category %.4f",
        len(pairs),
        result["miou"],
        result["category_miou"],
    )
    return result


def check_label_ids(predictions: Path, matrix: torch.Tensor) -> None:
    """Refuses predictions that are train ids (0..18) written where label ids belong.

    Train ids are valid label ids too, so the official script scores such files
    without complaint, at about 0. They are recognised by their values: none above
    18 (no vegetation, sky, person or car as label ids), and more than a tenth of
    the pixels on the void category's ids (0..6), which a model trained on
    Cityscapes never predicts as label ids but which are train ids 0..6 (road,
    sidewalk, building, wall, fence, pole, traffic light).

    Raises:
        DataError: naming the prediction folder, the evidence and the conversion.
    """
    predicted = matrix.sum(0)  # pixels per predicted label id
    total = float(predicted.sum())
    if total == 0:
        return
    highest = int(torch.nonzero(predicted).max())
    void_share = float(predicted[VOID_IDS].sum()) / total
    if highest <= 18 and void_share > 0.1:
        raise DataError(
            predictions,
            f"these look like train ids, not label ids: no value is above 18 and "
            f"{void_share:.0%} of the predicted pixels are void label ids (0-6: unlabeled ... "
            "ground), which are never evaluated; scored as label ids they give an IoU near 0",
            fix="write label ids: segbench.data.cityscapes.to_label_ids(train_ids) maps "
            "each prediction before it is saved",
        )


def _read_ids(path: Path) -> np.ndarray:
    try:
        array = np.array(Image.open(path))
    except OSError as err:
        raise DataError(path, f"cannot be read as an image ({err})") from None
    if array.ndim != 2:
        raise DataError(
            path,
            f"has {array.shape[2]} channels; label-id images have one",
            fix="save single-channel PNGs of label ids",
        )
    return array


def _mean(values: dict[str, float]) -> float:
    valid = [v for v in values.values() if not np.isnan(v)]
    return float(np.mean(valid)) if valid else float("nan")


def _iou_scores(matrix: torch.Tensor) -> dict:
    """Class and category IoU from the label-id confusion matrix, through ``scores``."""
    groups = {id2label[i].name: [i] for i in EVAL_IDS}
    class_iou = _grouped_iou(matrix, groups)
    categories = {
        cat: [lab.id for lab in labs if lab.id >= 0 and not lab.ignoreInEval]
        for cat, labs in category2labels.items()
    }
    category_iou = _grouped_iou(matrix, {c: ids for c, ids in categories.items() if ids})
    # Categories without an evaluated class (void) score NaN, as in the official script.
    category_iou = {c: category_iou.get(c, float("nan")) for c in categories}
    return {
        "class_iou": class_iou,
        "miou": _mean(class_iou),
        "category_iou": category_iou,
        "category_miou": _mean(category_iou),
    }


def _grouped_iou(matrix: torch.Tensor, groups: dict[str, list[int]]) -> dict[str, float]:
    """IoU per group of label ids on a matrix reduced to those groups + one 'other'.

    Rows of ignored ground truth are dropped (no FP counted there); predictions
    of ignored or out-of-group ids fall into 'other' (FN of the true group).
    """
    k = len(groups)
    assign = torch.full((NUM_IDS,), k, dtype=torch.long)
    for g, ids in enumerate(groups.values()):
        assign[ids] = g
    project = torch.nn.functional.one_hot(assign, k + 1).double()  # (34, k+1)
    evaluated = torch.zeros(NUM_IDS, dtype=torch.double)
    evaluated[EVAL_IDS] = 1.0
    reduced = project.T @ (matrix * evaluated[:, None]) @ project
    iou = scores(reduced)["iou"][:k]
    return dict(zip(groups, iou.tolist(), strict=True))


class _InstanceStats:
    """Instance-weighted TP/FN per class and per all-instance category (official iIoU)."""

    def __init__(self) -> None:
        self.classes = {
            lab.name: [0.0, 0.0] for lab in labels if lab.hasInstances and not lab.ignoreInEval
        }
        # Categories whose every (real) label has instances: human, vehicle.
        self.categories = {}
        for cat, labs in category2labels.items():
            labs = [lab for lab in labs if lab.id >= 0]
            if labs and all(lab.hasInstances for lab in labs):
                self.categories[cat] = {"ids": [lab.id for lab in labs], "tp_fn": [0.0, 0.0]}

    def add(self, pred: np.ndarray, instance_map: np.ndarray) -> None:
        cat_masks = {c: np.isin(pred, v["ids"]) for c, v in self.categories.items()}
        for inst_id in np.unique(instance_map[instance_map > 1000]):
            label = id2label[int(inst_id) // 1000]
            if label.ignoreInEval:
                continue
            mask = instance_map == inst_id
            size = int(mask.sum())
            weight = AVG_CLASS_SIZE[label.name] / size
            tp = int(np.count_nonzero(pred[mask] == label.id))
            stats = self.classes[label.name]
            stats[0] += tp * weight
            stats[1] += (size - tp) * weight
            if label.category in self.categories:
                cat_tp = int(np.count_nonzero(cat_masks[label.category][mask]))
                cat_stats = self.categories[label.category]["tp_fn"]
                cat_stats[0] += cat_tp * weight
                cat_stats[1] += (size - cat_tp) * weight

    def scores(self, matrix: torch.Tensor) -> dict:
        class_iiou = {id2label[i].name: float("nan") for i in LABEL_IDS}
        for lab in labels:
            if lab.name in self.classes:
                class_iiou[lab.name] = self._iiou(
                    matrix, self.classes[lab.name], _fp(matrix, [lab.id], exclude=[lab.id])
                )
        class_iiou = {id2label[i].name: class_iiou[id2label[i].name] for i in EVAL_IDS}
        category_iiou = {c: float("nan") for c in category2labels}
        for cat, v in self.categories.items():
            others = [lab.id for lab in labels if lab.id >= 0 and lab.category == cat]
            category_iiou[cat] = self._iiou(matrix, v["tp_fn"], _fp(matrix, v["ids"], others))
        return {
            "class_iiou": class_iiou,
            "miiou": _mean(class_iiou),
            "category_iiou": category_iiou,
            "category_miiou": _mean(category_iiou),
        }

    @staticmethod
    def _iiou(matrix: torch.Tensor, tp_fn: list[float], fp: float) -> float:
        denom = tp_fn[0] + tp_fn[1] + fp
        return tp_fn[0] / denom if denom > 0 else float("nan")


def _fp(matrix: torch.Tensor, pred_ids: list[int], exclude: list[int]) -> float:
    """Pixels predicted as ``pred_ids`` whose ground truth is evaluated and not in ``exclude``."""
    rows = [i for i in EVAL_IDS if i not in exclude]
    return float(matrix[rows][:, pred_ids].sum())
