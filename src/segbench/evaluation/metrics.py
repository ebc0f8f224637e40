"""Segmentation scores from one confusion matrix, shared by training and evaluation."""

import torch
from torchmetrics.classification import MulticlassConfusionMatrix


class ConfusionMatrix(MulticlassConfusionMatrix):
    """torchmetrics' confusion matrix (rows = ground truth) over predicted label maps.

    Pixels whose ground truth is ``ignore_index`` count nowhere. Updates take
    label maps ``(N, H, W)`` (or logits ``(N, C, H, W)``, reduced by argmax).
    """

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        # Inputs are checked where they are read; per-update validation costs a sync.
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, validate_args=False)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(1)
        super().update(preds, target)


def scores(confmat: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU per class, mIoU, pixel accuracy and class-average accuracy.

    Args:
        confmat: ``(C, C)`` counts, rows = ground truth, columns = prediction.

    Returns:
        ``iou`` ``(C,)`` (NaN for a class absent from both ground truth and
        prediction), ``miou`` (mean over the other classes), ``pixel_acc``,
        ``acc`` ``(C,)`` per-class recall (NaN where absent from ground truth)
        and ``mean_acc``.
    """
    confmat = confmat.double()
    tp = confmat.diag()
    gt = confmat.sum(1)
    pred = confmat.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.nan)
    return {
        "iou": iou,
        "miou": iou.nanmean(),
        "pixel_acc": tp.sum() / confmat.sum().clamp(min=1),
        "acc": acc,
        "mean_acc": acc.nanmean(),
    }
