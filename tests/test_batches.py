"""Training batches sent as uint8 and converted on the device (data.uint8_batches)."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tests.conftest import compose_config
from tests.layouts import write_camvid

from segbench.training.module import SegmentationModule
from segbench.training.train import train

TINY_NET = {
    "_target_": "segbench.models.FCN",
    "backbone": {
        "name": "mobilenet",
        "version": "v2",
        "width": 0.35,
        "weights": None,
        "encoders": {"v2": {"0.35": "tu-mobilenetv2_035"}},
    },
    "num_classes": 11,
}


def _datamodule(tmp_path, root, *overrides):
    cfg = compose_config(
        "train",
        tmp_path,
        ["data=camvid", f"data.root={root}", "data.image_size=[64,96]", *overrides],
    )
    return instantiate(cfg.data, augment=instantiate(cfg.augment.train))


def test_uint8_batches_become_the_float_batches_on_the_device(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train", "val"), n=4)
    common = ("augment=none", "data.num_workers=0", "data.batch_size=4")
    floats = _datamodule(tmp_path, root, *common)
    uint8 = _datamodule(tmp_path, root, *common, "data.uint8_batches=true")
    batch = next(iter(uint8.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["mask"].dtype == torch.uint8
    # validation (and everything outside training) still gets float32 frames, int64 masks
    val = next(iter(uint8.val_dataloader()))
    assert val["image"].dtype == torch.float32 and val["mask"].dtype == torch.int64

    module = SegmentationModule(TINY_NET, uint8.meta, torch.nn.CrossEntropyLoss(), torch.optim.SGD)
    order = batch["index"]
    expected = torch.utils.data.default_collate([floats.get_split("train")[int(i)] for i in order])
    converted = module.on_after_batch_transfer(batch, 0)
    assert converted["image"].dtype == torch.float32 and converted["mask"].dtype == torch.int64
    torch.testing.assert_close(converted["image"], expected["image"], atol=1e-5, rtol=0)
    assert torch.equal(converted["mask"], expected["mask"])
    # ImageNet statistics, not [0, 1] frames: a missing normalisation would be far off
    assert converted["image"].min() < -1.0


def test_uint8_batches_train_end_to_end(train_cfg):
    metrics = train(train_cfg("data.uint8_batches=true", "backbone.width=0.35"))
    assert np.isfinite(metrics["best_val_miou"]) and metrics["epochs"] == 1


def test_uint8_batches_must_be_a_switch(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train", "val"), n=1)
    with pytest.raises(Exception, match=r"data.uint8_batches='device'(?s:.*)allowed: true, false"):
        _datamodule(tmp_path, root, "data.uint8_batches=device")
