"""The dataset base every loader shares: reading, label mapping, checking, transforms."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from segbench.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    """One image and its label map (``mask`` is None where a split has no labels)."""

    image: Path
    mask: Path | None


class SegmentationDataset(Dataset):
    """Pairs of image and label map, read, mapped to train ids, checked and transformed.

    Subclasses list the samples of a split in the dataset's official layout
    (:meth:`list_samples`) and may map raw label values to train ids with a
    256-entry lookup table (``label_map``). Every mask is checked when read:
    same size as its image, values in ``[0, num_classes)`` or ``ignore_index``.

    Args:
        root: Dataset root folder.
        split: ``train``, ``val`` or ``test``.
        num_classes: Number of classes.
        ignore_index: Label of pixels that count in neither loss nor metrics.
        transform: albumentations-style callable ``(image=, mask=) -> dict``.
    """

    #: Where the public data comes from (for the error on a missing root).
    source: str = ""
    #: Optional 256-entry lookup table: raw mask value -> train id.
    label_map: np.ndarray | None = None

    def __init__(self, root: str | Path, split: str, num_classes: int, ignore_index: int,
                 transform: Callable | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform = transform
        self.check_root()
        self.samples = self.list_samples()
        if not self.samples:
            raise DataError(self.root, f"no {split} samples found",
                            fix=f"check the layout: {self.layout()}")
        # valid[v] is True for the mask values (after mapping) a label may take.
        self._valid = np.zeros(256, dtype=bool)
        self._valid[:num_classes] = True
        if 0 <= ignore_index < 256:
            self._valid[ignore_index] = True

    def layout(self) -> str:
        """One line describing the expected folder layout."""
        return ""

    def check_root(self) -> None:
        """Raises DataError if the root does not look like this dataset."""
        if not self.root.is_dir():
            raise DataError(self.root, "dataset root does not exist",
                            fix=f"set data.root to a folder laid out as {self.layout()}"
                                + (f"; the data comes from {self.source}" if self.source else ""))

    def list_samples(self) -> list[Sample]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        image = read_image(sample.image)
        if sample.mask is None:
            mask = np.full(image.shape[:2], self.ignore_index, dtype=np.uint8)
        else:
            mask = self.read_mask(sample.mask, image.shape[:2])
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {"image": image, "mask": torch.as_tensor(mask).long(), "index": index}

    def read_mask(self, path: Path, size: tuple[int, int]) -> np.ndarray:
        """Reads a label map, maps it to train ids and checks it against ``size``."""
        mask = read_label(path)
        if mask.shape != size:
            raise DataError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                                  f"is {size[1]}x{size[0]}",
                            fix="masks must have the size of their image")
        if self.label_map is not None:
            mask = self.label_map[mask]
        if not self._valid[mask].all():
            bad = sorted(set(np.unique(mask[~self._valid[mask]]).tolist()))
            raise DataError(path, f"label values {bad[:10]} are outside [0, {self.num_classes}) "
                                  f"and not the ignore index {self.ignore_index}",
                            fix="check data.num_classes / data.ignore_index, or the mask file")
        return mask


def read_image(path: Path) -> np.ndarray:
    """Reads an image as ``(H, W, 3)`` uint8 RGB, or raises DataError naming the file."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(path, f"cannot be read as an image ({err})",
                        fix="re-extract or remove the file") from None


def read_label(path: Path) -> np.ndarray:
    """Reads a label map as ``(H, W)`` uint8 of raw values, or raises DataError.

    Palette ("P") PNGs give their indices; greyscale ("L") their values. Colour
    or 16-bit masks are refused: their values are not label ids.
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise DataError(path, f"mask has image mode {img.mode!r}; expected single-channel "
                                      "8-bit label ids (mode 'L' or 'P')",
                                fix="save masks as 8-bit greyscale or palette PNGs of class ids")
            return np.array(img)
    except FileNotFoundError:
        raise DataError(path, "mask file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(path, f"cannot be read as a mask ({err})",
                        fix="re-extract or remove the file") from None
