import hashlib

import numpy as np
from PIL import Image

from segbench.data.synthetic import ensure_generated, render_scene

PARAMS = {"version": 1, "seed": 3, "num_train": 4, "num_val": 2, "height": 64, "width": 96}


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    ensure_generated(tmp_path / "a", PARAMS)
    ensure_generated(tmp_path / "b", PARAMS)
    ensure_generated(tmp_path / "c", {**PARAMS, "seed": 4})
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert len(list((tmp_path / "a" / "trainannot").glob("*.png"))) == 4


def test_regenerates_when_parameters_change(tmp_path):
    ensure_generated(tmp_path / "d", PARAMS)
    ensure_generated(tmp_path / "d", {**PARAMS, "num_val": 3})
    assert len(list((tmp_path / "d" / "val").glob("*.png"))) == 3


def test_scenes_are_not_solvable_by_colour_alone():
    rng = np.random.default_rng(0)
    scenes = [render_scene(rng, 96, 128) for _ in range(20)]
    masks = np.stack([m for _, m in scenes])
    assert set(np.unique(masks)) >= {0, 1, 2, 3, 6}
    # the same RGB colour (quantised) appears under several classes
    img = np.stack([i for i, _ in scenes]).reshape(-1, 3) // 32
    keys = img[:, 0] * 64 + img[:, 1] * 8 + img[:, 2]
    labels = masks.reshape(-1)
    shared = sum(len(np.unique(labels[(keys == k) & (labels < 8)])) > 1 for k in np.unique(keys))
    assert shared > 20


def test_written_masks_are_single_channel_ids(tmp_path):
    ensure_generated(tmp_path / "e", PARAMS)
    with Image.open(next((tmp_path / "e" / "trainannot").glob("*.png"))) as m:
        assert m.mode == "L"
        assert set(np.unique(np.asarray(m))) <= set(range(8)) | {255}
