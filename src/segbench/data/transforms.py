"""albumentations pipelines: the configured augmentations, then normalisation."""

from collections.abc import Sequence

import albumentations as A
from albumentations.pytorch import ToTensorV2


def build_transform(
    mean: Sequence[float], std: Sequence[float], augment: Sequence[A.BasicTransform] = ()
) -> A.Compose:
    """``augment`` (training only), then normalisation by ``mean``/``std`` and to-tensor.

    Args:
        mean: Per-channel mean of images scaled to [0, 1].
        std: Per-channel standard deviation of images scaled to [0, 1].
        augment: albumentations transforms, applied to image and mask together
            (masks use nearest interpolation; padding uses the ignore index as
            configured in ``conf/augment``).
    """
    return A.Compose(
        [*augment, A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]
    )
