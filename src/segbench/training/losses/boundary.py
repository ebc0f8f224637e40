"""U-Net's border-weighted cross-entropy (Ronneberger et al., 2015)."""

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segbench.training.losses.common import _as_list, _no_labels


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
