"""Runtimes as rows: the one runtime tuple, parity before latency, PyTorch's GPU fast paths.

CUDA-only paths (channels_last fp16, CUDA graphs, torch.compile on CUDA) are
tested up to the CUDA boundary here and end to end by the ``gpu`` tests, which
skip without a GPU.
"""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import ROOT, compose_config
from torch import nn

from segbench.errors import ConfigError
from segbench.models.base import SegmentationNetwork
from segbench.profiling.latency import runtime_latency
from segbench.profiling.profile import profile_network
from segbench.runtimes import (
    RUNTIME_NAMES,
    RUNTIMES,
    make_predictor,
    runtime_key,
    runtime_spec,
)
from segbench.runtimes.parity import agreement, fit_batch, street_frames
from segbench.runtimes.pytorch import (
    CudaGraphLogits,
    compiled_logits,
    eager_logits,
    fast_path_logits,
)

SIZE = (40, 56)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class SmallNet(SegmentationNetwork):
    """Conv-BN-ReLU (stride 2), a 1x1 head, bilinear back up; weights set so classes separate."""

    def __init__(self, num_classes: int = 5, backbone: dict | None = None) -> None:
        super().__init__(num_classes, pad_multiple=2)
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.encoder(x)), size=x.shape[-2:], mode="bilinear")


def small_net() -> SmallNet:
    torch.manual_seed(0)
    net = SmallNet().eval()
    with torch.no_grad():  # large, distinct class scores: few near-ties, as in a trained net
        net.head.weight.mul_(20)
    return net


def test_runtimes_are_named_once_with_their_precisions():
    assert len(set(RUNTIME_NAMES)) == len(RUNTIMES)
    spec = runtime_spec("onnxruntime_int8")
    assert (spec.row, spec.precisions, spec.devices) == ("onnxruntime", ("int8",), ("cpu",))
    assert runtime_spec("cuda_graphs").precisions == ("fp16",)
    # Rows are keyed by (runtime, precision): INT8 ONNX Runtime is its own runtime again.
    assert runtime_key({"runtime": "onnxruntime", "precision": "int8"}) == "onnxruntime_int8"
    assert runtime_key({"runtime": "onnxruntime", "precision": "fp32"}) == "onnxruntime"
    assert runtime_key({"runtime": "tensorrt", "precision": "int8"}) == "tensorrt"
    assert runtime_key({"runtime": "torch_compile", "precision": "fp16"}) == "torch_compile"
    with pytest.raises(ConfigError, match=r"runtimes='cuda_graph'.*\n  allowed: cuda_graphs"):
        runtime_spec("cuda_graph", key="runtimes")


def test_predictors_of_exported_and_fast_path_runtimes():
    net = small_net()
    with pytest.raises(ConfigError, match=r"(?s)runtime=onnxruntime_int8 needs.*model_int8.onnx"):
        make_predictor("onnxruntime_int8", net)
    # CPU: torch.compile runs; the CUDA-only paths say so before anything is built.
    with pytest.raises(ConfigError, match=r"device='cpu': cuda_graphs runs on CUDA only"):
        make_predictor("cuda_graphs", net, "cpu")
    with pytest.raises(
        ConfigError, match=r"channels_last runs on CUDA only\n  fix: use device=cuda"
    ):
        make_predictor("channels_last", net, "cpu")


