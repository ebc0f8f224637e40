"""INT8 through ONNX Runtime: a small network trained on real CamVid frames, quantised by export.py.

The network is trained for a few dozen steps on CamVid's train split (so its
predictions mean something), then ``export.py precision=int8`` calibrates on
train frames, scores val through PyTorch, ONNX Runtime fp32 and INT8, and where
INT8 loses too much, keeps the worst layers in fp32.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tests.conftest import CAMVID, ROOT, compose_config
from torch import nn

from segbench.deploy.export import export
from segbench.deploy.parity import ParityError
from segbench.errors import ConfigError
from segbench.evaluation.evaluate import evaluate
from segbench.models.base import SegmentationNetwork
from segbench.runtimes.calibration import CalibrationBatches, ort_reader
from segbench.runtimes.int8 import Int8Settings, kernel_precision, module_name

#: A small run: calibration, parity and scoring on a few frames, at CamVid's 360x480.
SMALL = [
    "calibration.images=8",
    "calibration.batch_size=4",
    "evaluate_images=8",
    "parity_images=4",
    "batch_size=4",
]


class CamNet(SegmentationNetwork):
    """Conv-BN-ReLU (stride 2), conv-ReLU (stride 2), a 1x1 head, bilinear back up: ~5 k params."""

    def __init__(self, num_classes: int = 11, backbone: dict | None = None) -> None:
        super().__init__(num_classes, pad_multiple=4)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 24, 3, 2, 1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Conv2d(24, num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.encoder(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _train(datamodule, steps: int = 40) -> CamNet:
    """A few dozen Adam steps on CamVid train frames (whole 360x480 frames, batches of 4)."""
    torch.manual_seed(0)
    net = CamNet(datamodule.num_classes)
    train = datamodule.get_split("train")
    frames = [train[i] for i in range(0, len(train), len(train) // 24)][:24]
    images = torch.stack([f["image"] for f in frames])
    masks = torch.stack([f["mask"] for f in frames]).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: one thread is faster on a busy machine
    net.train()
    try:
        for _ in range(steps):
            pick = torch.randint(0, len(frames), (4,), generator=gen)
            loss = F.cross_entropy(net(images[pick]), masks[pick], ignore_index=11)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def _save(net: CamNet, cfg, datamodule, path) -> str:
    ckpt = {
        "hyper_parameters": {
            # A network class of the tests, already imported: what a checkpoint may name.
            "net": {"_target_": f"{CamNet.__module__}.CamNet", "num_classes": net.num_classes},
            "data": datamodule.meta,
            "datamodule": OmegaConf.to_container(cfg.data, resolve=True),
        },
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
    }
    torch.save(ckpt, path)
    return str(path)


@pytest.fixture(scope="module")
def camvid_checkpoints(tmp_path_factory):
    """``(trained, hostile)``: CamNet trained on CamVid, and a copy INT8 cannot run as is.

    The hostile copy computes exactly what the trained one does in fp32: one
    encoder channel is dead (bias -1e4 before a ReLU) and the head weighs it
    300x. Per-channel INT8 weights give each head output channel the scale of
    that 300, which rounds every real weight of the head to zero.
    """
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (set SEGBENCH_CAMVID to its folder)")
    from hydra.utils import instantiate

    tmp = tmp_path_factory.mktemp("camvid_int8")
    cfg = compose_config("train", tmp / "train", ["data=camvid", f"data.root={CAMVID}"])
    datamodule = instantiate(cfg.data)
    net = _train(datamodule)
    trained = _save(net, cfg, datamodule, tmp / "trained.ckpt")
    with torch.no_grad():
        net.encoder[3].bias[23] = -1e4
        net.head.weight[:, 23] = 300.0
    return trained, _save(net, cfg, datamodule, tmp / "hostile.ckpt")


class SplitSpy:
    """Wraps a split's dataset and logs every item read as (phase, split, index)."""

    reads: list = []
    phase = "other"

    def __init__(self, dataset, split: str) -> None:
        self.dataset, self.split = dataset, split

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        SplitSpy.reads.append((SplitSpy.phase, self.split, int(index)))
        return self.dataset[index]


