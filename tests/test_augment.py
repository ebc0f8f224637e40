"""Augmentation pipelines from conf/augment: masks stay label maps, padding is ignored, val is untouched."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from tests.conftest import compose_config
from tests.layouts import write_camvid

from segbench.data.transforms import build_transform


@pytest.mark.parametrize("augment", ["none", "light", "heavy"])
def test_pipelines_keep_mask_values_and_pad_with_ignore(tmp_path, augment):
    cfg = compose_config(
        "train", tmp_path, [f"augment={augment}", "data=camvid", "data.image_size=[64,96]"]
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
        assert out["image"].shape == (3, 64, 96) and out["image"].dtype == torch.float32
        values = set(np.unique(np.asarray(out["mask"])).tolist())
        assert values <= {0, 3, 8, 11}, f"interpolated or wrong padding labels: {values}"
        seen |= values
    if augment == "heavy":
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
