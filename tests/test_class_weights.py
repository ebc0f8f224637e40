"""Class weights from a training split: published schemes, reference values, the cache."""

import os

import numpy as np
import pytest
from PIL import Image
from tests.layouts import write_camvid

from segbench.data.camvid import CamVid
from segbench.data.class_weights import (
    cached_label_counts,
    class_weights,
    enet_weights,
    label_counts,
    median_frequency_weights,
)

# /work/shared/datasets/camvid/README.md (median_freq) and NUMBERS.md (enet, c = 1.02).
CAMVID_MEDIAN_FREQ = [
    0.2793,
    0.2017,
    4.7865,
    0.1490,
    1.0000,
    0.4217,
    3.8467,
    1.9736,
    0.7889,
    6.3747,
    8.8587,
]
CAMVID_ENET = [
    5.6035,
    4.2953,
    33.5736,
    3.3355,
    15.4856,
    8.7387,
    31.5420,
    32.0120,
    12.8288,
    38.0141,
    43.9074,
]


def test_schemes_on_hand_counts():
    # class 0: 30 px over images totalling 100 px; class 1: 10 px over 50; class 2: 5 over 100.
    counts, image_pixels = np.array([30, 10, 5]), np.array([100, 50, 100])
    freq = np.array([0.3, 0.2, 0.05])
    assert np.allclose(median_frequency_weights(counts, image_pixels), 0.2 / freq)
    assert np.allclose(enet_weights(counts), 1 / np.log(1.02 + counts / 45))
    # A class that never appears gets weight 0, and does not move the median.
    w = median_frequency_weights(np.array([30, 0, 10]), np.array([100, 0, 50]))
    assert w[1] == 0 and np.allclose(w[[0, 2]], [0.25 / 0.3, 0.25 / 0.2])


def test_real_camvid_weights_match_reference(camvid_root, tmp_path):
    ds = CamVid(camvid_root, "train")
    mf = class_weights("median_freq", ds, 11, cache_dir=tmp_path)
    assert np.allclose(mf, CAMVID_MEDIAN_FREQ, atol=1e-3)
    enet = class_weights("enet", ds, 11, cache_dir=tmp_path)  # from the cache
    assert np.allclose(enet, CAMVID_ENET, atol=1e-3)
    assert len(list(tmp_path.glob("camvid-train-*.json"))) == 1


def test_cache_is_used_and_invalidated_when_a_mask_changes(tmp_path):
    root = write_camvid(tmp_path / "camvid", splits=("train",))
    ds = CamVid(root, "train")
    cache = tmp_path / "cache"
    counts, _ = cached_label_counts(ds, cache)
    files = list(cache.glob("*.json"))
    assert len(files) == 1
    # A planted cache entry is returned as is: proof the cache is read.
    files[0].write_text('{"counts": [7], "image_pixels": [7]}')
    assert cached_label_counts(ds, cache)[0].tolist() == [7]
    # Rewriting one mask (new mtime/size) gives a new key and fresh counts.
    mask = ds.samples[0].mask
    Image.fromarray(np.zeros((64, 96), np.uint8)).save(mask)
    os.utime(mask, ns=(1, 1))
    fresh, _ = cached_label_counts(ds, cache)
    assert len(list(cache.glob("*.json"))) == 2
    assert fresh.tolist() == label_counts(ds)[0].tolist() and fresh[0] > counts[0]


@pytest.mark.parametrize("scheme", ["none", None])
def test_none_means_unweighted(scheme):
    assert class_weights(scheme, None, 11) is None


def test_build_loss_takes_weights_from_the_train_split(tmp_path):
    from hydra.utils import instantiate
    from tests.conftest import compose_config

    from segbench.training.losses import build_loss

    root = write_camvid(tmp_path / "camvid", splits=("train", "val"))
    cfg = compose_config(
        "train",
        tmp_path,
        ["data=camvid", f"data.root={root}", "loss=focal", "loss.class_weights=enet"],
    )
    dm = instantiate(cfg.data, augment=[])
    loss = build_loss(cfg.loss, dm, cache_dir=tmp_path / "cache")
    expected = enet_weights(label_counts(CamVid(root, "train"))[0])
    assert np.allclose(loss.class_weights.numpy(), expected)
    assert list((tmp_path / "cache").glob("camvid-train-*.json"))