@pytest.fixture(scope="module")
def int8_export(camvid_checkpoints, tmp_path_factory):
    """``export.py precision=int8 benchmark=true`` of the trained network, every dataset read
    logged: ``phase`` is ``calibration`` while ONNX Runtime's ``quantize_static`` runs."""
    import onnxruntime.quantization as oq

    from segbench.data.datamodule import SegmentationDataModule

    get_split, quantize_static = SegmentationDataModule.get_split, oq.quantize_static

    def calibrating(*args, **kwargs):
        SplitSpy.phase = "calibration"
        try:
            return quantize_static(*args, **kwargs)
        finally:
            SplitSpy.phase = "other"

    out = tmp_path_factory.mktemp("int8_export")
    overrides = [
        f"ckpt_path={camvid_checkpoints[0]}", "precision=int8", "benchmark=true",
        "bench.batch_sizes=[1]", "bench.runs=2", "bench.warmup=1", *SMALL,
    ]  # fmt: skip
    SplitSpy.reads = []
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SegmentationDataModule, "get_split", lambda dm, s: SplitSpy(get_split(dm, s), s))
        mp.setattr(oq, "quantize_static", calibrating)
        mp.chdir(cwd)
        report = export(compose_config("export", out, overrides))
    assert json.loads((out / "export.json").read_text()) == report
    assert list(cwd.iterdir()) == []  # nothing left in the working directory
    return out, report, list(SplitSpy.reads)


def test_int8_export_records_calibration_and_what_stays_fp32(int8_export):
    out, report, _ = int8_export
    assert report["precision"] == "int8" and (out / "model_int8.onnx").is_file()
    assert report["files"]["onnx_int8"]["path"].endswith("model_int8.onnx")
    int8 = report["int8"]
    assert (
        int8["settings"] | {"format": "QDQ", "method": "minmax", "per_channel": True}
        == int8["settings"]
    )
    assert (int8["settings"]["activation_type"], int8["settings"]["weight_type"]) == (
        "uint8",
        "int8",
    )
    calib = int8["calibration"]
    # 8 frames evenly spread over CamVid's 367 train frames (not the first 8).
    assert calib["split"] == "train" and calib["images"] == 8 and calib["batch_size"] == 4
    assert calib["indices"][0] == 0 and calib["indices"][-1] == 366
    # Every convolution runs as an integer kernel; only the bilinear resize of the logits
    # stays float (360x480 needs no padding to 4 in the static INT8 graph).
    assert int8["int8_kernels"]["com.microsoft:QLinearConv"] == 3
    assert set(int8["fp32_kernels"]) == {"Resize"}
    # Quantised from the deploy form, at the calibration size: the 11-class head in
    # whole GEMM blocks of 16, checked against the network in fp32 first.
    graph = int8["graph"]
    assert graph["deploy_form"] == [
        "head: Conv2d to 11 classes -> 16 channels (zero filters), the first kept"
    ]
    assert graph["deploy_form_max_abs_diff"] < 1e-4
    assert graph["input"]["shape"] == ["batch", 3, 360, 480] and graph["static_reason"]
    assert int8["accepted"] and len(int8["attempts"]) == 1 and int8["excluded_nodes"] == []


