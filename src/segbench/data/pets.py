"""The Oxford-IIIT Pet dataset with its trimaps.

::

    {root}/images/<Breed>_<n>.jpg
    {root}/annotations/trimaps/<Breed>_<n>.png   1 = pet, 2 = background, 3 = border
    {root}/annotations/trainval.txt, test.txt    lines "Image CLASS-ID SPECIES BREED-ID"

Splits follow segmentation_models_pytorch's example: val is every 10th line of
``trainval.txt`` (lines 0, 10, 20, ...), train the rest, test is ``test.txt``
(3312 / 368 / 3669 images).
"""

from pathlib import Path

import numpy as np

from segbench.data.dataset import Resized, Sample
from segbench.data.reading import SampleError
from segbench.errors import ConfigError

IGNORE = 255
#: Train ids per mode; both keep 0 = background, 1 = pet.
MODES = {
    "binary": {1: 1, 2: 0, 3: 1},  # smp's convention: the border counts as pet
    "trimap": {1: 1, 2: 0, 3: 2},
}
VAL_EVERY = 10


def _lut(mode: str) -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for raw, train_id in MODES[mode].items():
        lut[raw] = train_id
    return lut


class OxfordPets(Resized):
    """Oxford-IIIT Pet trimaps as ``binary`` (background, pet) or ``trimap`` (+ border) labels.

    Args:
        root: Folder holding ``images/`` and ``annotations/``.
        split: ``train``, ``val`` or ``test``.
        num_classes: 2 for ``binary``, 3 for ``trimap``.
        ignore_index: Label of pixels outside the trimap's values (255).
        mode: ``binary`` or ``trimap``.
        height: Height every image and trimap is resized to (they vary in size);
            None keeps the stored sizes.
        width: Width likewise.
        transform: albumentations-style transform.
        on_bad_sample: ``error`` or ``skip`` (see :class:`SegmentationDataset`).
    """

    source = "https://www.robots.ox.ac.uk/~vgg/data/pets/ (images.tar.gz, annotations.tar.gz)"

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int = 2,
        ignore_index: int = IGNORE,
        mode: str = "binary",
        height: int | None = 256,
        width: int | None = 256,
        transform=None,
        on_bad_sample: str = "error",
    ) -> None:
        if mode not in MODES:
            raise ConfigError("data.mode", mode, "unknown Oxford Pet label mode", allowed=MODES)
        expected = len(set(MODES[mode].values()))
        if num_classes != expected:
            raise ConfigError(
                "data.num_classes",
                num_classes,
                f"mode {mode} has {expected} classes",
                fix=f"set data.num_classes={expected} (conf/data/pets.yaml derives "
                "it from data.mode)",
            )
        self.mode, self.height, self.width = mode, height, width
        self.label_map = _lut(mode)
        super().__init__(root, split, num_classes, ignore_index, transform, on_bad_sample)

    def layout(self) -> str:
        return (
            f"{self.root}/images/<name>.jpg, {self.root}/annotations/trimaps/<name>.png, "
            f"{self.root}/annotations/trainval.txt and test.txt"
        )

    def check_root(self) -> None:
        super().check_root()
        for path in (self.root / "images", self.root / "annotations" / "trimaps", self.list_file):
            if not path.exists():
                raise self.missing_folder(path)

    @property
    def list_file(self) -> Path:
        return self.root / "annotations" / ("test.txt" if self.split == "test" else "trainval.txt")

    def list_samples(self) -> list[Sample]:
        lines = [ln.split() for ln in self.list_file.read_text().splitlines()]
        names = [ln[0] for ln in lines if ln and not ln[0].startswith("#")]
        if self.split == "val":
            names = names[::VAL_EVERY]
        elif self.split == "train":
            names = [n for i, n in enumerate(names) if i % VAL_EVERY]
        samples = []
        for name in names:
            image = self.root / "images" / f"{name}.jpg"
            trimap = self.root / "annotations" / "trimaps" / f"{name}.png"
            if not image.is_file():
                self.bad_file(
                    SampleError(
                        image,
                        "missing_image",
                        f"listed in {self.list_file.name} but not there",
                        fix="re-extract images.tar.gz",
                    )
                )
            elif not trimap.is_file():
                self.bad_file(
                    SampleError(
                        trimap,
                        "missing_mask",
                        f"trimap of {image.name} is not there",
                        fix="re-extract annotations.tar.gz",
                    )
                )
            else:
                samples.append(Sample(image, trimap))
        return samples
