"""Writers of small datasets in each dataset's official layout, for the loader tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def _image(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _blocks(values: list[int], h: int, w: int) -> np.ndarray:
    """A label map of vertical stripes, one per value (every value present)."""
    cols = np.array_split(np.arange(w), len(values))
    mask = np.zeros((h, w), np.uint8)
    for value, c in zip(values, cols, strict=True):
        mask[:, c] = value
    return mask


def write_camvid(
    root: Path, splits=("train", "val", "test"), n: int = 4, h: int = 64, w: int = 96, seed: int = 0
) -> Path:
    """CamVid (SegNet tutorial): ``{split}/`` and ``{split}annot/``, ids 0..10 and 11 = void."""
    rng = np.random.default_rng(seed)
    for split in splits:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"0001TP_{i:06d}.png"
            _image(rng, h, w).save(root / split / name)
            Image.fromarray(_blocks([(i + k) % 12 for k in range(6)], h, w)).save(
                root / f"{split}annot" / name
            )
    return root


#: Cityscapes label ids written by the fixture, and the train ids they must become.
CITYSCAPES_IDS = {7: 0, 8: 1, 26: 13, 33: 18, 0: 255, 6: 255, 9: 255, 29: 255}


def write_cityscapes(root: Path, h: int = 64, w: int = 128, seed: int = 0) -> Path:
    """leftImg8bit/ + gtFine/ with labelIds (and the other gtFine files beside them)."""
    rng = np.random.default_rng(seed)
    cities = {"train": ["aachen", "bochum"], "val": ["frankfurt"], "test": ["berlin"]}
    for split, names in cities.items():
        for city in names:
            img_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            for frame in (19, 20):
                stem = f"{city}_000000_{frame:06d}"
                _image(rng, h, w).save(img_dir / f"{stem}_leftImg8bit.png")
                ids = list(CITYSCAPES_IDS) if split != "test" else [0, 1, 3]
                label = _blocks(ids, h, w)
                Image.fromarray(label).save(gt_dir / f"{stem}_gtFine_labelIds.png")
                # The other files of the official archive must not be taken for labels.
                Image.fromarray(label).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
                Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(
                    gt_dir / f"{stem}_gtFine_color.png"
                )
                (gt_dir / f"{stem}_gtFine_polygons.json").write_text("{}")
    return root


def write_pets(root: Path, n_trainval: int = 20, n_test: int = 3, seed: int = 0) -> Path:
    """images/*.jpg of varying sizes, annotations/trimaps/*.png (1 pet, 2 bg, 3 border), lists."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    lines = {"trainval": [], "test": []}
    for split, n in (("trainval", n_trainval), ("test", n_test)):
        for i in range(n):
            breed, cls, species = ("Abyssinian", 1, 1) if i % 2 else ("beagle", 13, 2)
            name = f"{breed}_{split}{i}"
            h, w = 40 + 4 * (i % 3), 50 + 6 * (i % 4)
            _image(rng, h, w).save(root / "images" / f"{name}.jpg")
            trimap = np.full((h, w), 2, np.uint8)
            trimap[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 3
            trimap[h // 4 + 2 : 3 * h // 4 - 2, w // 4 + 2 : 3 * w // 4 - 2] = 1
            Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{name}.png")
            lines[split].append(f"{name} {cls} {species} {i % 12 + 1}")
    for split, rows in lines.items():
        (root / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root


#: Records of the lane fixture: with val_percent=50 the hash puts some in each split.
LANE_RECORDS = [
    ("Road02", "Record001"),
    ("Road02", "Record002"),
    ("Road03", "Record001"),
    ("Road04", "Record007"),
    ("Road04", "Record010"),
]


def write_lane(root: Path, h: int = 1710, w: int = 96, frames: int = 2, seed: int = 0) -> Path:
    """Image_Data/RoadXX/RecordYYY/Camera N/*.jpg + Gray_Label/Label_roadXX/Label/.../*_bin.png.

    Full camera height (1710 rows) so the crop of the top 690 rows is real; the
    top rows hold raw id 200 (class 1), the rest raw ids of every class.
    """
    rng = np.random.default_rng(seed)
    raws = [0, 249, 200, 204, 201, 217, 210, 214, 220, 226, 205, 250]
    for road, record in LANE_RECORDS:
        for camera in ("Camera 5", "Camera 6"):
            img_dir = root / "Image_Data" / road / record / camera
            lab_dir = root / "Gray_Label" / f"Label_{road.lower()}" / "Label" / record / camera
            img_dir.mkdir(parents=True, exist_ok=True)
            lab_dir.mkdir(parents=True, exist_ok=True)
            for f in range(frames):
                stem = f"170927_0638{f:02d}000_{camera.replace(' ', '_')}"
                _image(rng, h, w).save(img_dir / f"{stem}.jpg")
                label = np.full((h, w), 200, np.uint8)
                label[690:] = _blocks(raws, h - 690, w)
                Image.fromarray(label).save(lab_dir / f"{stem}_bin.png")
    return root


def write_folder(
    root: Path, n: int = 12, h: int = 48, w: int = 64, num_classes: int = 3, seed: int = 0
) -> Path:
    """images/<name>.jpg + masks/<name>.png (ids 0..num_classes-1, 255 unlabelled)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _image(rng, h, w).save(root / "images" / f"part_{i:03d}.jpg")
        Image.fromarray(_blocks([*range(num_classes), 255], h, w)).save(
            root / "masks" / f"part_{i:03d}.png"
        )
    return root