def test_fast_paths_stop_at_the_cuda_boundary(monkeypatch):
    net = small_net()
    with pytest.raises(ConfigError, match="runs on CUDA only"):
        CudaGraphLogits(net, "cpu")
    with pytest.raises(ConfigError, match=r"compile_mode='fast'.*\n  allowed: "):
        compiled_logits(net, "cpu", mode="fast")
    with pytest.raises(
        ConfigError, match=r"runtime='tensorrt': not a PyTorch fast path\n  allowed: "
    ):
        fast_path_logits("tensorrt", net, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU and none is visible"):
        CudaGraphLogits(net, "cuda")


def test_channels_last_eager_is_the_same_network():
    # The memory-format plumbing of the fp16 CUDA path, checked where it runs here (fp32, CPU).
    net = small_net()
    x = fit_batch(street_frames(2, SIZE), 2, SIZE)
    nhwc = eager_logits(small_net(), "cpu", "fp32", channels_last=True)
    assert next(iter(net.parameters())).is_contiguous()
    torch.testing.assert_close(nhwc(x), eager_logits(net, "cpu")(x), atol=1e-5, rtol=1e-5)


def test_parity_frames_fill_any_batch_at_the_input_size():
    frames = street_frames(3, (20, 30), seed=4)
    assert frames[0].shape == (3, 20, 30) and frames[0].dtype == torch.float32
    # Normalised with ImageNet statistics: roughly zero-mean, unit-spread values.
    assert -1.5 < torch.stack(frames).mean() < 1.5 and torch.stack(frames).std() > 0.3
    batch = fit_batch(frames, 5, SIZE)
    assert batch.shape == (5, 3, *SIZE)
    torch.testing.assert_close(batch[3], batch[0])  # cycled
    torch.testing.assert_close(
        batch[1], F.interpolate(frames[1][None], size=SIZE, mode="bilinear")[0]
    )


def test_agreement_counts_pixels_and_applies_the_floor():
    net = small_net()
    ref = eager_logits(net, "cpu")
    x = fit_batch(street_frames(2, SIZE), 2, SIZE)

    def flipped(images):  # first image's top row argmax flipped
        out = ref(images).clone()
        out[0, :, 0] = -out[0, :, 0]
        return out

    result = agreement(ref, flipped, [x], 99.0)
    assert result["agreement_pct"] == pytest.approx(100 * (1 - SIZE[1] / (2 * SIZE[0] * SIZE[1])))
    assert result["images"] == 2 and result["passed"] is False
    assert agreement(ref, ref, [x], 99.9)["passed"] is True


def test_int8_row_is_parity_checked_before_it_is_timed():
    rows, skipped = runtime_latency(
        "onnxruntime_int8", small_net(), SIZE, [1, 2], devices=("cpu",), warmup=1, runs=2
    )
    assert skipped == [] and [r["batch"] for r in rows] == [1, 2]
    for row in rows:
        assert (row["runtime"], row["precision"], row["device_type"]) == (
            "onnxruntime",
            "int8",
            "cpu",
        )
        p = row["parity"]
        assert p["passed"] and p["agreement_pct"] >= 95.0 and p["images"] == row["batch"]
        assert p["frames"] == "rendered street scenes" and row["median_ms"] > 0
        assert row["int8"]["activation_type"] == "uint8" and row["int8"]["per_channel"]
        assert row["int8"]["calibration_frames"] == "rendered street scenes"


def test_a_runtime_that_disagrees_or_breaks_is_a_skip_not_a_row(monkeypatch):
    net = small_net()

    def broken(runtime, net, device, compile_mode=None):
        logits = eager_logits(net, device)
        wrong = lambda images: -logits(images)  # noqa: E731  argmax becomes argmin
        wrong.mode = "default"
        return wrong

    monkeypatch.setattr("segbench.profiling.gated.fast_path_logits", broken)
    timed = []
    monkeypatch.setattr(
        "segbench.profiling.gated.latency_table", lambda *a, **k: timed.append(a) or []
    )
    rows, skipped = runtime_latency("torch_compile", net, SIZE, [1], devices=("cpu", "cuda"))
    assert rows == [] and timed == []  # never timed
    _, (gpu_only,) = runtime_latency("cuda_graphs", net, SIZE, [1], devices=("cpu",))
    assert gpu_only["reason"] == "runs on cuda only; devices=['cpu']"
    by_device = {s["device_type"]: s for s in skipped}
    assert by_device["cpu"]["reason"].startswith("parity: argmax agreement 0.00% < 99.9%")
    assert by_device["cpu"]["parity"]["frames"] == "rendered street scenes"
    if not torch.cuda.is_available():
        assert by_device["cuda"]["reason"] == "no CUDA device"

    def failing(*args, **kwargs):
        raise RuntimeError("inductor: no C++ compiler")

    monkeypatch.setattr("segbench.profiling.gated.fast_path_logits", failing)
    _, skipped = runtime_latency("torch_compile", net, SIZE, [1], devices=("cpu",))
    assert skipped == [
        {
            "runtime": "torch_compile",
            "precision": "fp32",
            "device_type": "cpu",
            "reason": "RuntimeError: inductor: no C++ compiler",
        }
    ]


def test_profile_lists_every_runtime_as_a_row_or_a_reason():
    result = profile_network(
        small_net(),
        SIZE,
        batch_size=1,
        runtimes=("pytorch", "channels_last", "cuda_graphs"),
        devices=("cpu", "cuda"),
        precisions=("fp32",),
        warmup=1,
        runs=2,
    )
    keys = {(r["runtime"], r["precision"], r["device_type"]) for r in result["latency"]}
    assert ("pytorch", "fp32", "cpu") in keys
    if not torch.cuda.is_available():
        reasons = {(s["runtime"], s.get("precision")): s["reason"] for s in result["skipped"]}
        assert reasons[("channels_last", "fp16")] == "no CUDA device"
        assert reasons[("cuda_graphs", "fp16")] == "no CUDA device"


@pytest.mark.slow  # inductor compiles C++ for the CPU: seconds even for this network
def test_torch_compile_on_the_cpu_matches_eager():
    rows, skipped = runtime_latency(
        "torch_compile", small_net(), SIZE, [1], devices=("cpu",), warmup=1, runs=2
    )
    assert skipped == []
    (row,) = rows
    assert (row["runtime"], row["precision"], row["compile_mode"]) == (
        "torch_compile",
        "fp32",
        "default",
    )
    assert row["parity"]["agreement_pct"] == 100.0 and row["parity"]["first_call_s"] > 0


def test_profile_cli_takes_the_new_runtime_names(tmp_path):
    done = subprocess.run(
        [
            sys.executable, "-m", "segbench.profiling.profile", "backbone.width=0.35",
            "input_size=[64,96]", "batch_size=1", "runs=1", "warmup=1",
            "runtimes=[cuda_graphs,channels_last]", "devices=[cpu,cuda]",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((tmp_path / "profile.json").read_text())
    names = {r["runtime"] for r in saved["latency"]} | {s["runtime"] for s in saved["skipped"]}
    assert names == {"cuda_graphs", "channels_last"}


def test_train_profile_runtimes_accept_the_int8_row(tmp_path, data_dir):
    from segbench.profiling.profile import profile_trained

    cfg = compose_config(
        "train",
        tmp_path,
        ["data.image_size=[40,56]", "profile_runtimes=[pytorch,onnxruntime_int8]"],
        data_dir,
    )
    result = profile_trained(small_net(), cfg, tmp_path / "profile.json")
    assert ("onnxruntime", "int8") in {(r["runtime"], r["precision"]) for r in result["latency"]}


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("runtime", ["channels_last", "cuda_graphs", "torch_compile"])
def test_gpu_fast_paths_agree_with_eager_fp32_and_are_timed(runtime):
    rows, skipped = runtime_latency(
        runtime, small_net(), (64, 96), [1, 2], devices=("cuda",), warmup=2, runs=3
    )
    assert skipped == [], skipped
    assert [(r["batch"], r["precision"], r["device_type"]) for r in rows] == [
        (1, "fp16", "cuda"),
        (2, "fp16", "cuda"),
    ]
    assert all(r["parity"]["passed"] and r["parity"]["agreement_pct"] >= 99.0 for r in rows)


@pytest.mark.gpu
@CUDA
def test_cuda_graph_replays_per_shape_with_static_buffers():
    net = small_net()
    graphed = CudaGraphLogits(small_net(), "cuda")
    eager = eager_logits(net, "cuda", "fp16", channels_last=True)
    a, b = (fit_batch(street_frames(2, SIZE, seed=s), 2, SIZE).cuda() for s in (1, 2))
    out_a = graphed(a).clone()
    out_b = graphed(b)
    assert len(graphed.graphs) == 1  # same shape: one capture, replayed with new data
    torch.testing.assert_close(out_a, eager(a), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(out_b, eager(b), atol=1e-2, rtol=1e-2)
    graphed(a[:1])
    assert len(graphed.graphs) == 2  # a new shape is captured once more
