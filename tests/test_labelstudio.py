"""segbench import-labelstudio: an export built in Label Studio's documented JSON format
(brushes encoded with Label Studio's own RLE encoder, polygons in percent), imported into
the folder layout and trained for a step with data=folder."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tests.conftest import ROOT, compose_config

from segbench.data.labelstudio import Options, import_labelstudio
from segbench.data.labelstudio_classes import hydra_value
from segbench.data.labelstudio_export import reference_paths, region_pixels, rle_decoder
from segbench.errors import ConfigError, DataError

H, W = 48, 64
ROAD, CAR, SKY = 0, 1, 2  # the classes in the order the tests pass them


def brush(label: str, pixels: np.ndarray, rid: str) -> dict:
    """A brushlabels region as Label Studio exports it (RLE of the RGBA layer, alpha 0/255)."""
    from label_studio_converter.brush import mask2rle

    return {
        "id": rid,
        "type": "brushlabels",
        "from_name": "tag",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {
            "format": "rle",
            "rle": mask2rle((pixels * 255).astype(np.uint8)),
            "brushlabels": [label],
        },
    }


def polygon(label: str, points: list, rid: str) -> dict:
    """A polygonlabels region: vertices in percent of the image width/height."""
    return {
        "id": rid,
        "type": "polygonlabels",
        "from_name": "poly",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {"points": points, "closed": True, "polygonlabels": [label]},
    }


def annotation(aid: int, result: list, updated: str = "2024-01-01T00:00:00Z", **flags) -> dict:
    return {
        "id": aid,
        "completed_by": 1,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": updated,
        "updated_at": updated,
        "result": result,
    } | flags


def rect(top, bottom, left, right) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[top:bottom, left:right] = True
    return m


def write_export(tmp: Path, car_label: str = "car") -> tuple[Path, Path, dict[str, np.ndarray]]:
    """An export of 7 tasks, the image files in Label Studio's media/upload layout and a
    local-storage folder; returns (export, media folder, expected class maps by name)."""
    rng = np.random.default_rng(0)
    media, local = tmp / "media", tmp / "local"
    (media / "upload" / "3").mkdir(parents=True)
    (local / "frames").mkdir(parents=True)
    files = {
        "street_a.png": media / "upload" / "3" / "1a2b3c4d-street_a.png",
        "street_b.png": media / "upload" / "3" / "9f8e7d6c-street_b.png",
        "street_c.jpg": local / "frames" / "street_c.jpg",
        "street_d.png": media / "upload" / "3" / "00aa11bb-street_d.png",
    }
    for path in files.values():
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=95)
    road, car = rect(24, 48, 0, 64), rect(16, 40, 20, 40)
    # Task 1: road, then a car drawn over it (the later region wins), a sky polygon
    # (the top-left quarter: x 0-50 %, y 0-25 % = 32 x 12 px); a cancelled annotation
    # labelling everything car must not count.
    a = np.full((H, W), 255, np.uint8)
    a[road], a[car], a[:12, :32] = ROAD, CAR, SKY
    sky = [[0, 0], [50, 0], [50, 25], [0, 25]]
    task1 = [
        annotation(11, [brush("car", np.ones((H, W), bool), "x")], was_cancelled=True),
        annotation(
            12, [brush("road", road, "r1"), brush(car_label, car, "c1"), polygon("sky", sky, "s1")]
        ),
    ]
    # Task 2: two annotations, the later updated one wins (road only at the bottom rows).
    b = np.full((H, W), 255, np.uint8)
    b[40:] = ROAD
    task2 = [
        annotation(21, [brush("road", rect(0, 48, 0, 64), "r2")], "2024-01-01T00:00:00Z"),
        annotation(22, [brush("road", rect(40, 48, 0, 64), "r3")], "2024-03-01T00:00:00Z"),
    ]
    # Task 3: a ground-truth annotation wins over a newer one.
    c = np.full((H, W), 255, np.uint8)
    c[:, :10] = CAR
    task3 = [
        annotation(31, [brush("car", rect(0, 48, 0, 10), "c3")], ground_truth=True),
        annotation(32, [brush("road", rect(0, 48, 0, 64), "r4")], "2025-01-01T00:00:00Z"),
    ]
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/3/1a2b3c4d-street_a.png"}, "annotations": task1},
        {"id": 2, "data": {"image": "/data/upload/3/9f8e7d6c-street_b.png"}, "annotations": task2},
        {
            "id": 3,
            "data": {"image": "/data/local-files/?d=frames%2Fstreet_c.jpg"},
            "annotations": task3,
            "predictions": [{"result": [brush("sky", road, "p")]}],
        },
        {"id": 4, "data": {"image": "/data/upload/3/00aa11bb-street_d.png"}, "annotations": []},
        {
            "id": 5,
            "data": {"image": "/data/upload/3/00aa11bb-street_d.png"},
            "annotations": [annotation(51, [], was_cancelled=True)],
        },
        {
            "id": 6,
            "data": {"image": "/data/upload/3/00aa11bb-street_d.png"},
            "annotations": [annotation(61, [])],
        },
    ]
    export = tmp / "project-3-at-2024-05-01.json"
    export.write_text(json.dumps(tasks))
    return export, [media, local], {"street_a": a, "street_b": b, "street_c": c}


@pytest.fixture
def converter():
    return pytest.importorskip(
        "label_studio_converter.brush", reason="pip install -e '.[labelstudio]'"
    )


def test_import_and_train_one_step_with_data_folder(converter, tmp_path):
    export, (media, local), expected = write_export(tmp_path)
    out = tmp_path / "dataset"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "segbench.cli",
            "import-labelstudio",
            str(export),
            str(out),
            "--images",
            str(media),
            "--images",
            str(local),
            "--classes",
            "road,car,sky",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("3 of 6 tasks")
    for name, ids in expected.items():
        mask = Image.open(out / "masks" / f"{name}.png")
        assert mask.mode == "P" and np.array_equal(np.array(mask), ids), name
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "street_a.png",
        "street_b.png",
        "street_c.jpg",
    ]
    facts = yaml.safe_load((out / "dataset.yaml").read_text())
    assert facts["class_names"] == ["road", "car", "sky"] and facts["image_size"] == [H, W]
    report = facts["import"]
    assert {s["task"]: s["reason"] for s in report["skipped"]} == {
        4: "no annotation",
        5: "only cancelled annotations",
        6: "annotation without a brush or polygon region",
    }
    assert report["multiple_annotations"] == [
        {"task": 2, "chosen": "most recently updated of 2 annotations"},
        {"task": 3, "chosen": "ground truth of 2 annotations"},
    ]
    assert report["cancelled_annotations"] == 2
    assert report["overlap_pixels"] == 16 * 20  # car over road: rows 24-40, columns 20-40
    assert report["label_pixels"]["sky"] == 12 * 32

    command = proc.stdout.split("train with:\n")[1].strip()
    assert command.startswith("python train.py data=folder")
    args = shlex.split(command)[1:]
    train = subprocess.run(
        [
            sys.executable,
            *args,
            "debug=fdr",
            "data.num_workers=0",
            "backbone.width=0.35",
            "model.decoder_channels=[16,16,16,16,16]",
            "logger=csv",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    log = train.stdout + train.stderr
    assert "train split: 2 samples" in log and "val split: 1 samples" in log


def test_overlap_ignore_unlabeled_class_and_mapping(converter, tmp_path):
    export, images, expected = write_export(tmp_path, car_label="Car")
    with pytest.raises(ConfigError, match=r"(?s)not classes: 'Car', closest: car.*--map 'Car=car'"):
        import_labelstudio(export, tmp_path / "x", Options(images, classes=["road", "car", "sky"]))
    options = Options(
        images,
        classes=["background", "road", "car", "sky"],
        mapping={"Car": "car"},
        unlabeled="background",
        overlap="ignore",
    )
    report = import_labelstudio(export, tmp_path / "out", options)
    a = np.array(Image.open(tmp_path / "out" / "masks" / "street_a.png"))
    want = expected["street_a"].astype(np.int64) + 1  # background takes id 0
    want[want == 256] = 0
    want[24:40, 20:40] = 255  # road and car both claim these pixels: ignored
    assert np.array_equal(a, want)
    # Task 6 (an empty annotation) now means "all background".
    assert (
        report["written"] == 4
        and (np.array(Image.open(tmp_path / "out" / "masks" / "street_d.png")) == 0).all()
    )


def test_missing_images_fail_naming_them_or_are_skipped(converter, tmp_path):
    export, (media, _), _ = write_export(tmp_path)
    with pytest.raises(
        DataError,
        match=r"(?s)1 image file\(s\) not found: /data/local-files/\?d=frames%2Fstreet_c.jpg.*--images",
    ):
        import_labelstudio(export, tmp_path / "out", Options([media]))
    report = import_labelstudio(export, tmp_path / "out", Options([media], skip_missing=True))
    assert report["written"] == 2 and any(
        "image not found" in s["reason"] for s in report["skipped"]
    )
    assert sorted(
        yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())["class_names"]
    ) == ["car", "road", "sky"]


def test_reference_paths_of_each_storage():
    assert reference_paths("/data/upload/3/1a2b3c4d-a b.png") == [
        "upload/3/1a2b3c4d-a b.png",
        "3/1a2b3c4d-a b.png",
        "1a2b3c4d-a b.png",
        "a b.png",
    ]
    assert reference_paths("/data/local-files/?d=data%2Fimg%201.jpg")[:2] == [
        "data/img 1.jpg",
        "img 1.jpg",
    ]
    assert reference_paths("s3://bucket/x/5.png") == ["5.png", "5.png"]


def test_polygon_percent_coordinates_cover_the_right_pixels():
    region = polygon("sky", [[25, 50], [75, 50], [75, 100], [25, 100]], "p")
    pixels = region_pixels(region, H, W, decode_rle=None)
    assert np.array_equal(pixels, rect(24, 48, 16, 48))


def test_missing_converter_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "label_studio_converter.brush", None)
    monkeypatch.setitem(sys.modules, "label_studio_converter", None)
    with pytest.raises(ConfigError, match=r"(?s)label-studio-converter.*\[labelstudio\]"):
        rle_decoder()


def test_not_an_export(tmp_path):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"image": "a.png", "tag": []}]))
    with pytest.raises(DataError, match="not a list of Label Studio tasks"):
        import_labelstudio(path, tmp_path / "out", Options())


def test_class_names_reach_hydra_as_the_printed_command_writes_them(tmp_path):
    names = ["traffic sign", "car", "true", "a,b"]
    value = hydra_value(names)
    overrides = ["data=folder", "data.root=x", "data.num_classes=4", f"data.class_names={value}"]
    cfg = compose_config("train", tmp_path, overrides)
    assert list(cfg.data.class_names) == names


def test_photo_turned_by_exif_is_stored_as_labelled(tmp_path):
    # Stored 48 wide x 64 high with EXIF orientation 6 (turn 90 degrees clockwise):
    # Label Studio shows, and the region is drawn on, a 64 x 48 image.
    stored = np.zeros((W, H, 3), np.uint8)
    stored[:, : H // 2] = 255  # the left half when stored = the top half when shown
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    top = polygon("bright", [[0, 0], [100, 0], [100, 50], [0, 50]], "p")
    task = {"id": 1, "data": {"image": "phone.jpg"}, "annotations": [annotation(1, [top])]}
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task]))
    report = import_labelstudio(export, tmp_path / "out", Options())
    assert report["written"] == 1 and report["turned_by_exif"] == 1
    image = np.array(Image.open(tmp_path / "out" / "images" / "phone.png"))
    mask = np.array(Image.open(tmp_path / "out" / "masks" / "phone.png"))
    assert image.shape == (H, W, 3) and mask.shape == (H, W)
    assert image[: H // 2].mean() > 200 and image[H // 2 :].mean() < 50
    assert (mask[: H // 2] == 0).all() and (mask[H // 2 :] == 255).all()
