"""Stacking samples into batches, with an error naming the files when they cannot be stacked."""

from collections import Counter

import torch
from torch.utils.data import default_collate

from segbench.data.dataset import SegmentationDataset
from segbench.errors import DataError

MIXED_SIZES_FIX = (
    "images batched together must have one size: resize them when read "
    "(data.dataset.height/width for folder data), train on crops (augment=crop), or use "
    "data.batch_size=1 (batch_size=1 for evaluate/export); `segbench check` lists the sizes"
)


def collate(dataset: SegmentationDataset, samples: list[dict]) -> dict[str, torch.Tensor]:
    """``default_collate`` of ``samples``, refusing images of different sizes by file name.

    A DataLoader's ``collate_fn`` (bound to its dataset with ``functools.partial``):
    PyTorch's own message ("stack expects each tensor to be equal size") names
    neither the files nor the fix.

    Raises:
        DataError: the samples' images differ in size; names the odd ones out.
    """
    sizes = [tuple(s["image"].shape[-2:]) for s in samples]
    if len(set(sizes)) > 1:
        common = Counter(sizes).most_common(1)[0][0]
        odd = [
            f"{dataset.samples[int(s['index'])].image} ({size[1]}x{size[0]})"
            for s, size in zip(samples, sizes, strict=True)
            if size != common
        ]
        raise DataError(
            dataset.root,
            f"a {dataset.split} batch mixes image sizes (WxH): most are "
            f"{common[1]}x{common[0]}, but {', '.join(odd[:3])}"
            + (f" and {len(odd) - 3} more" if len(odd) > 3 else ""),
            fix=MIXED_SIZES_FIX,
        )
    return default_collate(samples)
