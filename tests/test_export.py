"""Export: ONNX with dynamic shapes, the static fallback, parity, export.json, runtimes, TensorRT inputs."""

import json
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tests.conftest import SYNTHETIC, compose_config
from torch import nn

from segbench.config import group_options
from segbench.deploy.export import export
from segbench.deploy.parity import parity
from segbench.errors import ConfigError
from segbench.evaluation.evaluate import evaluate
from segbench.models.base import SegmentationNetwork
from segbench.runtimes.onnx import OnnxModel, export_onnx
from segbench.runtimes.tensorrt import (
    CalibrationBatches,
    build_engine,
    import_tensorrt,
    make_calibrator,
)


class TinyNet(SegmentationNetwork):
    """Two stride-2 convs and a bilinear head: exports in seconds, pads to 4."""

    def __init__(
        self, num_classes: int = 8, pyramid: bool = False, backbone: dict | None = None
    ) -> None:  # load_network always passes one
        super().__init__(num_classes, pad_multiple=4)
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        # PSPNet-like bins: pooling to a 2x2 grid depends on the input size.
        self.pool = nn.AdaptiveAvgPool2d(2) if pyramid else None
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(x)
        if self.pool is not None:
            f = f + F.interpolate(self.pool(f), size=f.shape[-2:], mode="bilinear")
        return F.interpolate(self.head(f), size=x.shape[-2:], mode="bilinear", align_corners=False)


def odd_input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    net = TinyNet().eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return net, path, export_onnx(net, path, [40, 56])


def test_dynamic_onnx_matches_pytorch_at_other_sizes(tiny_onnx):
    net, path, info = tiny_onnx
    assert info["dynamic"] == {"batch": True, "height": True, "width": True}
    assert info["static_reason"] is None and info["opset"] == 18
    assert info["input"]["shape"] == ["batch", 3, "height", "width"]
    model = OnnxModel(path)
    # The export size, then a second odd size that pads differently (padding is in the graph).
    for shape in [(1, 3, 40, 56), (3, 3, 37, 53)]:
        x = odd_input(*shape)
        with torch.inference_mode():
            ref = net(x)
        got = model.logits(x)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
        assert torch.equal(model(x), ref.argmax(1))


