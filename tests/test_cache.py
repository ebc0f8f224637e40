"""data.cache: each frame decoded once, shared with loader workers, damaged files as without it."""

import logging

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tests.conftest import compose_config
from tests.layouts import write_camvid

from segbench.data import cache as cache_module
from segbench.data.cache import DecodedCache, attach_cache
from segbench.data.camvid import CamVid
from segbench.data.datamodule import data_from_config
from segbench.errors import DataError


class CountingCamVid(CamVid):
    """CamVid that counts how often a file pair is decoded (in this process)."""

    reads = 0

    def load_pair(self, sample):
        type(self).reads += 1
        return super().load_pair(sample)


def _datamodule(tmp_path, root, *overrides):
    cfg = compose_config(
        "train",
        tmp_path,
        ["data=camvid", f"data.root={root}", "data.image_size=[64,96]", "augment=none", *overrides],
    )
    return instantiate(cfg.data, augment=instantiate(cfg.augment.train))


def test_each_frame_is_decoded_once_across_epochs(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train", "val"), n=5)
    dm = _datamodule(tmp_path, root, "data.cache=true", "data.num_workers=0")
    CountingCamVid.reads = 0
    dm.splits["train"] = CountingCamVid(root, "train", transform=dm.get_split("val").transform)
    uncached = [dm.splits["train"][i] for i in range(5)]
    assert CountingCamVid.reads == 5
    CountingCamVid.reads = 0
    loader = dm.loader("train")
    for _ in range(3):  # three epochs
        assert sum(len(b["image"]) for b in loader) == 5
    assert CountingCamVid.reads == 5  # the fill, nothing after
    cached = [dm.splits["train"][i] for i in range(5)]
    for a, b in zip(uncached, cached, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_workers_read_the_cache_not_the_files(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train", "val"), n=6)
    dm = _datamodule(tmp_path, root, "data.cache=true", "data.num_workers=2", "data.batch_size=2")
    expected = [dm.get_split("val")[i] for i in range(6)]
    loader = dm.loader("val")  # fills the cache in this process, before the workers start
    for path in (root / "val").iterdir():
        path.unlink()  # a worker that went to disk would fail now
    batches = list(loader)
    images = torch.cat([b["image"] for b in batches])
    assert torch.equal(images, torch.stack([e["image"] for e in expected]))
    assert torch.equal(
        torch.cat([b["mask"] for b in batches]), torch.stack([e["mask"] for e in expected])
    )


def test_cached_arrays_survive_augmentation_writing_in_place(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train",), n=2)
    ds = CamVid(root, "train")
    ds.decoded = DecodedCache.fill(ds)
    image, mask = ds.decoded.get(0)
    image[:] = 0
    mask[:] = 0
    again, _ = ds.decoded.get(0)
    assert again.any()  # the cache handed out a copy


def test_damaged_frame_with_cache_follows_on_bad_sample(tmp_path, caplog):
    root = write_camvid(tmp_path / "camvid", splits=("train",), n=3)
    (root / "train" / "0001TP_000000.png").write_bytes(b"")
    with pytest.raises(DataError, match="0001TP_000000.png: image file is empty"):
        attach_cache(CamVid(root, "train"), True)  # error: stops before any training
    skipping = CamVid(root, "train", on_bad_sample="skip")
    with caplog.at_level(logging.WARNING):
        assert attach_cache(skipping, True)
        sample = skipping[0]  # replaced by the next good sample, as when reading from disk
    assert sample["index"] == 1
    assert "skipping" in caplog.text and "0001TP_000000.png" in caplog.text
    assert len(skipping.decoded.good()) == 2


def test_auto_caches_small_splits_only(tmp_path, monkeypatch):
    root = write_camvid(tmp_path / "camvid", splits=("train",), n=4, h=64, w=96)
    small = CamVid(root, "train")
    assert cache_module.estimated_bytes(small) == 4 * 64 * 96 * 4
    assert attach_cache(small, "auto") and small.decoded is not None
    monkeypatch.setattr(cache_module, "AUTO_MAX_BYTES", 4 * 64 * 96 * 4 - 1)
    big = CamVid(root, "train")
    assert not attach_cache(big, "auto") and big.decoded is None
    assert not attach_cache(CamVid(root, "train"), False)
    assert attach_cache(CamVid(root, "train"), True)


def test_bad_policy_names_the_key(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train",), n=1)
    # Hydra wraps it; the entry points print the ConfigError alone (test_config)
    with pytest.raises(Exception, match=r"data.cache='always'(?s:.*)allowed: [a-z, ]*auto"):
        _datamodule(tmp_path, root, "data.cache=always")


def test_checkpoint_data_configs_without_the_key_still_load(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("val",), n=2)
    cfg = compose_config("train", tmp_path, ["data=camvid", f"data.root={root}"])
    from omegaconf import OmegaConf

    stored = OmegaConf.to_container(cfg.data, resolve=True)
    stored.pop("cache")  # written before data.cache existed
    dm = data_from_config(stored)
    assert dm.cache == "auto" and len(dm.loader("val").dataset) == 2
    assert np.asarray(dm.get_split("val").decoded.get(0)[0]).dtype == np.uint8
