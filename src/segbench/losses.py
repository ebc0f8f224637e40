"""Segmentation losses over logits ``(N, C, H, W)`` and targets ``(N, H, W)``.

Every loss takes ``ignore_index`` (pixels that count nowhere) and, where the
loss has a per-class term, ``class_weights`` (one weight per class, or None).
Dice, focal and Lovasz are segmentation_models_pytorch's; the wrappers here
fix their mode to multiclass and return a zero (with a gradient path) for a
batch with no labelled pixel, where smp 0.6.0 gives NaN (focal) or an empty
tensor (Lovasz).

:func:`build_loss` resolves ``loss.class_weights=none|median_freq|enet|[...]``
from the training split and instantiates ``conf/loss/<name>.yaml``.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segbench.data.class_weights import SCHEMES
from segbench.data.class_weights import class_weights as resolve_class_weights
from segbench.errors import ConfigError

log = logging.getLogger(__name__)


def _no_labels(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> torch.Tensor | None:
    """Zero with a gradient path when every pixel is ignored, else None."""
    if bool((target != ignore_index).any()):
        return None
    return logits.sum() * 0.0


def _as_list(class_weights: Sequence[float] | str | None) -> list[float] | None:
    """The weights as a list; ``"none"`` is None; a scheme name needs the data first."""
    if class_weights is None or class_weights == "none":
        return None
    if isinstance(class_weights, str):
        raise ConfigError(
            "loss.class_weights",
            class_weights,
            "is computed from the training split, which this loss was not given",
            fix="build the loss with segbench.losses.build_loss(cfg.loss, datamodule)",
        )
    return [float(w) for w in class_weights]


def _weights(class_weights: Sequence[float] | str | None) -> torch.Tensor | None:
    weights = _as_list(class_weights)
    return None if weights is None else torch.as_tensor(weights, dtype=torch.float)


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
        zero = _no_labels(logits, target, self.ignore_index)
        if zero is not None:
            return zero
        return F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


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


def unet_weight_map(
    mask: np.ndarray,
    ignore_index: int,
    class_weights: np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    background_index: int | None = None,
) -> np.ndarray:
    """U-Net's weight map ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))``.

    Objects are the connected components (8-neighbourhood) of each class's
    region; ``d1``/``d2`` are the distances (px) to the nearest and second-nearest
    object. With ``background_index`` set, as in the U-Net paper, objects are the
    components of the other classes and the border term is added on background
    pixels only (emphasising the gaps between touching objects); without it,
    every class region is an object and the term is added everywhere, so that
    ``d1 = 0`` inside an object and pixels near any class boundary weigh more.

    Args:
        mask: ``(H, W)`` train ids.
        ignore_index: Pixels with this value get weight 0.
        class_weights: ``(C,)`` weights ``w_c``; None: 1 for every class.
        w0: Border weight.
        sigma: Border width in pixels.
        background_index: Class treated as background, or None.

    Returns:
        ``(H, W)`` float32 weights.
    """
    valid = mask != ignore_index
    num = int(mask[valid].max()) + 1 if valid.any() else 1
    wc = np.ones(max(num, len(class_weights) if class_weights is not None else 0), np.float32)
    if class_weights is not None:
        wc[: len(class_weights)] = class_weights
    weight = np.where(valid, wc[np.where(valid, mask, 0)], 0.0).astype(np.float32)

    d1 = np.full(mask.shape, np.inf, np.float32)
    d2 = np.full(mask.shape, np.inf, np.float32)
    count = 0
    for cls in np.unique(mask[valid]):
        if cls == background_index:
            continue
        n, components = cv2.connectedComponents((mask == cls).astype(np.uint8), connectivity=8)
        for k in range(1, n):
            dist = cv2.distanceTransform(
                (components != k).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
            )
            d2 = np.minimum(d2, np.maximum(d1, dist))
            d1 = np.minimum(d1, dist)
            count += 1
    if count >= 2:
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
        region = valid if background_index is None else mask == background_index
        weight += np.where(region, border, 0.0).astype(np.float32)
    return weight


class BoundaryWeightedCE(nn.Module):
    """Cross-entropy weighted per pixel by U-Net's border weight map (:func:`unet_weight_map`).

    The map is computed on the fly from each target (on the CPU); the loss is the
    weighted mean ``sum(w * ce) / sum(w)`` over labelled pixels, so that with
    ``w0 = 0`` it equals class-weighted cross-entropy.

    Args:
        ignore_index: Target value that counts nowhere.
        class_weights: ``w_c``, one weight per class, or None (all 1).
        w0: Border weight (U-Net: 10).
        sigma: Border width in pixels (U-Net: 5).
        background_index: Class treated as background (U-Net's setting), or None.
    """

    def __init__(
        self,
        ignore_index: int,
        class_weights: Sequence[float] | None = None,
        w0: float = 10.0,
        sigma: float = 5.0,
        background_index: int | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index, self.w0, self.sigma = ignore_index, w0, sigma
        self.background_index = background_index
        weights = _as_list(class_weights)
        self.class_weights = None if weights is None else np.asarray(weights, np.float32)

    def weight_map(self, target: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` weights for a batch of targets."""
        maps = [
            unet_weight_map(
                t, self.ignore_index, self.class_weights, self.w0, self.sigma, self.background_index
            )
            for t in target.detach().cpu().numpy().astype(np.int64)
        ]
        return torch.from_numpy(np.stack(maps)).to(target.device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        zero = _no_labels(logits, target, self.ignore_index)
        if zero is not None:
            return zero
        weight = self.weight_map(target)
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        return (ce * weight).sum() / weight.sum().clamp(min=1e-12)


def build_loss(cfg: DictConfig, datamodule, cache_dir: Path | None = None) -> nn.Module:
    """Instantiates ``cfg`` (``conf/loss/*.yaml``) with its ``class_weights`` resolved.

    Args:
        cfg: The loss config; ``class_weights`` may be ``none``, ``median_freq``,
            ``enet`` or a list (see :mod:`segbench.data.class_weights`).
        datamodule: The :class:`~segbench.data.SegmentationDataModule`; its train
            split gives the statistics.
        cache_dir: Where label statistics are cached.
    """
    if "class_weights" not in cfg:
        return instantiate(cfg)
    scheme = cfg.class_weights
    if OmegaConf.is_config(scheme):
        scheme = OmegaConf.to_container(scheme, resolve=True)
    computed = isinstance(scheme, str) and scheme in SCHEMES and scheme != "none"
    weights = resolve_class_weights(
        scheme,
        datamodule.get_split("train") if computed else None,
        datamodule.num_classes,
        cache_dir,
    )
    return instantiate(cfg, class_weights=weights)
