"""The dataset base every loader shares: reading, label mapping, checking, transforms."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from segbench.data.reading import (
    IMAGE_SUFFIXES,
    SampleError,
    check_size,
    image_size,
    read_image,
    read_label,
    resize_mask,
    resize_pair,
)
from segbench.errors import ConfigError, DataError

__all__ = ["IMAGE_SUFFIXES", "Resized", "Sample", "SampleError", "SegmentationDataset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One image and its label map (``mask`` is None where a split has no labels)."""

    image: Path
    mask: Path | None


ON_BAD_SAMPLE = ("error", "skip")


def check_policy(on_bad_sample: str) -> None:
    """Refuses an unknown ``data.on_bad_sample`` policy."""
    if on_bad_sample not in ON_BAD_SAMPLE:
        raise ConfigError(
            "data.on_bad_sample",
            on_bad_sample,
            "unknown policy",
            allowed=ON_BAD_SAMPLE,
            fix="use error (stop) or skip (log and leave out)",
        )


class SegmentationDataset(Dataset):
    """Pairs of image and label map, read, mapped to train ids, checked and transformed.

    Subclasses list the samples of a split in the dataset's official layout
    (:meth:`list_samples`, reporting unpaired files with :meth:`bad_file`) and
    may map raw label values to train ids with a 256-entry lookup table
    (``label_map``). Every mask is checked when read: same size as its image,
    values in ``[0, num_classes)`` or ``ignore_index``.

    Args:
        root: Dataset root folder.
        split: ``train``, ``val`` or ``test``.
        num_classes: Number of classes.
        ignore_index: Label of pixels that count in neither loss nor metrics.
        transform: albumentations-style callable ``(image=, mask=) -> dict``.
        on_bad_sample: ``error`` raises on the first damaged or unpaired file;
            ``skip`` logs each one and leaves it out (a damaged file found while
            loading is replaced by the next good sample).
    """

    #: Where the public data comes from (for the error on a missing root).
    source: str = ""
    #: Optional 256-entry lookup table: raw mask value -> train id.
    label_map: np.ndarray | None = None
    #: Splits the layout defines (the checker visits each).
    splits: tuple[str, ...] = ("train", "val", "test")
    #: Decoded samples in memory (:class:`segbench.data.cache.DecodedCache`), or None.
    decoded = None
    #: Keep uint8 masks uint8 (``data.uint8_batches``: the device widens them); else int64.
    uint8_masks = False

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int,
        ignore_index: int,
        transform: Callable | None = None,
        on_bad_sample: str = "error",
    ) -> None:
        check_policy(on_bad_sample)
        self.root = Path(root)
        self.split = split
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform = transform
        self.on_bad_sample = on_bad_sample
        #: Problems found while listing (unpaired or ambiguous files), in skip mode.
        self.problems: list[SampleError] = []
        self._skipped: set[int] = set()
        if split not in self.splits:
            raise ConfigError(
                "split", split, f"{type(self).__name__} has no such split", allowed=self.splits
            )
        self.check_root()
        self.samples = self.list_samples()
        if not self.samples:
            raise DataError(
                self.root, f"no {split} samples found", fix=f"check the layout: {self.layout()}"
            )
        # valid[v] is True for the mask values (after mapping) a label may take.
        self._valid = np.zeros(256, dtype=bool)
        self._valid[:num_classes] = True
        if 0 <= ignore_index < 256:
            self._valid[ignore_index] = True

    def layout(self) -> str:
        """One line describing the expected folder layout."""
        return ""

    def cache_key(self) -> list:
        """What the split's label statistics depend on besides the mask files themselves.

        The class-weight cache (:mod:`segbench.data.class_weights`) is keyed on it:
        a dataset whose reading depends on more settings (a resize, a crop, a label
        mode, a class remapping) adds them here.
        """
        return [
            type(self).__name__,
            str(self.root.resolve()),
            self.split,
            self.num_classes,
            self.ignore_index,
            None if self.label_map is None else self.label_map.tolist(),
        ]

    def check_root(self) -> None:
        """Raises DataError if the root does not look like this dataset."""
        if not self.root.is_dir():
            raise DataError(
                self.root,
                "dataset root does not exist",
                fix=f"set data.root to a folder laid out as {self.layout()}"
                + (f"; the data comes from {self.source}" if self.source else ""),
            )

    def missing_folder(self, folder: Path) -> DataError:
        """The error for a folder of the layout that is not there."""
        return DataError(
            folder,
            f"missing: {self.root} does not look like {type(self).__name__} ({self.split} split)",
            fix=f"set data.root to a folder laid out as {self.layout()}"
            + (f"; the data comes from {self.source}" if self.source else ""),
        )

    def list_samples(self) -> list[Sample]:
        raise NotImplementedError

    def bad_file(self, error: SampleError) -> None:
        """Reports a file found unusable while listing: raises, or logs and records it.

        A mask without an image harms no training, so it is only logged.
        """
        if self.on_bad_sample == "error" and error.kind != "orphan_mask":
            hint = "set data.on_bad_sample=skip to leave such files out"
            raise SampleError(
                error.path,
                error.kind,
                error.problem,
                fix=f"{error.fix}; or {hint}" if error.fix else hint,
            )
        log.warning("skipping %s", error)
        self.problems.append(error)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # In skip mode a damaged sample is replaced by the next good one, so that
        # batches keep their size; each damaged file is logged once per process.
        for step in range(len(self.samples)):
            i = (index + step) % len(self.samples)
            if i in self._skipped:
                continue
            try:
                image, mask = (
                    self.load_pair(self.samples[i]) if self.decoded is None else self.decoded.get(i)
                )
            except SampleError as err:
                if self.on_bad_sample == "error":
                    raise
                self._skipped.add(i)
                log.warning("skipping %s", err)
                continue
            if self.transform is not None:
                out = self.transform(image=image, mask=mask)
                image, mask = out["image"], out["mask"]
            mask = torch.as_tensor(mask)
            if not (self.uint8_masks and mask.dtype == torch.uint8):
                mask = mask.long()
            return {"image": image, "mask": mask, "index": i}
        raise DataError(
            self.root,
            f"every {self.split} sample is damaged",
            fix=f"run `segbench check data=... data.root={self.root}`",
        )

    def load_pair(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Reads one sample: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 train ids."""
        image = read_image(sample.image)
        check_size(sample.image, image.shape[:2])
        if sample.mask is None:
            return image, np.full(image.shape[:2], self.ignore_index, dtype=np.uint8)
        return image, self.read_mask(sample.mask, image.shape[:2])

    def load_mask(self, sample: Sample) -> np.ndarray | None:
        """Reads only the label map of ``sample`` (train ids, checked against the image size).

        Decodes the image header only, so it is cheap (class statistics use it).
        """
        if sample.mask is None:
            return None
        size = image_size(sample.image)
        check_size(sample.image, size)
        return self.read_mask(sample.mask, size)

    def read_mask(self, path: Path, size: tuple[int, int]) -> np.ndarray:
        """Reads a label map, maps it to train ids and checks it against ``size`` (H, W)."""
        mask = read_label(path)
        if mask.shape != tuple(size):
            raise SampleError(
                path,
                "size_mismatch",
                f"mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                f"is {size[1]}x{size[0]}",
                fix="masks must have the size of their image",
            )
        if self.label_map is not None:
            mask = self.label_map[mask]
        if not self._valid[mask].all():
            bad = sorted(set(np.unique(mask[~self._valid[mask]]).tolist()))
            raise SampleError(
                path,
                "unknown_ids",
                f"label values {bad[:10]} are outside [0, {self.num_classes}) "
                f"and not the ignore index {self.ignore_index}",
                fix="check data.num_classes / data.ignore_index, or the mask file",
            )
        return mask


class Resized(SegmentationDataset):
    """A dataset whose samples are brought to one size when read (before any augmentation).

    Subclasses set ``height``, ``width`` (None keeps the stored size) and ``crop_top``.
    """

    height: int | None = None
    width: int | None = None
    crop_top: int = 0

    def load_pair(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        image, mask = super().load_pair(sample)
        if self.height is None and not self.crop_top:
            return image, mask
        return resize_pair(
            image,
            mask,
            self.height or image.shape[0] - self.crop_top,
            self.width or image.shape[1],
            self.crop_top,
        )

    def load_mask(self, sample: Sample) -> np.ndarray | None:
        mask = super().load_mask(sample)
        if mask is None or (self.height is None and not self.crop_top):
            return mask
        height, width = self.height or mask.shape[0] - self.crop_top, self.width or mask.shape[1]
        return resize_mask(mask, height, width, self.crop_top)

    def cache_key(self) -> list:
        return [*super().cache_key(), self.height, self.width, self.crop_top]