def test_int8_accuracy_is_measured_on_real_frames(int8_export):
    _, report, _ = int8_export
    acc = report["accuracy"]
    assert acc["split"] == "val" and acc["images"] == 8
    assert set(acc["miou"]) == {"pytorch", "onnxruntime", "onnxruntime_int8"}
    # Trained: sky and road (or buildings) are segmented, so the INT8 delta is about real
    # predictions, not a constant map.
    ious = acc["per_class_iou"]["pytorch"]
    assert acc["miou"]["pytorch"] > 0.1 and sum(iou > 0.3 for iou in ious.values()) >= 2
    delta = acc["miou_delta_points"]["onnxruntime_int8"]
    assert delta == pytest.approx(
        (acc["miou"]["onnxruntime_int8"] - acc["miou"]["pytorch"]) * 100, abs=1e-3
    )
    assert abs(delta) <= 1.0 and acc["miou_delta_points"]["onnxruntime"] == pytest.approx(
        0, abs=0.01
    )
    moved = {
        c: (acc["per_class_iou"]["onnxruntime_int8"][c] - iou) * 100
        for c, iou in acc["per_class_iou"]["pytorch"].items()
        if not np.isnan(iou)
    }
    assert acc["class_delta_points"]["onnxruntime_int8"] == {
        c: pytest.approx(d, abs=0.01) for c, d in moved.items() if abs(d) > 1.0
    }
    parity = report["parity"]["onnxruntime_int8"]
    assert parity["passed"] and parity["min_agreement_pct"] == 95.0
    assert 95.0 <= parity["agreement_pct"] < 100.0 or parity["max_abs_diff"] > 0
    (row,) = [r for r in report["latency"] if r["precision"] == "int8"]
    assert row["runtime"] == "onnxruntime" and row["miou"] == acc["miou"]["onnxruntime_int8"]


@pytest.mark.slow
def test_evaluate_scores_the_int8_model_like_export(int8_export, camvid_checkpoints, tmp_path):
    out, report, _ = int8_export
    result = evaluate(
        compose_config(
            "evaluate",
            tmp_path,
            [
                f"ckpt_path={camvid_checkpoints[0]}",
                "runtime=onnxruntime_int8",
                f"model_path={out / 'model_int8.onnx'}",
                "batch_size=4",
            ],
        )
    )
    assert result["runtime"] == "onnxruntime_int8" and 0 < result["miou"] < 1


def test_calibration_reads_training_frames_only(int8_export):
    _, report, reads = int8_export
    calibration = [(split, i) for phase, split, i in reads if phase == "calibration"]
    indices = report["int8"]["calibration"]["indices"]
    assert sorted(calibration) == sorted(("train", i) for i in indices) and len(indices) == 8
    # The scored split is read for parity and scoring, never while calibrating.
    assert {split for phase, split, _ in reads if phase == "other"} == {"val"}


def test_calibrating_on_the_scored_split_is_refused(tmp_path):
    cfg = compose_config(
        "export", tmp_path, ["ckpt_path=unused.ckpt", "precision=int8", "calibration.split=val"]
    )
    with pytest.raises(ConfigError, match=r"calibration.split='val'.*scored.*\n  fix: .*train"):
        export(cfg)  # before the checkpoint is opened
    cfg = compose_config("export", tmp_path, ["ckpt_path=unused.ckpt", "precision=int4"])
    with pytest.raises(ConfigError, match=r"precision='int4'"):
        export(cfg)
    cfg = compose_config(
        "export", tmp_path, ["ckpt_path=unused.ckpt", "precision=int8", "int8.activation_type=s8"]
    )
    with pytest.raises(ConfigError, match=r"int8.activation_type='s8'.*\n  allowed: "):
        export(cfg)


@pytest.mark.slow
def test_int8_loss_is_traced_to_a_layer_and_repaired(camvid_checkpoints, tmp_path):
    report = export(
        compose_config(
            "export", tmp_path, [f"ckpt_path={camvid_checkpoints[1]}", "precision=int8", *SMALL]
        )
    )
    int8 = report["int8"]
    first, *repairs = int8["attempts"]
    # All-INT8 rounds the head's weights away: far off PyTorch.
    assert not first["parity_passed"] and first["miou_delta_points"] < -1.0
    # The ranking names the head (by its PyTorch module name in the deploy form, where it
    # is computed in 16 channels), worst SQNR drop first.
    assert int8["layers"][0]["module"] == "head.conv" and int8["layers"][0]["drop_db"] > 10
    assert repairs[0]["fp32_layers"] == ["head.conv"] and int8["accepted"]
    assert any("conv2d_2" in n for n in int8["excluded_nodes"])
    assert abs(report["accuracy"]["miou_delta_points"]["onnxruntime_int8"]) <= 1.0
    assert report["parity"]["onnxruntime_int8"]["passed"]
    # The model written is the repaired one: the head is a float convolution in it.
    kernels = kernel_precision(tmp_path / "model_int8.onnx")
    assert any("Conv" in op for op in kernels["fp32_kernels"])
    assert kernels["int8_kernels"]["com.microsoft:QLinearConv"] == 2


