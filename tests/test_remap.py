"""Class remapping (data.remap): the lookup table, its errors, the cache key, training and
scoring Cityscapes as the talk's 8 classes, and transfer to CamVid's 11."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tests.conftest import ROOT, compose_config
from tests.layouts import CITYSCAPES_IDS, write_camvid, write_cityscapes, write_folder

from segbench.data.class_weights import cached_label_counts
from segbench.data.remap import class_remap
from segbench.errors import ConfigError
from segbench.models import build_network, load_network
from segbench.models.transfer import load_matching

TALK8 = ["road", "sidewalk", "building", "pole", "vegetation", "sky", "person", "vehicle"]
# The talk's classes by Cityscapes label *name* (cityscapesscripts' table), written out
# independently of conf/data/cityscapes8.yaml: what every Cityscapes label id must become.
TALK8_BY_LABEL = {
    "road": "road",
    "sidewalk": "sidewalk",
    "building": "building",
    "pole": "pole",
    "vegetation": "vegetation",
    "sky": "sky",
    "person": "person",
    "rider": "person",
    **{v: "vehicle" for v in ("car", "truck", "bus", "train", "motorcycle", "bicycle")},
}


def data_cfg(tmp_path, *overrides):
    cfg = compose_config("train", tmp_path, list(overrides))
    return OmegaConf.to_container(cfg.data, resolve=True)


def test_cityscapes8_maps_every_label_id_as_stated(tmp_path):
    cfg = data_cfg(tmp_path, "data=cityscapes8", f"data.root={write_cityscapes(tmp_path / 'cs')}")
    assert cfg["class_names"] == TALK8 and cfg["num_classes"] == 8
    datamodule = instantiate(cfg, _convert_="all")
    lut = datamodule.get_split("val").label_map  # Cityscapes' label ids -> train ids -> 8
    for label in cs_labels:
        if not 0 <= label.id < 256:
            continue
        want = TALK8_BY_LABEL.get(label.name)
        got = int(lut[label.id])
        assert got == (255 if want is None else TALK8.index(want)), label.name
    # The masks read through it: the fixture's ids 7, 8, 26, 33 (road, sidewalk, car,
    # bicycle) become road, sidewalk, vehicle, vehicle; the rest ignored.
    mask = datamodule.get_split("val")[0]["mask"]
    assert sorted(torch.unique(mask).tolist()) == [0, 1, 7, 255]
    assert (mask == 7).sum() == 2 * (mask == 0).sum()


def test_cityscapes_camvid11_matches_camvid_facts(tmp_path):
    cfg = data_cfg(tmp_path, "data=cityscapes_camvid11")
    camvid = data_cfg(tmp_path, "data=camvid")
    for key in ("num_classes", "ignore_index", "class_names", "colors"):
        assert cfg[key] == camvid[key], key
    remap = class_remap(cfg["remap"], cfg["class_names"], cfg["ignore_index"])
    lut = remap.lut()
    names = cfg["remap"]["source"]
    assert camvid["class_names"][lut[names.index("rider")]] == "bicyclist"
    assert camvid["class_names"][lut[names.index("wall")]] == "building"
    assert lut[names.index("terrain")] == 11 and lut[255] == 11  # ignored -> CamVid's void


@pytest.mark.parametrize(
    ("remap", "message"),
    [
        ({"classes": {"road": "road"}}, r"data.remap.*expects the keys"),
        (
            {"source": ["road", "car"], "classes": {"road": "road", "car": "vehicel"}},
            r"(?s)data.remap.classes.car='vehicel': is not a target.*allowed: vehicle",
        ),
        (
            {"source": ["road", "car"], "classes": {"road": "road", "cars": "vehicle"}},
            r"(?s)data.remap.classes.cars.*neither a source class.*allowed: car",
        ),
        (
            {"source": ["road", "car", "sky"], "classes": {"road": "road"}},
            r"(?s)data.remap.classes=\['car', 'sky'\]: source classes not mapped.*fix: ",
        ),
        (
            {"source": ["road", "car"], "classes": {"road": "road", 0: "road", "car": "ignore"}},
            r"listed twice",
        ),
    ],
)
def test_remap_errors_name_the_key_and_the_fix(remap, message):
    with pytest.raises(ConfigError, match=message):
        class_remap(remap, ["road", "vehicle"], 255)


def test_remap_given_on_the_command_line_for_own_data(tmp_path):
    root = write_folder(tmp_path / "parts", n=4)  # ids 0, 1, 2 and 255 in four stripes
    overrides = [  # as in the README
        "data=folder",
        f"data.root={root}",
        "data.num_classes=2",
        "data.class_names=[ok,defect]",
        "data.remap={source:[bg,scratch,dent],classes:{bg:ok,scratch:defect,dent:defect}}",
    ]
    mask = instantiate(data_cfg(tmp_path, *overrides)).get_split("train")[0]["mask"]
    values, counts = torch.unique(mask, return_counts=True)
    assert values.tolist() == [0, 1, 255] and counts[1] == 2 * counts[0] == 2 * counts[2]


def test_lut_keeps_unknown_values_visible_and_ids_work_as_keys():
    remap = class_remap(
        {
            "source": ["bg", "a", "b"],
            "source_ignore_index": 3,
            "classes": {0: "x", "a": "x", 2: None},
        },
        ["x"],
        255,
    )
    lut = remap.lut()
    assert lut[:4].tolist() == [0, 0, 255, 255]
    # A value the source does not define stays itself, so the mask check reports it.
    assert lut[7] == 7 and lut[200] == 200
    assert remap.describe() == {"x": ["bg", "a"], "ignore": ["b"]}


def test_class_weight_cache_follows_the_mapping(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    cache = tmp_path / "cache"
    results = {}
    for name, extra in [
        ("19", ["data=cityscapes"]),
        ("8", ["data=cityscapes8"]),
        ("8_bike_ignored", ["data=cityscapes8", "data.remap.classes.bicycle=ignore"]),
    ]:
        cfg = data_cfg(tmp_path, *extra, f"data.root={root}")
        split = instantiate(cfg, _convert_="all").get_split("train")
        results[name] = (split.cache_key(), cached_label_counts(split, cache)[0])
    keys = [json.dumps(k) for k, _ in results.values()]
    assert len(set(keys)) == 3 and len(list(cache.glob("*.json"))) == 3
    counts19, counts8, no_bike = (c for _, c in results.values())
    assert len(counts19) == 19 and len(counts8) == 8
    assert counts8[7] == counts19[13] + counts19[18]  # vehicle = car + bicycle pixels
    assert no_bike[7] == counts19[13]


def test_check_reports_the_target_classes(tmp_path, capsys):
    from segbench.data.check import main

    root = write_cityscapes(tmp_path / "cs")
    assert main(["data=cityscapes8", f"data.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "7 vehicle" in out and "no problems found" in out and "bicycle" not in out


def _train(tmp_path, *overrides) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "train.py",
        *overrides,
        "logger=csv",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "data.batch_size=2",
        "data.num_workers=0",
        "backbone.width=0.35",
        "model.decoder_channels=[16,16,16,16,16]",
        "callbacks.rich_progress_bar=null",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cityscapes_as_8_classes_trains_and_scores_with_their_names(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    _train(tmp_path, "data=cityscapes8", f"data.root={root}", "data.image_size=[64,128]")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(metrics["per_class_iou"]) == TALK8
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    _, hparams = load_network(ckpt)
    assert hparams["data"]["class_names"] == TALK8 and len(hparams["data"]["colors"]) == 8

    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"ckpt_path={ckpt}", f"hydra.run.dir={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert list(report["per_class_iou"]) == TALK8
    # Ground-truth pixels per class in the val split (1 city x 2 frames, 8 stripes of
    # 64x16 px: one each of road and sidewalk, car + bicycle = two of vehicle).
    rows = np.array(report["confusion_matrix"]).sum(1)
    stripe = 2 * 64 * 16
    assert rows.tolist() == [stripe, stripe, 0, 0, 0, 0, 0, 2 * stripe]
    assert "| vehicle |" in (out / "eval.md").read_text()
    assert len(CITYSCAPES_IDS) == 8  # the stripes counted above


def _tiny_checkpoint(tmp_path, data: list[str]) -> str:
    """A checkpoint of a freshly built network on ``data`` (transfer only needs the tensors)."""
    cfg = compose_config("train", tmp_path, [*data, "backbone.width=0.35"])
    net = build_network(OmegaConf.to_container(cfg.model, resolve=True))
    ckpt = {
        "hyper_parameters": {"net": OmegaConf.to_container(cfg.model, resolve=True)},
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
    }
    path = tmp_path / "source.ckpt"
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return str(path)


@pytest.mark.parametrize(
    ("source", "head_skipped"),
    [("data=cityscapes", True), ("data=cityscapes_camvid11", False)],
)
def test_cityscapes_checkpoint_transfers_to_camvid(tmp_path, source, head_skipped):
    ckpt = _tiny_checkpoint(tmp_path / "src", [source])
    cfg = compose_config("train", tmp_path / "dst", ["data=camvid", "backbone.width=0.35"])
    net = build_network(OmegaConf.to_container(cfg.model, resolve=True))
    head = {k: v.clone() for k, v in net.state_dict().items() if "segmentation_head" in k}
    assert head, "the U-Net classifier: model.segmentation_head.*"
    report = load_matching(net, ckpt)
    skipped = sorted(report["skipped"])
    assert skipped == (sorted(head) if head_skipped else [])
    assert not report["missing"] and len(report["loaded"]) + len(skipped) == len(net.state_dict())
    kept = all(torch.equal(net.state_dict()[k], v) for k, v in head.items())
    assert kept == head_skipped  # a skipped head keeps its fresh initialisation


@pytest.mark.slow
def test_fine_tune_camvid_from_a_cityscapes_run(tmp_path):
    cs = write_cityscapes(tmp_path / "cs")
    _train(tmp_path / "a", "data=cityscapes", f"data.root={cs}", "data.image_size=[64,128]")
    ckpt = tmp_path / "a" / "run" / "checkpoints" / "best.ckpt"
    camvid = write_camvid(tmp_path / "camvid")
    proc = _train(tmp_path / "b", "data=camvid", f"data.root={camvid}", f"init.checkpoint={ckpt}")
    assert "skipped (shape mismatch)" in proc.stderr + proc.stdout
    metrics = json.loads((tmp_path / "b" / "run" / "metrics.json").read_text())
    assert len(metrics["per_class_iou"]) == 11
