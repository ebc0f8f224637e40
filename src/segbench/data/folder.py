"""Bring your own data: images and masks with the same file stem.

::

    {root}/images/<name>.jpg|png   {root}/masks/<name>.png   (val = every n-th name)
  or, with explicit splits:
    {root}/images/{train,val,test}/<name>.*   {root}/masks/{train,val,test}/<name>.png

Masks hold class ids 0..num_classes-1 as 8-bit greyscale or palette PNGs; the
ignore index marks unlabelled pixels. Class names, ignore index and colours
are set in ``conf/data/folder.yaml`` (or on the command line).
"""

from pathlib import Path

from segbench.data.dataset import Resized, Sample
from segbench.data.pairing import pair_by_stem
from segbench.data.reading import list_images


class ImageMaskFolder(Resized):
    """``images/`` and ``masks/`` paired by stem, split by sub-folders or every n-th name.

    Args:
        root: Folder holding ``images/`` and ``masks/``.
        split: ``train``, ``val`` or ``test``.
        num_classes: Number of classes.
        ignore_index: Mask value of unlabelled pixels.
        val_every: Without split sub-folders, every ``val_every``-th name (sorted,
            starting with the first) is val and the rest train.
        height: Height every sample is resized to when read; None keeps the stored size.
        width: Width likewise.
        transform: albumentations-style transform.
        on_bad_sample: ``error`` or ``skip`` (see :class:`SegmentationDataset`).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int,
        ignore_index: int = 255,
        val_every: int = 10,
        height: int | None = None,
        width: int | None = None,
        transform=None,
        on_bad_sample: str = "error",
    ) -> None:
        self.val_every, self.height, self.width = val_every, height, width
        super().__init__(root, split, num_classes, ignore_index, transform, on_bad_sample)

    def layout(self) -> str:
        return (
            f"{self.root}/images/<name>.* with {self.root}/masks/<name>.png, optionally in "
            "train/, val/, test/ sub-folders of both"
        )

    @property
    def has_split_folders(self) -> bool:
        return (self.root / "images" / "train").is_dir()

    def check_root(self) -> None:
        super().check_root()
        folders = [self.root / "images", self.root / "masks"]
        if self.has_split_folders:
            folders = [f / self.split for f in folders]
        elif self.split == "test":
            folders = [self.root / "images" / "test"]
        for folder in folders:
            if not folder.is_dir():
                raise self.missing_folder(folder)

    def list_samples(self) -> list[Sample]:
        if self.has_split_folders:
            image_dir, mask_dir = (
                self.root / "images" / self.split,
                self.root / "masks" / self.split,
            )
            return pair_by_stem(self, list_images(image_dir), list_images(mask_dir), mask_dir)
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        images = list_images(image_dir)
        # Split on the image names, so a missing mask never moves other files across splits.
        val = set(sorted({p.stem for p in images})[:: self.val_every])
        images = [p for p in images if (p.stem in val) == (self.split == "val")]
        return pair_by_stem(
            self,
            images,
            [m for m in list_images(mask_dir) if (m.stem in val) == (self.split == "val")],
            mask_dir,
        )
