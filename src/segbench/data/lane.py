"""Lane markings of the Baidu / ApolloScape lane-segmentation challenge.

::

    {root}/Image_Data/Road02/Record001/Camera 5/<frame>.jpg             3384x1710
    {root}/Gray_Label/Label_road02/Label/Record001/Camera 5/<frame>_bin.png  grey = raw id

Raw ids map to 8 train classes (the challenge's usual grouping); the top 690
rows (sky and buildings, never a lane) are cropped and the rest resized (image
bilinear, label nearest). Train and val are split by record, so frames of one
drive never sit on both sides. :func:`decode` maps train ids back to raw ids
for submission files.
"""

import zlib
from pathlib import Path

import cv2
import numpy as np

from segbench.data.dataset import Resized, Sample
from segbench.data.pairing import pair_by_stem
from segbench.data.reading import IMAGE_SUFFIXES

IGNORE = 255
#: train id -> raw grey values (NUMBERS.md, lane segmentation).
RAW_IDS: dict[int, tuple[int, ...]] = {
    0: (
        0,
        249,
        255,
        213,
        206,
        207,
        211,
        208,
        216,
        215,
        218,
        219,
        232,
        202,
        231,
        230,
        228,
        229,
        233,
        212,
        223,
    ),
    1: (200, 204, 209),
    2: (201, 203),
    3: (217,),
    4: (210,),
    5: (214,),
    6: (220, 221, 222, 224, 225, 226),
    7: (205, 227, 250),
}
#: train id -> the raw id a submission uses for it.
SUBMISSION_IDS = np.array([0, 204, 203, 217, 210, 214, 224, 227], dtype=np.uint8)


def _lut() -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for train_id, raws in RAW_IDS.items():
        lut[list(raws)] = train_id
    return lut


#: raw grey value -> train id (255 for values outside the mapping).
RAW_TO_TRAIN_ID: np.ndarray = _lut()


def decode(
    train_ids: np.ndarray, full_size: tuple[int, int] | None = None, crop_top: int = 690
) -> np.ndarray:
    """Maps a predicted train-id map back to raw ids, optionally at the camera's full size.

    Args:
        train_ids: ``(h, w)`` train ids (0..7) of the cropped, resized frame.
        full_size: ``(H, W)`` of the original image (1710, 3384); None keeps ``(h, w)``.
        crop_top: Rows cropped from the top before resizing; they are filled with 0.

    Returns:
        ``(h, w)`` or ``(H, W)`` uint8 raw ids, as submission files expect.
    """
    raw = SUBMISSION_IDS[train_ids]
    if full_size is None:
        return raw
    height, width = full_size
    out = np.zeros((height, width), dtype=np.uint8)
    out[crop_top:] = cv2.resize(raw, (width, height - crop_top), interpolation=cv2.INTER_NEAREST)
    return out


class LaneSegmentation(Resized):
    """Baidu/ApolloScape lane segmentation: 8 classes, top rows cropped, resized, split by record.

    Args:
        root: Folder holding ``Image_Data/`` and ``Gray_Label/``.
        split: ``train`` or ``val`` (the challenge's test labels are not public).
        num_classes: Must be 8.
        ignore_index: Label of raw values outside the mapping (255).
        height: Output height after crop and resize.
        width: Output width after crop and resize.
        crop_top: Rows removed from the top of every frame.
        val_percent: Share of records (0..100) in val, chosen by a hash of the
            record's path, so adding records never moves existing ones.
        transform: albumentations-style transform.
        on_bad_sample: ``error`` or ``skip`` (see :class:`SegmentationDataset`).
    """

    source = "https://aistudio.baidu.com/ (Baidu/ApolloScape lane segmentation challenge, Image_Data + Gray_Label)"
    splits = ("train", "val")
    label_map = RAW_TO_TRAIN_ID

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int = 8,
        ignore_index: int = IGNORE,
        height: int = 384,
        width: int = 1024,
        crop_top: int = 690,
        val_percent: float = 10.0,
        transform=None,
        on_bad_sample: str = "error",
    ) -> None:
        self.height, self.width, self.crop_top = height, width, crop_top
        self.val_percent = val_percent
        super().__init__(root, split, num_classes, ignore_index, transform, on_bad_sample)

    def layout(self) -> str:
        return (
            f"{self.root}/Image_Data/RoadXX/<Record>/<Camera>/<frame>.jpg with "
            f"{self.root}/Gray_Label/Label_roadXX/Label/<Record>/<Camera>/<frame>_bin.png"
        )

    def check_root(self) -> None:
        super().check_root()
        for folder in (self.root / "Image_Data", self.root / "Gray_Label"):
            if not folder.is_dir():
                raise self.missing_folder(folder)

    def in_split(self, road: str, record: str) -> bool:
        """Whether a record belongs to this split (a stable hash of ``road/record``)."""
        bucket = zlib.crc32(f"{road.lower()}/{record}".encode()) % 10000
        return (bucket < self.val_percent * 100) == (self.split == "val")

    def list_samples(self) -> list[Sample]:
        images, labels = [], []
        for path in sorted((self.root / "Image_Data").glob("*/*/*/*")):
            road, record = path.parts[-4], path.parts[-3]
            if path.suffix.lower() in IMAGE_SUFFIXES and self.in_split(road, record):
                images.append(path)
        for path in sorted((self.root / "Gray_Label").glob("Label_*/Label/*/*/*_bin.png")):
            road, record = path.parts[-5].removeprefix("Label_"), path.parts[-3]
            if self.in_split(road, record):
                labels.append(path)
        # Pair on road/record/camera/frame: frame names repeat across cameras.
        return pair_by_stem(
            self,
            images,
            labels,
            self.root / "Gray_Label",
            image_stem=lambda p: f"{p.parts[-4].lower()}/{p.parts[-3]}/{p.parts[-2]}/{p.stem}",
            mask_stem=lambda p: (
                f"{p.parts[-5].removeprefix('Label_').lower()}/{p.parts[-3]}/"
                f"{p.parts[-2]}/{p.stem.removesuffix('_bin')}"
            ),
        )
