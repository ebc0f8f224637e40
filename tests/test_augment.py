"""Augmentation pipelines from conf/augment: masks stay label maps, padding is ignored, val is untouched."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from tests.conftest import compose_config
from tests.layouts import write_camvid

from segbench.data.transforms import build_transform


@pytest.mark.parametrize("augment", ["none", "light", "heavy", "crop", "recipe"])
def test_pipelines_keep_mask_values_and_pad_with_ignore(tmp_path, augment):
    cfg = compose_config(
        "train",
        tmp_path,
        [f"augment={augment}", "data=camvid", "data.image_size=[64,96]"]
        + (["augment.size=[32,48]"] if augment == "crop" else []),
    )
    transform = build_transform(cfg.data.mean, cfg.data.std, instantiate(cfg.augment.train))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[:, 48:] = 3
    mask[20:40, 10:30] = 8
    seen = set()
    for _ in range(30):
        out = transform(image=image, mask=mask)
        size = (32, 48) if augment == "crop" else (64, 96)
        assert out["image"].shape == (3, *size) and out["image"].dtype == torch.float32
        values = set(np.unique(np.asarray(out["mask"])).tolist())
        assert values <= {0, 3, 8, 11}, f"interpolated or wrong padding labels: {values}"
        seen |= values
    if augment in ("heavy", "recipe"):
        assert 11 in seen  # scaled-down images are padded with the ignore index
    if augment == "none":
        assert seen == {0, 3, 8}


def test_validation_never_augments(train_cfg, tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train", "val"))
    cfg = train_cfg("data=camvid", f"data.root={root}", "augment=heavy")
    dm = instantiate(cfg.data, augment=instantiate(cfg.augment.train))
    val = dm.get_split("val")
    a, b = val[0], val[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    mean = torch.tensor(cfg.data.mean)[:, None, None]
    std = torch.tensor(cfg.data.std)[:, None, None]
    raw = torch.from_numpy(np.array(Image.open(val.samples[0].image)))
    assert torch.allclose(a["image"], (raw.permute(2, 0, 1) / 255.0 - mean) / std, atol=1e-5)
    assert len(dm.get_split("train").transform.transforms) > 2  # train does augment


def _away_from_edges(mask: np.ndarray, r: int) -> np.ndarray:
    """True where every pixel within ``r`` (Chebyshev) has the same label and lies in the crop.

    The crop's border counts as an edge: a label edge just outside it still blends the
    image inside it.
    """
    padded = np.pad(mask.astype(int), r, constant_values=-1)
    h, w = mask.shape
    same = np.ones_like(mask, dtype=bool)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            same &= padded[dy : dy + h, dx : dx + w] == mask
    return same


def test_recipe_geometry_keeps_mask_aligned_and_pads_image_and_mask_together(tmp_path):
    """Scale, crop and flip of augment=recipe move image and mask as one.

    The image encodes its label (grey level 20 x class id), in blocks larger than a
    bilinear footprint, so after the geometric transforms the image must still read
    the mask's class at (nearly) every labelled pixel, and the padding colour exactly
    where the mask holds the ignore index. The photometric transforms are left out:
    they change the grey levels by design.
    """
    import albumentations as A

    cfg = compose_config(
        "train", tmp_path, ["augment=recipe", "data=camvid", "data.image_size=[64,96]"]
    )
    geometric = [t for t in instantiate(cfg.augment.train) if not isinstance(t, A.ColorJitter)]
    assert [type(t).__name__ for t in geometric] == ["RandomScale", "RandomCrop", "HorizontalFlip"]
    pipeline = A.Compose(geometric)
    mask = np.zeros((64, 96), np.uint8)
    mask[:, :32], mask[:, 32:64], mask[:32, 64:], mask[32:, 64:] = 1, 4, 7, 10
    image = np.repeat((mask * 20)[..., None], 3, axis=2).astype(np.uint8)
    padded = 0
    for _ in range(100):
        out = pipeline(image=image, mask=mask)
        img, msk = out["image"][..., 0].astype(int), out["mask"]
        assert img.shape == msk.shape == (64, 96)
        labelled = msk != 11
        # a bilinear image blends classes within ~scale px of a label edge (cv2's nearest and
        # linear resizing also place an edge up to a pixel apart): compare 3 px inside
        inner = labelled & _away_from_edges(msk, 3)
        agree = np.abs(img[inner] - 20 * msk[inner].astype(int)) <= 2
        assert inner.sum() > 200 and agree.all(), "image and mask moved apart"
        # PaddleSeg's pad value 127.5 (cv2 rounds to 128) exactly where the label is ignored
        assert set(np.unique(img[~labelled]).tolist()) <= {127, 128}
        padded += int((~labelled).sum())
    assert padded > 0  # some factors < 1 were drawn, so padding was checked


def test_recipe_photometric_jitter_leaves_the_mask_alone(tmp_path):
    import albumentations as A

    cfg = compose_config("train", tmp_path, ["augment=recipe", "data=camvid"])
    jitter = [t for t in instantiate(cfg.augment.train) if isinstance(t, A.ColorJitter)]
    assert len(jitter) == 4  # brightness, contrast, saturation, hue: each on its own p=0.5
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    mask = rng.integers(0, 12, (32, 48), dtype=np.uint8)
    changed = 0
    for _ in range(10):
        out = A.Compose(jitter)(image=image, mask=mask)
        assert np.array_equal(out["mask"], mask)
        changed += not np.array_equal(out["image"], image)
    assert changed > 0
