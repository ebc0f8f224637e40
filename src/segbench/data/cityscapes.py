"""Cityscapes fine annotations in the layout of cityscapesScripts.

::

    {root}/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    {root}/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

Label ids become the 19 train ids through the label table of the
``cityscapesscripts`` package (``helpers/labels.py``); every other id, and the
test split's placeholder labels, become 255 (ignored). Category-level scores
(7 categories: flat, construction, object, nature, sky, human, vehicle) merge
the 19 classes with :data:`CATEGORY_OF_TRAIN_ID`, as csEvalPixelLevelSemanticLabeling does.
"""

from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS

from segbench.data.dataset import Sample, SegmentationDataset
from segbench.data.pairing import pair_by_stem

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
IGNORE = 255


def _evaluated() -> list:
    """The labels with a train id (0..18), in train-id order."""
    return sorted((lb for lb in CS_LABELS if 0 <= lb.trainId < IGNORE), key=lambda lb: lb.trainId)


def _label_lut() -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label in _evaluated():
        lut[label.id] = label.trainId
    return lut


#: label id -> train id (0..18, 255 ignored), from cityscapesscripts.
LABEL_TO_TRAIN_ID: np.ndarray = _label_lut()
#: train id -> label id, for predictions written the way the official evaluation reads them.
TRAIN_ID_TO_LABEL_ID: np.ndarray = np.array([lb.id for lb in _evaluated()], dtype=np.uint8)
#: The 7 categories, in categoryId order (categoryId 0 = void is left out).
CATEGORIES: list[str] = [
    name for _, name in sorted({(lb.categoryId, lb.category) for lb in _evaluated()})
]
#: train id -> category index (0..6).
CATEGORY_OF_TRAIN_ID: np.ndarray = np.array(
    [lb.categoryId - 1 for lb in _evaluated()], dtype=np.uint8
)


def to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Maps a predicted train-id map ``(H, W)`` to Cityscapes label ids (for csEval* scripts)."""
    return TRAIN_ID_TO_LABEL_ID[train_ids]


def to_categories(train_ids: np.ndarray, ignore_index: int = IGNORE) -> np.ndarray:
    """Maps a train-id map to category indices 0..6 (``ignore_index`` stays)."""
    lut = np.full(256, ignore_index, dtype=np.uint8)
    lut[: len(CATEGORY_OF_TRAIN_ID)] = CATEGORY_OF_TRAIN_ID
    return lut[train_ids]


class Cityscapes(SegmentationDataset):
    """Cityscapes ``gtFine``: 19 train ids, 255 ignored; the test split has no labels.

    Args:
        root: Folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train`` (2975), ``val`` (500) or ``test`` (1525, labels ignored).
        num_classes: Must be 19.
        ignore_index: Must be 255.
        transform: albumentations-style transform.
        on_bad_sample: ``error`` or ``skip`` (see :class:`SegmentationDataset`).
    """

    source = "https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip)"
    label_map = LABEL_TO_TRAIN_ID

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int = 19,
        ignore_index: int = IGNORE,
        transform=None,
        on_bad_sample: str = "error",
    ) -> None:
        super().__init__(root, split, num_classes, ignore_index, transform, on_bad_sample)

    def layout(self) -> str:
        return (
            f"{self.root}/leftImg8bit/{{train,val,test}}/<city>/<city>_<seq>_<frame>{IMAGE_SUFFIX} "
            f"with {self.root}/gtFine/<split>/<city>/<city>_<seq>_<frame>{LABEL_SUFFIX}"
        )

    def check_root(self) -> None:
        super().check_root()
        folders = [self.root / "leftImg8bit" / self.split]
        if self.split != "test":
            folders.append(self.root / "gtFine" / self.split)
        for folder in folders:
            if not folder.is_dir():
                raise self.missing_folder(folder)

    def list_samples(self) -> list[Sample]:
        image_dir = self.root / "leftImg8bit" / self.split
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if self.split == "test":
            # The public test labels are placeholders: nothing in them is evaluable.
            return [Sample(p, None) for p in images]
        label_dir = self.root / "gtFine" / self.split
        labels = sorted(label_dir.glob(f"*/*{LABEL_SUFFIX}"))
        return pair_by_stem(
            self,
            images,
            labels,
            label_dir,
            mask_stem=lambda p: f"{p.parent.name}/{p.name[: -len(LABEL_SUFFIX)]}",
            image_stem=lambda p: f"{p.parent.name}/{p.name[: -len(IMAGE_SUFFIX)]}",
        )