def test_adaptive_pooling_falls_back_to_static_hw(tmp_path):
    net = TinyNet(pyramid=True).eval()
    info = export_onnx(net, tmp_path / "pyr.onnx", [40, 56])
    assert info["dynamic"] == {"batch": True, "height": False, "width": False}
    assert "AdaptiveAvgPool2d(output_size=2) at 'pool'" in info["static_reason"]
    assert info["input"]["shape"] == ["batch", 3, 40, 56]
    model = OnnxModel(tmp_path / "pyr.onnx")
    x = odd_input(2, 3, 40, 56)
    torch.testing.assert_close(model.logits(x), net(x).detach(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match=r"(?s)static input size \[40, 56\].*re-export"):
        model(odd_input(1, 3, 37, 53))


def test_probe_catches_a_silently_static_dynamic_graph(tmp_path, monkeypatch):
    # Without the module check, dynamo exports adaptive pooling "dynamically" with the
    # kernel of the example size: right at 40x56, wrong elsewhere. The probe must notice.
    monkeypatch.setattr("segbench.runtimes.onnx.static_shape_reason", lambda net: None)
    net = TinyNet(pyramid=True).eval()
    info = export_onnx(net, tmp_path / "pyr.onnx", [40, 56])
    assert info["dynamic"]["height"] is False
    assert "disagrees with PyTorch at 2x3x45x61" in info["static_reason"]


def test_parity_counts_disagreeing_pixels():
    net = TinyNet().eval()

    class Flipped:  # negates the top row of each batch's first image: argmax becomes argmin
        def logits(self, images):
            out = net(images).detach().clone()
            out[0, :, 0] = -out[0, :, 0]
            return out

    images = [odd_input(3, 8, 12) for _ in range(3)]
    result = parity(net, Flipped(), images, 2, torch.device("cpu"), 99.0)
    # Batches of 2: images 0 and 2 lose a 12-pixel row each, of 3 x 8 x 12 = 288 pixels.
    assert result["agreement_pct"] == pytest.approx(100 * (288 - 24) / 288)
    assert result["passed"] is False and result["images"] == 3
    assert result["max_abs_diff"] > 0


def _tiny_checkpoint(tmp_path, data_dir) -> str:
    """A segbench checkpoint of TinyNet on the tests' synthetic streets."""
    cfg = compose_config("train", tmp_path / "train", SYNTHETIC, data_dir)
    datamodule_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    torch.manual_seed(0)
    net = TinyNet(num_classes=cfg.data.num_classes)
    ckpt = {
        "hyper_parameters": {
            # A network class of the tests, already imported: what a checkpoint may name.
            "net": {
                "_target_": f"{TinyNet.__module__}.TinyNet",
                "num_classes": cfg.data.num_classes,
            },
            "data": datamodule.meta,
            "datamodule": datamodule_cfg,
        },
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
    }
    path = tmp_path / "tiny.ckpt"
    torch.save(ckpt, path)
    return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("export")
    ckpt = _tiny_checkpoint(tmp, data_dir)
    cfg = compose_config(
        "export",
        tmp / "out",
        [
            f"ckpt_path={ckpt}",
            "benchmark=true",
            "bench.batch_sizes=[1,2]",
            "bench.runs=2",
            "bench.warmup=1",
            "parity_images=6",
        ],
    )
    return ckpt, tmp / "out", export(cfg)


def test_export_json(exported):
    _, out, report = exported
    assert json.loads((out / "export.json").read_text()) == report
    onnx_file = report["files"]["onnx"]
    assert onnx_file["path"].endswith("model.onnx") and onnx_file["size_mb"] > 0
    assert report["onnx"]["dynamic"]["height"] and report["onnx"]["static_reason"] is None
    assert report["preprocessing"]["pad_multiple"] == 4
    assert report["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    p = report["parity"]["onnxruntime"]
    assert p["images"] == 6 and p["passed"] and p["agreement_pct"] >= 99.9
    assert p["max_abs_diff"] < 1e-3
    acc = report["accuracy"]
    assert set(acc["miou"]) == {"pytorch", "onnxruntime"}
    assert abs(acc["miou_delta_points"]["onnxruntime"]) < 0.1
    rows = {(r["runtime"], r["batch"]) for r in report["latency"]}
    assert rows == {("pytorch", 1), ("pytorch", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    ort_row = next(r for r in report["latency"] if r["runtime"] == "onnxruntime")
    assert ort_row["providers"] == ["CPUExecutionProvider"] and ort_row["threads"] >= 1
    assert ort_row["input"] == [1, 3, 64, 96] and "miou" in ort_row and ort_row["p90_ms"] > 0


def test_export_scores_a_subset_when_asked(exported, tmp_path):
    ckpt, _, full = exported
    cfg = compose_config(
        "export",
        tmp_path,
        [f"ckpt_path={ckpt}", "evaluate_images=3", "batch_size=2", "parity_images=2"],
    )
    report = export(cfg)
    # Whole batches: 3 images round up to 2 batches of 2, of the split's 8.
    assert full["accuracy"]["images"] == 8 and report["accuracy"]["images"] == 4
    assert report["accuracy"]["miou"]["pytorch"] != full["accuracy"]["miou"]["pytorch"]


def test_onnx_metadata_carries_preprocessing(exported):
    import onnx

    _, out, _ = exported
    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert json.loads(props["segbench.std"]) == [0.229, 0.224, 0.225]
    assert len(json.loads(props["segbench.class_names"])) == 8


def test_evaluate_onnxruntime_agrees_with_pytorch(exported, tmp_path):
    ckpt, out, _ = exported
    torch_report = evaluate(compose_config("evaluate", tmp_path / "pt", [f"ckpt_path={ckpt}"]))
    ort_report = evaluate(
        compose_config(
            "evaluate",
            tmp_path / "ort",
            [f"ckpt_path={ckpt}", "runtime=onnxruntime", f"model_path={out / 'model.onnx'}"],
        )
    )
    assert ort_report["runtime"] == "onnxruntime"
    assert ort_report["miou"] == pytest.approx(torch_report["miou"], abs=1e-6)
    assert np.array_equal(ort_report["confusion_matrix"], torch_report["confusion_matrix"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["runtime=onnx"], r"runtime='onnx'.*\n  allowed: onnxruntime"),
        (["runtime=onnxruntime"], r"model_path=None.*\n  fix: pass model_path="),
    ],
)
def test_evaluate_runtime_errors(exported, tmp_path, overrides, message):
    ckpt, _, _ = exported
    with pytest.raises(ConfigError, match=message):
        evaluate(compose_config("evaluate", tmp_path, [f"ckpt_path={ckpt}", *overrides]))


def test_missing_tensorrt_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(
        ConfigError, match=r"(?s)format='tensorrt'.*not installed.*fix: .*\[trt\].*format=onnx"
    ):
        import_tensorrt()
    with pytest.raises(ConfigError, match="not installed"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16")
    with pytest.raises(ConfigError, match=r"precision='int4'.*\n  allowed: int8"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "int4")
    cfg = compose_config("export", tmp_path, ["ckpt_path=unused.ckpt", "format=tensorrt"])
    with pytest.raises(ConfigError, match="not installed"):
        export(cfg)  # before loading the checkpoint or exporting anything
    cfg = compose_config("export", tmp_path, ["ckpt_path=unused.ckpt", "precision=fp16"])
    with pytest.raises(ConfigError, match=r"precision='fp16'.*\n  fix: add format=tensorrt"):
        export(cfg)


def test_int8_calibration_block_is_shared_with_tensorrt(tmp_path):
    cfg = compose_config(
        "export",
        tmp_path,
        ["ckpt_path=unused.ckpt", "calibration.images=32", "calibration.batch_size=4"],
    )
    assert (cfg.tensorrt.calibration_split, cfg.tensorrt.calibration_images) == ("train", 32)
    assert cfg.tensorrt.calibration_batch_size == 4
    cfg = compose_config(
        "export",
        tmp_path,
        ["ckpt_path=unused.ckpt", "format=tensorrt", "precision=int8", "calibration.split=val"],
    )
    with pytest.raises(
        ConfigError, match=r"tensorrt.calibration_split='val': is the split that is"
    ):
        export(cfg)  # before TensorRT is looked for or the checkpoint opened


class ImageList:
    def __init__(self, sizes):
        self.items = [{"image": odd_input(3, *s) + i} for i, s in enumerate(sizes)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_calibration_batches_are_the_normalised_images_in_fixed_batches():
    data = ImageList([(24, 32)] * 5 + [(30, 40)] * 2)
    batches = CalibrationBatches(data, (24, 32), batch_size=3, num_images=None)
    arrays = list(batches)
    assert len(batches) == len(arrays) == 2  # 7 images: the partial third batch is dropped
    for array in arrays:
        assert array.shape == batches.shape == (3, 3, 24, 32)
        assert array.dtype == np.float32 and array.flags["C_CONTIGUOUS"]
    expected = torch.stack([data[i]["image"] for i in range(3)]).numpy()
    np.testing.assert_array_equal(arrays[0], expected)
    # The 30x40 image (index 5) is resized to the calibration shape.
    resized = F.interpolate(data[5]["image"][None], size=(24, 32), mode="bilinear")[0]
    np.testing.assert_allclose(arrays[1][2], resized.numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        CalibrationBatches(data, (24, 32), batch_size=8, num_images=4)


def test_calibrator_feeds_batches_and_keeps_its_cache(tmp_path):
    class Base:  # stands in for tensorrt.IInt8EntropyCalibrator2
        def __init__(self):
            pass

    fake_trt = types.SimpleNamespace(IInt8EntropyCalibrator2=Base)
    batches = CalibrationBatches(ImageList([(24, 32)] * 4), (24, 32), batch_size=2)
    calibrator = make_calibrator(fake_trt, batches, tmp_path / "int8.calib", device="cpu")
    assert isinstance(calibrator, Base) and calibrator.get_batch_size() == 2
    expected = list(batches)
    for array in expected:
        (pointer,) = calibrator.get_batch(["images"])
        assert pointer == calibrator.buffer.data_ptr()
        np.testing.assert_array_equal(calibrator.buffer.numpy(), array)
    assert calibrator.get_batch(["images"]) is None
    assert calibrator.read_calibration_cache() is None
    calibrator.write_calibration_cache(b"TRT-calibration")
    assert calibrator.read_calibration_cache() == b"TRT-calibration"


@pytest.mark.slow
@pytest.mark.parametrize("model", group_options("model"))
def test_zoo_model_exports_with_parity(model, tmp_path):
    from segbench.models import build_network

    # ERFNet and SegNet bring their own encoders; the others run on MobileNetV2 x0.5.
    backbone = {"erfnet": [], "segnet": ["backbone=segnet_basic"]}.get(
        model, ["backbone.width=0.5"]
    )
    cfg = compose_config("train", tmp_path, [f"model={model}", *backbone, *SYNTHETIC])
    net = build_network(OmegaConf.to_container(cfg.model, resolve=True)).eval()
    info = export_onnx(net, tmp_path / "m.onnx", [96, 128])
    assert info["dynamic"]["height"] or info["static_reason"]
    size = [96 + 37, 128 + 5] if info["dynamic"]["height"] else [96, 128]
    x = odd_input(2, 3, *size)
    with torch.inference_mode():
        ref = net(x)
    got = OnnxModel(tmp_path / "m.onnx").logits(x)
    assert (got.argmax(1) == ref.argmax(1)).float().mean() >= 0.999
    assert (got - ref).abs().max() <= 1e-3 * max(1.0, ref.abs().max().item())
