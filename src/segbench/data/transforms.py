"""albumentations pipelines: the configured augmentations, then normalisation."""

from collections.abc import Sequence

import albumentations as A
import torch
from albumentations.pytorch import ToTensorV2


def build_transform(
    mean: Sequence[float],
    std: Sequence[float],
    augment: Sequence[A.BasicTransform] = (),
    normalize: bool = True,
) -> A.Compose:
    """``augment`` (training only), then normalisation by ``mean``/``std`` and to-tensor.

    Args:
        mean: Per-channel mean of images scaled to [0, 1].
        std: Per-channel standard deviation of images scaled to [0, 1].
        augment: albumentations transforms, applied to image and mask together
            (masks use nearest interpolation; padding uses the ignore index as
            configured in ``conf/augment``).
        normalize: False leaves the image uint8 (a ``(3, H, W)`` tensor) for
            :func:`normalize_uint8` to normalise after the copy to the device.
    """
    norm = [A.Normalize(mean=mean, std=std, max_pixel_value=255.0)] if normalize else []
    return A.Compose([*augment, *norm, ToTensorV2()])


def pixel_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` of [0, 1] images as ``(1, C, 1, 1)`` tensors on the 0-255 scale,
    for :func:`normalize_uint8`."""
    return (
        torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0,
        torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0,
    )


def normalize_uint8(
    images: torch.Tensor, mean255: torch.Tensor, std255: torch.Tensor
) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` frames -> float32, normalised as :func:`build_transform` does
    (``(x / 255 - mean) / std``), with the statistics of :func:`pixel_stats`."""
    return (images.float() - mean255) / std255
