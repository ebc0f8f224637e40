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

import cv2
import numpy as np
from PIL import Image

from segbench.data.camvid import PairedFolders

log = logging.getLogger(__name__)

SKY, BUILDING, ROAD, SIDEWALK, LANE, VEGETATION, CAR, PERSON = range(8)
VOID = 255
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


def render_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Renders one scene: RGB ``(h, w, 3)`` uint8 and its label map ``(h, w)`` uint8."""
    img = np.zeros((h, w, 3), np.float32)
    mask = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.5))
    vx = w * rng.uniform(0.3, 0.7)  # vanishing point x

    # Sky: vertical gradient between two random tints, soft clouds.
    top, bottom = _colour(rng, (0.35, 0.95)), _colour(rng, (0.4, 1.0))
    t = np.linspace(0, 1, h)[:, None, None]
    img[:] = top * (1 - t) + bottom * t
    img += _blurred_noise(rng, h, w, 9) * 40
    mask[:] = SKY

    # Buildings: a skyline of boxes from the horizon up, window grids as texture.
    x = -int(rng.integers(0, w // 8))
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top_y = int(rng.integers(2, max(3, horizon - 4)))
        base = _grey_or_tint(rng)
        block = np.s_[top_y : horizon + 2, max(x, 0) : x + bw]
        img[block] = base
        mask[block] = BUILDING
        win = int(rng.integers(3, 7))
        dark = base * rng.uniform(0.3, 0.6)
        for wy in range(top_y + 2, horizon - 1, win + 2):
            for wx in range(max(x, 0) + 2, min(x + bw, w) - 2, win + 2):
                img[wy : wy + win // 2 + 1, wx : wx + win // 2 + 1] = dark
        x += bw + int(rng.integers(0, w // 10))

    # Vegetation: clusters of blobs in front of the buildings, high-frequency texture.
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = int(rng.integers(0, w)), horizon - int(rng.integers(0, h // 6))
        blob = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(3, 7))):
            cv2.ellipse(
                blob,
                (
                    cx + int(rng.integers(-w // 10, w // 10)),
                    cy + int(rng.integers(-h // 12, h // 12)),
                ),
                (
                    int(rng.integers(w // 30 + 2, w // 10 + 3)),
                    int(rng.integers(h // 30 + 2, h // 8 + 3)),
                ),
                0,
                0,
                360,
                1,
                -1,
            )
        leaf = np.array([rng.uniform(20, 90), rng.uniform(80, 170), rng.uniform(10, 80)])
        tex = leaf * (0.6 + 0.8 * rng.random((h, w, 1)))
        img[blob > 0] = tex[blob > 0]
        mask[blob > 0] = VEGETATION

    # Ground: sidewalks left and right, a road converging to the vanishing point.
    ground = np.s_[horizon:, :]
    side = _grey_or_tint(rng)
    img[ground] = side
    tiles = ((np.indices((h, w)) // int(rng.integers(3, 7))).sum(0) % 2)[..., None]
    img[ground] *= 0.85 + 0.15 * tiles[ground]
    mask[ground] = SIDEWALK
    road_half = w * rng.uniform(0.3, 0.6)
    road = np.array(
        [
            [vx - 2, horizon],
            [vx + 2, horizon],
            [w / 2 + road_half + rng.uniform(-w / 6, w / 6), h],
            [w / 2 - road_half + rng.uniform(-w / 6, w / 6), h],
        ],
        np.int32,
    )
    road_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(road_mask, [road], 1)
    asphalt = _grey_or_tint(rng) * 0.8
    tex = asphalt * (0.9 + 0.2 * rng.random((h, w, 1)))
    img[road_mask > 0] = tex[road_mask > 0]
    mask[road_mask > 0] = ROAD

    # Lane markings: dashed lines from the vanishing point, white or yellow.
    paint = np.array([240, 240, 235]) if rng.random() < 0.7 else np.array([230, 200, 40])
    for frac in rng.choice([0.33, 0.5, 0.66], size=int(rng.integers(1, 3)), replace=False):
        bx = road[3, 0] + frac * (road[2, 0] - road[3, 0])
        n_dash = int(rng.integers(4, 8))
        for k in range(n_dash):
            s0, s1 = (k + 0.2) / n_dash, (k + 0.7) / n_dash
            p0 = (int(vx + (bx - vx) * s0**1.5), int(horizon + (h - horizon) * s0**1.5))
            p1 = (int(vx + (bx - vx) * s1**1.5), int(horizon + (h - horizon) * s1**1.5))
            line = np.zeros((h, w), np.uint8)
            cv2.line(line, p0, p1, 1, max(1, int(1 + 3 * s1)))
            line &= road_mask
            img[line > 0] = paint
            mask[line > 0] = LANE

    # Objects back to front, so nearer ones occlude farther ones.
    objects = [(CAR, rng.uniform(0.1, 1.0)) for _ in range(int(rng.integers(1, 5)))]
    objects += [(PERSON, rng.uniform(0.1, 1.0)) for _ in range(int(rng.integers(0, 4)))]
    objects += [(VOID, rng.uniform(0.1, 1.0)) for _ in range(int(rng.integers(0, 3)))]
    for kind, depth in sorted(objects, key=lambda o: o[1]):
        y = int(horizon + (h - horizon) * depth)
        scale = 0.15 + 0.85 * depth
        if kind == CAR:
            _car(rng, img, mask, y, scale, w, h)
        elif kind == PERSON:
            _person(rng, img, mask, y, scale, w, h)
        else:
            _pole(rng, img, mask, y, scale, w)

    # Lighting: a shadow band, global gain/gamma, sensor noise, slight blur.
    if rng.random() < 0.5:
        shadow = np.zeros((h, w), np.uint8)
        x0 = int(rng.integers(0, w))
        cv2.fillPoly(
            shadow,
            [
                np.array(
                    [[x0, h], [x0 + w // 3, h], [x0 + w // 2, horizon], [x0 + w // 4, horizon]],
                    np.int32,
                )
            ],
            1,
        )
        img[shadow > 0] *= rng.uniform(0.4, 0.7)
    img = 255 * (np.clip(img * rng.uniform(0.6, 1.3), 0, 255) / 255) ** rng.uniform(0.7, 1.4)
    img += rng.normal(0, rng.uniform(3, 12), img.shape)
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), rng.uniform(0.1, 0.8))
    return img, mask


def _colour(rng: np.random.Generator, value: tuple[float, float]) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 120), 255 * rng.uniform(*value)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _grey_or_tint(rng: np.random.Generator) -> np.ndarray:
    """Greys and muted tints: buildings, roads and sidewalks share this range on purpose."""
    grey = rng.uniform(60, 200)
    return np.clip(grey + rng.normal(0, 18, 3), 0, 255).astype(np.float32)


def _blurred_noise(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), k)
    return ((noise - noise.mean()) / (noise.std() + 1e-6))[..., None].astype(np.float32)


def _car(rng, img, mask, y, scale, w, h) -> None:
    cw, ch = int(w * 0.35 * scale) + 4, int(h * 0.16 * scale) + 3
    x = int(rng.integers(-cw // 3, w - cw // 2))
    body = rng.uniform(0, 255, 3)
    y0 = y - ch
    shape = np.zeros((h, w), np.uint8)
    cv2.rectangle(shape, (x, y0 + ch // 3), (x + cw, y), 1, -1)
    cv2.rectangle(shape, (x + cw // 5, y0), (x + 4 * cw // 5, y0 + ch // 3), 1, -1)
    img[shape > 0] = body
    img[max(y0, 0) : max(y0 + ch // 3, 0), max(x + cw // 4, 0) : max(x + 3 * cw // 4, 0)] = (
        body * 0.3
    )
    for wx in (x + cw // 5, x + 4 * cw // 5):
        cv2.circle(shape, (wx, y), max(1, ch // 4), 1, -1)
        cv2.circle(img, (wx, y), max(1, ch // 4), (20, 20, 20), -1)
    mask[shape > 0] = CAR


def _person(rng, img, mask, y, scale, w, h) -> None:
    ph = int(h * 0.35 * scale) + 5
    pw = max(2, ph // 4)
    x = int(rng.integers(0, w))
    shape = np.zeros((h, w), np.uint8)
    cv2.ellipse(shape, (x, y - ph // 2), (pw // 2 + 1, ph // 3 + 1), 0, 0, 360, 1, -1)
    cv2.rectangle(shape, (x - pw // 4, y - ph // 4), (x + pw // 4, y), 1, -1)
    cv2.circle(shape, (x, y - ph + ph // 8), max(1, ph // 8), 1, -1)
    cloth = rng.uniform(0, 255, 3)
    tex = cloth * (0.8 + 0.4 * rng.random((h, w, 1)))
    img[shape > 0] = tex[shape > 0]
    cv2.circle(img, (x, y - ph + ph // 8), max(1, ph // 8), (200, 160, 130), -1)
    mask[shape > 0] = PERSON


def _pole(rng, img, mask, y, scale, w) -> None:
    x = int(rng.integers(0, w))
    thick = max(1, int(3 * scale))
    top = max(0, y - int(rng.uniform(0.5, 0.9) * y))
    img[top:y, x : x + thick] = rng.uniform(40, 160)
    mask[top:y, x : x + thick] = VOID
