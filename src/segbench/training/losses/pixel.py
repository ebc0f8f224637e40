"""Per-pixel losses: cross-entropy, and smp's Dice, focal and Lovasz with ignore handling.

Dice, focal and Lovasz are segmentation_models_pytorch's; the wrappers fix their
mode to multiclass and return a zero (with a gradient path) for a batch with no
labelled pixel, where smp 0.6.0 gives NaN (focal) or an empty tensor (Lovasz).
"""

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from segbench.training.losses.common import _as_list, _no_labels, _weights


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy, optionally class-weighted (mean over weights of labelled pixels).

    Args:
        ignore_index: Target value that counts nowhere.
        class_weights: One weight per class, or None.
        label_smoothing: As in :func:`torch.nn.functional.cross_entropy`.
    """

    def __init__(
        self,
        ignore_index: int,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing
        self.register_buffer("weight", _weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # PyTorch's weighted mean (the sum over the labelled pixels / their total weight),
        # with the division written out: an all-ignored batch gives zero with a gradient
        # path, and nothing is read back to the host to find out (a GPU step never waits).
        total = F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )
        valid = target != self.ignore_index
        if self.weight is None:
            weight = valid.sum()
        else:
            weight = (self.weight[target.masked_fill(~valid, 0)] * valid).sum()
        return total / weight.clamp(min=torch.finfo(total.dtype).tiny)


class DiceLoss(smp.losses.DiceLoss):
    """smp's multiclass soft Dice loss (classes absent from the batch count zero).

    Args:
        ignore_index: Target value that counts nowhere.
        class_weights: Per-class weights of the Dice terms, or None.
        smooth: Smoothing added to numerator and denominator.
        log_loss: ``-log(dice)`` instead of ``1 - dice``.
    """

    def __init__(
        self,
        ignore_index: int,
        class_weights: Sequence[float] | None = None,
        smooth: float = 0.0,
        log_loss: bool = False,
    ) -> None:
        super().__init__(
            mode="multiclass",
            ignore_index=ignore_index,
            smooth=smooth,
            log_loss=log_loss,
            class_weights=_as_list(class_weights),
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        zero = _no_labels(logits, target, self.ignore_index)
        return zero if zero is not None else super().forward(logits, target)


class FocalLoss(smp.losses.FocalLoss):
    """smp's multiclass focal loss (one-vs-rest per class, averaged over classes).

    Args:
        ignore_index: Target value that counts nowhere.
        class_weights: Per-class weights of the class terms, or None.
        gamma: Focusing parameter.
        alpha: Prior of the positive class, or None.
    """

    def __init__(
        self,
        ignore_index: int,
        class_weights: Sequence[float] | None = None,
        gamma: float = 2.0,
        alpha: float | None = None,
    ) -> None:
        super().__init__(
            mode="multiclass",
            ignore_index=ignore_index,
            gamma=gamma,
            alpha=alpha,
            class_weights=_as_list(class_weights),
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        zero = _no_labels(logits, target, self.ignore_index)
        return zero if zero is not None else super().forward(logits, target)


class LovaszLoss(smp.losses.LovaszLoss):
    """smp's Lovasz-softmax loss (a surrogate of the Jaccard index; classes present in the batch).

    Args:
        ignore_index: Target value that counts nowhere.
        per_image: Average the loss over images instead of over the batch's pixels.
    """

    def __init__(self, ignore_index: int, per_image: bool = False) -> None:
        super().__init__(mode="multiclass", ignore_index=ignore_index, per_image=per_image)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        zero = _no_labels(logits, target, self.ignore_index)
        return zero if zero is not None else super().forward(logits, target)


class CEDiceLoss(nn.Module):
    """``ce_weight * cross-entropy + dice_weight * Dice``, both class-weighted alike.

    Args:
        ignore_index: Target value that counts nowhere.
        class_weights: One weight per class, or None.
        ce_weight: Factor of the cross-entropy term.
        dice_weight: Factor of the Dice term.
    """

    def __init__(
        self,
        ignore_index: int,
        class_weights: Sequence[float] | None = None,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.ce = CrossEntropyLoss(ignore_index, class_weights)
        self.dice = DiceLoss(ignore_index, class_weights)
        self.ce_weight, self.dice_weight = ce_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * self.ce(logits, target) + self.dice_weight * self.dice(
            logits, target
        )