@pytest.mark.slow
def test_int8_loss_without_a_fallback_fails_with_the_numbers(camvid_checkpoints, tmp_path):
    cfg = compose_config(
        "export",
        tmp_path,
        [f"ckpt_path={camvid_checkpoints[1]}", "precision=int8", "int8.fallback_layers=[]", *SMALL],
    )
    with pytest.raises(ParityError, match=r"onnxruntime_int8: argmax agreement .*< 95.0%"):
        export(cfg)
    int8 = json.loads((tmp_path / "export.json").read_text())["int8"]
    assert not int8["accepted"] and "no fallback tried" in int8["reason"]


def test_int8_settings_are_checked():
    assert Int8Settings().check().record()["format"] == "QDQ"
    with pytest.raises(ConfigError, match=r"int8.method='entropy'.*\n  allowed: "):
        Int8Settings(method="entropy").check()
    with pytest.raises(ConfigError, match=r"int8.percentile=0"):
        Int8Settings(percentile=0).check()


def test_module_names_come_from_the_exporters_scopes():
    from onnx import helper

    node = helper.make_node("Conv", ["x", "w"], ["y"], name="node_conv2d_3")
    entry = node.metadata_props.add()
    entry.key, entry.value = (
        "pkg.torch.onnx.name_scopes",
        "['', 'decoder', 'decoder.blocks.0', 'conv2d_3']",
    )
    assert module_name(node) == "decoder.blocks.0"
    assert module_name(helper.make_node("Relu", ["y"], ["z"])) is None


def test_onnxruntime_reader_feeds_the_batches_and_rewinds():
    data = [{"image": torch.full((3, 8, 12), float(i))} for i in range(6)]
    batches = CalibrationBatches(data, (8, 12), batch_size=2, num_images=4)
    assert batches.indices == [0, 2, 3, 5]  # evenly spread over the 6 frames
    reader = ort_reader(batches, "images")
    first = [reader.get_next()["images"][:, 0, 0, 0].tolist() for _ in range(2)]
    assert first == [[0.0, 2.0], [3.0, 5.0]] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["images"].shape == (2, 3, 8, 12)


def _export_cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "export.py"), *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_export_cli_refuses_calibrating_on_the_scored_split(tmp_path):
    done = _export_cli(
        "ckpt_path=unused.ckpt",
        "precision=int8",
        "calibration.split=val",
        f"hydra.run.dir={tmp_path}",
    )
    assert done.returncode == 1
    assert "error: calibration.split='val'" in done.stderr + done.stdout


@pytest.mark.slow
def test_export_cli_writes_the_int8_model(tmp_path, data_dir):
    """The documented command on a zoo network (FCN / MobileNetV2 x0.35, synthetic streets)."""
    from hydra.utils import instantiate
    from tests.conftest import SYNTHETIC

    from segbench.models import build_network

    cfg = compose_config(
        "train", tmp_path / "train", ["model=fcn", "backbone.width=0.35", *SYNTHETIC], data_dir
    )
    datamodule = instantiate(cfg.data)
    torch.manual_seed(0)
    net_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    net = build_network(net_cfg).eval()
    ckpt = tmp_path / "fcn.ckpt"
    hparams = {
        "net": net_cfg,
        "data": datamodule.meta,
        "datamodule": OmegaConf.to_container(cfg.data, resolve=True),
    }
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": state}, ckpt)
    out = tmp_path / "export"
    # Random weights put many pixels on near-ties: the parity floor is not what is tested here.
    done = _export_cli(
        f"ckpt_path={ckpt}", "precision=int8", "calibration.images=8", "calibration.batch_size=4",
        "parity_images=2", "int8.min_agreement=0", "int8.max_miou_drop=100",
        f"hydra.run.dir={out}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "export.json").read_text())
    assert (out / "model_int8.onnx").is_file() and report["int8"]["calibration"]["split"] == "train"
    assert report["int8"]["int8_kernels"]["com.microsoft:QLinearConv"] > 20
