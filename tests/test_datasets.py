"""Each loader reads a fixture written in its dataset's official layout."""

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image
from tests.conftest import compose_config
from tests.layouts import (
    CITYSCAPES_IDS,
    write_camvid,
    write_cityscapes,
    write_folder,
    write_lane,
    write_pets,
)

from segbench.data.camvid import CamVid
from segbench.data.cityscapes import (
    CATEGORIES,
    CATEGORY_OF_TRAIN_ID,
    Cityscapes,
    to_categories,
    to_label_ids,
)
from segbench.data.folder import ImageMaskFolder
from segbench.data.lane import RAW_IDS, SUBMISSION_IDS, LaneSegmentation, decode
from segbench.data.pets import OxfordPets
from segbench.errors import ConfigError, DataError
from segbench.training.train import train


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    root = write_cityscapes(tmp_path)
    ds = Cityscapes(root, "train")
    assert len(ds) == 4  # labelIds only: instanceIds/color files are not taken for labels
    assert [s.image.parent.name for s in ds.samples] == ["aachen", "aachen", "bochum", "bochum"]
    raw = np.array(Image.open(ds.samples[0].mask))
    mask = ds[0]["mask"].numpy()
    for label_id, train_id in CITYSCAPES_IDS.items():
        assert set(np.unique(mask[raw == label_id])) == {train_id}
    test = Cityscapes(root, "test")
    assert len(test) == 2 and (test[0]["mask"] == 255).all()  # placeholder labels ignored


def test_cityscapes_tables_come_from_cityscapesscripts(tmp_path):
    cfg = compose_config("train", tmp_path, ["data=cityscapes"])
    evaluated = sorted((lb for lb in cs_labels if 0 <= lb.trainId < 255), key=lambda lb: lb.trainId)
    assert cfg.data.class_names == [lb.name.replace(" ", "_") for lb in evaluated]
    assert [tuple(c) for c in cfg.data.colors] == [lb.color for lb in evaluated]
    assert CATEGORIES == ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
    assert CATEGORY_OF_TRAIN_ID.tolist() == [
        0,
        0,
        1,
        1,
        1,
        2,
        2,
        2,
        3,
        3,
        4,
        5,
        5,
        6,
        6,
        6,
        6,
        6,
        6,
    ]
    assert to_label_ids(np.array([0, 13, 18])).tolist() == [7, 26, 33]
    assert to_categories(np.array([0, 13, 255])).tolist() == [0, 6, 255]


@pytest.mark.parametrize("mode, expected", [("binary", {0, 1}), ("trimap", {0, 1, 2})])
def test_pets_modes_and_every_tenth_val_line(tmp_path, mode, expected):
    root = write_pets(tmp_path)
    n = len(expected)
    train, val = (
        OxfordPets(root, s, num_classes=n, mode=mode, height=32, width=32) for s in ("train", "val")
    )
    names = [
        ln.split()[0] for ln in (root / "annotations" / "trainval.txt").read_text().splitlines()
    ]
    assert [s.image.stem for s in val.samples] == [names[0], names[10]]
    assert len(train) == 18 and not {s.image.stem for s in train.samples} & {names[0], names[10]}
    assert len(OxfordPets(root, "test", num_classes=n, mode=mode)) == 3
    sample = train[0]
    assert sample["image"].shape == (32, 32, 3)
    raw = cv2.resize(
        np.array(Image.open(train.samples[0].mask)), (32, 32), interpolation=cv2.INTER_NEAREST
    )
    mask = sample["mask"].numpy()
    assert set(np.unique(mask)) == expected
    assert (mask[raw == 2] == 0).all() and (mask[raw == 1] == 1).all()
    assert (mask[raw == 3] == (1 if mode == "binary" else 2)).all()


def test_pets_mode_and_class_count_must_agree(tmp_path):
    root = write_pets(tmp_path)
    with pytest.raises(ConfigError, match="data.num_classes=2: mode trimap has 3 classes"):
        OxfordPets(root, "train", num_classes=2, mode="trimap")
    cfg = compose_config("train", tmp_path, ["data=pets", "data.mode=trimap"])
    assert cfg.data.num_classes == 3 and cfg.data.class_names[2] == "border"
    with pytest.raises(
        InstantiationException, match="(?s)data.mode='trimapp'.*allowed: trimap, binary"
    ):
        instantiate(compose_config("train", tmp_path, ["data=pets", "data.mode=trimapp"]).data)


