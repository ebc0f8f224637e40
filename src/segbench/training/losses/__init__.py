"""Segmentation losses over logits ``(N, C, H, W)`` and targets ``(N, H, W)``.

Every loss takes ``ignore_index`` (pixels that count nowhere) and, where the
loss has a per-class term, ``class_weights`` (one weight per class, or None).
:func:`build_loss` resolves ``loss.class_weights=none|median_freq|enet|[...]``
from the training split and instantiates ``conf/loss/<name>.yaml``.
"""

from segbench.training.losses.boundary import BoundaryWeightedCE, unet_weight_map
from segbench.training.losses.build import build_loss
from segbench.training.losses.ohem import OhemCrossEntropy
from segbench.training.losses.pixel import (
    CEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszLoss,
)

__all__ = [
    "BoundaryWeightedCE",
    "CEDiceLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "LovaszLoss",
    "OhemCrossEntropy",
    "build_loss",
    "unet_weight_map",
]
