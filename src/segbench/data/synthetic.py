"""Street-like scenes generated from a seed, written in CamVid's on-disk layout.

Each scene has sky, buildings with windows, vegetation, a road in perspective
with lane markings, sidewalks, cars and people, plus unlabelled poles (the
ignore index). Colours are drawn per scene from overlapping ranges (grey
buildings next to grey roads, cars of any colour), textures and noise differ per
class, objects occlude each other and the lighting changes, so a network has to
use shape and context rather than colour alone.
"""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.data.camvid import PairedFolders
from segbench.data.scenes import VOID, render_scene

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1


class SyntheticStreets(PairedFolders):
    """Generated street scenes; generated into ``root`` on first use.

    Args:
        root: Folder the scenes are written to (and read back from).
        split: ``train`` or ``val``.
        num_classes: Must be 8.
        ignore_index: Must be 255 (unlabelled poles).
        seed: Seed of the generator; the same seed gives the same files.
        num_train: Number of training scenes.
        num_val: Number of validation scenes.
        height: Image height.
        width: Image width.
        transform: albumentations-style transform.
        on_bad_sample: ``error`` or ``skip`` (see :class:`SegmentationDataset`).
    """

    splits = ("train", "val")

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int = 8,
        ignore_index: int = VOID,
        seed: int = 0,
        num_train: int = 160,
        num_val: int = 40,
        height: int = 96,
        width: int = 128,
        transform=None,
        on_bad_sample: str = "error",
    ) -> None:
        self.params = {
            "version": GENERATOR_VERSION,
            "seed": seed,
            "num_train": num_train,
            "num_val": num_val,
            "height": height,
            "width": width,
        }
        ensure_generated(Path(root), self.params)
        super().__init__(root, split, num_classes, ignore_index, transform, on_bad_sample)


def ensure_generated(root: Path, params: dict) -> None:
    """Generates the dataset into ``root`` unless it holds one made with ``params``.

    Writes into a temporary sibling folder and renames it, so parallel runs and
    killed runs never see half a dataset.
    """
    meta = root / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()) == params:
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    rng = np.random.default_rng(params["seed"])
    for split in ("train", "val"):
        (tmp / split).mkdir()
        (tmp / f"{split}annot").mkdir()
        for i in range(params[f"num_{split}"]):
            image, mask = render_scene(rng, params["height"], params["width"])
            Image.fromarray(image).save(tmp / split / f"{split}_{i:04d}.png")
            Image.fromarray(mask).save(tmp / f"{split}annot" / f"{split}_{i:04d}.png")
    (tmp / "meta.json").write_text(json.dumps(params))
    if root.exists():
        old = root.with_name(f".{root.name}-old-{os.getpid()}")
        root.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated synthetic streets into %s (%s)", root, params)