def test_lane_crop_resize_mapping_and_decode_round_trip(tmp_path):
    root = write_lane(tmp_path)
    train = LaneSegmentation(root, "train", height=32, width=48, val_percent=50)
    val = LaneSegmentation(root, "val", height=32, width=48, val_percent=50)
    records = lambda ds: {s.image.parts[-3] + s.image.parts[-4] for s in ds.samples}  # noqa: E731
    assert records(val) == {"Record002Road02"} and not records(train) & records(val)
    assert len(train) == 16 and len(val) == 4
    sample = train[0]
    assert sample["image"].shape == (32, 48, 3)
    mask = sample["mask"].numpy()
    # The top 690 rows (all raw 200 = class 1) are cropped: what is left are the stripes.
    raw = np.array(Image.open(train.samples[0].mask))[690:]
    expected = cv2.resize(raw, (48, 32), interpolation=cv2.INTER_NEAREST)
    lut = {raw_id: t for t, ids in RAW_IDS.items() for raw_id in ids}
    assert (mask == np.vectorize(lut.get)(expected)).all()
    assert set(np.unique(mask)) == set(range(8))
    # decode: train ids -> raw ids, at full camera size with the crop filled by 0.
    full = decode(mask, full_size=(1710, 96))
    assert full.shape == (1710, 96) and (full[:690] == 0).all()
    assert set(np.unique(full)) <= set(SUBMISSION_IDS.tolist())
    assert (train.label_map[decode(mask)] == mask).all()  # round trip
    for t, raw_ids in RAW_IDS.items():
        assert SUBMISSION_IDS[t] in raw_ids


def test_folder_flat_and_split_layouts(tmp_path):
    root = write_folder(tmp_path / "flat", n=12)
    val = ImageMaskFolder(root, "val", num_classes=3, val_every=5)
    train = ImageMaskFolder(root, "train", num_classes=3, val_every=5)
    assert [s.image.stem for s in val.samples] == ["part_000", "part_005", "part_010"]
    assert len(train) == 9
    assert set(np.unique(train[0]["mask"].numpy())) == {0, 1, 2, 255}
    split_root = tmp_path / "splits"
    for split in ("train", "val"):
        write_folder(split_root / "tmp", n=2)
        (split_root / "images").mkdir(exist_ok=True)
        (split_root / "masks").mkdir(exist_ok=True)
        (split_root / "tmp" / "images").rename(split_root / "images" / split)
        (split_root / "tmp" / "masks").rename(split_root / "masks" / split)
    assert len(ImageMaskFolder(split_root, "val", num_classes=3)) == 2
    with pytest.raises(DataError, match="images/test: missing"):
        ImageMaskFolder(split_root, "test", num_classes=3)


def test_camvid_test_split(tmp_path):
    root = write_camvid(tmp_path)
    ds = CamVid(root, "test")
    assert len(ds) == 4 and ds.samples[0].image.parent.name == "test"
    assert ds.samples[0].mask.parent.name == "testannot"


# Each is 5-20 s on a shared 2-core CPU, so all but one run with `make test-all`.
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "dataset, writer, extra",
    [
        pytest.param("camvid", write_camvid, [], marks=SLOW),
        pytest.param("cityscapes", write_cityscapes, [], marks=SLOW),
        pytest.param("pets", write_pets, ["data.image_size=[32,32]"], marks=SLOW),
        pytest.param(
            "lane",
            write_lane,
            ["data.image_size=[32,64]", "data.dataset.val_percent=50"],
            marks=SLOW,
        ),
        ("folder", write_folder, ["data.num_classes=3", "data.class_names=[a,b,c]"]),
    ],
)
def test_fast_dev_run_from_fixture(train_cfg, tmp_path, dataset, writer, extra):
    root = writer(tmp_path / dataset)
    cfg = train_cfg(
        f"data={dataset}",
        f"data.root={root}",
        "debug=fdr",
        "data.batch_size=2",
        "backbone.width=0.35",
        "model.decoder_channels=[16,16,16,16,16]",
        *extra,
    )
    train(cfg)
