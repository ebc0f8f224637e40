"""Profiling: FLOPs against fvcore/ptflops, the real-time budget against NUMBERS.md, profile.json."""

import json
import math

import pytest
import torch
from tests.conftest import compose_config
from torch import nn

from segbench.errors import ConfigError
from segbench.models import build_network
from segbench.profiling.budget import check_budget, frame_budget
from segbench.profiling.flops import count_flops
from segbench.profiling.latency import pytorch_latency
from segbench.profiling.profile import profile

SIZE = (64, 96)

# NUMBERS.md, "Real-time budgets" [derived]: per-frame budget in GOP, as printed there.
NUMBERS_BUDGETS = {
    "parking": {
        ("drive_px2_igpu", "fp32"): "10.9",
        ("drive_px2_igpu", "fp16"): "21.8",
        ("drive_px2_dgpu", "fp32"): "49.5",
        ("drive_px2_dgpu", "int8"): "198",
    },
    "urban": {
        ("drive_px2_igpu", "fp32"): "5.4",
        ("drive_px2_igpu", "fp16"): "10.9",
        ("drive_px2_dgpu", "fp32"): "24.8",
        ("drive_px2_dgpu", "int8"): "99",
    },
    "rural": {
        ("drive_px2_igpu", "fp32"): "21.8",
        ("drive_px2_igpu", "fp16"): "43.5",
        ("drive_px2_dgpu", "fp32"): "99.1",
        ("drive_px2_dgpu", "int8"): "396",
    },
}


def unet_mobilenet() -> nn.Module:
    return build_network(
        {
            "_target_": "segbench.models.Unet",
            "num_classes": 11,
            "backbone": {"name": "mobilenet", "version": "v2", "width": 0.35, "weights": None},
        }
    ).eval()


def deeplab_torchvision() -> nn.Module:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    return deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=11).eval()


@pytest.fixture
def budget_cfg(tmp_path):
    return compose_config("profile", tmp_path).budget


def test_budget_reproduces_numbers_table(budget_cfg):
    rows = check_budget(
        1.0, {k: v for k, v in budget_cfg.devices.items() if "drive" in k}, budget_cfg.scenarios
    )
    got = {(r["scenario"], r["device"], r["precision"]): r["budget_gop"] for r in rows}
    for scenario, table in NUMBERS_BUDGETS.items():
        for (device, precision), printed in table.items():
            decimals = len(printed.partition(".")[2])
            assert round(got[scenario, device, precision], decimals) == float(printed), (
                scenario,
                device,
                precision,
                got[scenario, device, precision],
            )


def test_budget_verdict_and_headroom(budget_cfg):
    devices = {"drive_px2_igpu": budget_cfg.devices.drive_px2_igpu}
    urban = {"urban": budget_cfg.scenarios.urban}
    (fits,) = (r for r in check_budget(4.0, devices, urban) if r["precision"] == "fp32")
    assert fits["fits"] and fits["required_fps"] == 120
    assert fits["headroom_pct"] == pytest.approx(100 * (653 / 120 - 4.0) / (653 / 120))
    (over,) = (r for r in check_budget(6.0, devices, urban) if r["precision"] == "fp32")
    assert not over["fits"] and over["headroom_pct"] < 0
    # A 50 % utilisation halves the budget.
    (half,) = (
        r for r in check_budget(4.0, devices, urban, utilization=0.5) if r["precision"] == "fp32"
    )
    assert half["budget_gop"] == pytest.approx(frame_budget(653, 4, 30) / 2) and not half["fits"]


def test_measured_latency_checked_on_its_device(budget_cfg):
    latency = [
        {
            "runtime": "pytorch",
            "precision": "fp32",
            "batch": 1,
            "device": "Some CPU",
            "device_type": "cpu",
            "median_ms": 20.0,
            "input_size": list(SIZE),
        }
    ]
    devices = {
        "cpu_local": {"name": "local CPU", "gops": {"fp32": 100.0}, "match": "cpu"},
        "drive_px2_igpu": budget_cfg.devices.drive_px2_igpu,
    }
    rows = check_budget(1.0, devices, budget_cfg.scenarios, latencies=latency)
    cpu = {r["scenario"]: r for r in rows if r["device"] == "cpu_local"}
    assert cpu["rural"]["measured_fps"] == pytest.approx(50.0) and cpu["rural"]["measured_fits"]
    assert not cpu["urban"]["measured_fits"]  # 50 fps < 4 x 30
    assert all("measured_fps" not in r for r in rows if r["device"] == "drive_px2_igpu")


@pytest.mark.parametrize("make", [unet_mobilenet, deeplab_torchvision])
def test_flops_match_fvcore_and_ptflops(make):
    from fvcore.nn import FlopCountAnalysis
    from ptflops import get_model_complexity_info

    net = make()
    ours = count_flops(net, SIZE)
    assert ours["gflops"] == pytest.approx(2 * ours["gmacs"])
    fv = FlopCountAnalysis(net, torch.zeros(1, 3, *SIZE))
    fv.unsupported_ops_warnings(False)
    fv.uncalled_modules_warnings(False)
    # fvcore counts one "flop" per MAC; its conv count is the same formula.
    assert ours["gmacs"] == pytest.approx(fv.by_operator()["conv"] / 1e9, rel=1e-9)
    # ptflops, convolutions only: the same MACs plus one add per output of a biased conv.
    others = {
        type(m) for m in net.modules() if not isinstance(m, nn.Conv2d) and not list(m.children())
    }
    macs, _ = get_model_complexity_info(
        net,
        (3, *SIZE),
        as_strings=False,
        backend="pytorch",
        print_per_layer_stat=False,
        ignore_modules=list(others),
        backend_specific_config={"count_functional": False},
    )
    bias_adds = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: bias_adds.append(o.numel()))
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.bias is not None
    ]
    with torch.no_grad():
        net(torch.zeros(1, 3, *SIZE))
    for h in hooks:
        h.remove()
    assert macs / 1e9 == pytest.approx(ours["gmacs"], rel=0.01)
    assert macs == pytest.approx(ours["gmacs"] * 1e9 + sum(bias_adds), rel=1e-9)


def test_profile_writes_json(tmp_path):
    cfg = compose_config(
        "profile",
        tmp_path,
        [
            "backbone.width=0.35",
            "input_size=[64,96]",
            "batch_size=2",
            "runs=2",
            "rounds=2",
            "warmup=1",
            "devices=[cpu]",
        ],
    )
    result = profile(cfg)
    saved = json.loads((tmp_path / "profile.json").read_text())
    assert saved["params"] == result["params"]
    net = build_network({**saved["model"]})
    assert saved["params"]["total"] == sum(p.numel() for p in net.parameters())
    assert saved["flops"]["gmacs"] == pytest.approx(count_flops(net, SIZE)["gmacs"])
    keys = {(r["runtime"], r["precision"], r["device_type"], r["batch"]) for r in saved["latency"]}
    assert keys == {("pytorch", "fp32", "cpu", 1), ("pytorch", "fp32", "cpu", 2)}
    assert all(r["median_ms"] > 0 and r["threads"] >= 1 and r["torch"] for r in saved["latency"])
    # Every row: its rounds, their spread, the noisy flag with its threshold, and the load.
    for r in saved["latency"]:
        assert r["rounds"] == 2 and r["runs"] == 2 and len(r["round_medians_ms"]) == 2
        assert r["rel_spread"] >= 0 and isinstance(r["noisy"], bool)
        assert r["noisy_threshold"] == 0.1 and r["cpus"] >= 1 and len(r["load_avg"]) == 3
    # Budget: every scenario x device precision, and the CPU rows carry the measured fps.
    urban = [r for r in saved["budget"] if r["scenario"] == "urban"]
    assert len(urban) == sum(len(d.gops) for d in cfg.budget.devices.values())
    cpu = next(r for r in urban if r["device"] == "cpu_local")
    assert math.isclose(
        cpu["measured_fps"],
        1000 / next(r["median_ms"] for r in saved["latency"] if r["batch"] == 1),
    )


def test_half_precision_is_cuda_only():
    rows, skipped = pytorch_latency(
        unet_mobilenet(), SIZE, [1], devices=["cpu"], precisions=["fp16", "bf16"]
    )
    assert rows == [] and {s["precision"] for s in skipped} == {"fp16", "bf16"}
    with pytest.raises(ConfigError, match="allowed: fp16"):
        pytorch_latency(unet_mobilenet(), SIZE, [1], devices=["cpu"], precisions=["fp61"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rows_per_precision():
    rows, _ = pytorch_latency(unet_mobilenet(), SIZE, [1, 2], devices=["cuda"], warmup=1, runs=3)
    assert {(r["precision"], r["batch"]) for r in rows} == {
        (p, b) for p in ("fp32", "fp16", "bf16") for b in (1, 2)
    }
    assert all(r["device_type"] == "cuda" and r["median_ms"] > 0 for r in rows)


def test_onnxruntime_rows_beside_eager_and_tensorrt_skipped_with_reason():
    from segbench.profiling.profile import profile_network

    result = profile_network(
        unet_mobilenet(),
        SIZE,
        batch_size=2,
        runtimes=("pytorch", "onnxruntime", "tensorrt"),
        devices=("cpu",),
        precisions=("fp32",),
        warmup=1,
        runs=2,
    )
    keys = {(r["runtime"], r["batch"], r["device_type"]) for r in result["latency"]}
    assert keys == {
        ("pytorch", 1, "cpu"),
        ("pytorch", 2, "cpu"),
        ("onnxruntime", 1, "cpu"),
        ("onnxruntime", 2, "cpu"),
    }
    ort_row = next(r for r in result["latency"] if r["runtime"] == "onnxruntime")
    assert ort_row["input_size"] == list(SIZE) and ort_row["median_ms"] > 0
    assert ort_row["fps"] == pytest.approx(1000.0 / ort_row["median_ms"])
    (trt,) = [s for s in result["skipped"] if s["runtime"] == "tensorrt"]
    assert "tensorrt" in trt["reason"].lower()


def _fake_clock(monkeypatch, durations_ms: list[float]):
    """fn() advances a fake perf_counter by the next duration: timings without a real clock."""
    from segbench.runtimes import latency

    clock, steps = [0.0], iter(durations_ms)
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])

    def fn():
        clock[0] += next(steps) / 1e3

    return fn


@pytest.mark.parametrize(
    "rounds_ms,median,rel,noisy",
    [
        ([[10, 10, 11], [10, 12, 10], [20, 20, 19]], 10.0, 1.0, True),  # a round under load
        ([[10, 10, 11], [10.4, 10.4, 9], [10.2, 11, 10.2]], 10.2, 0.4 / 10.2, False),
        ([[10, 30, 10, 10]], 10.0, None, False),  # one round: no spread, never judged noisy
    ],
)
def test_time_callable_rounds_spread_and_noisy(monkeypatch, rounds_ms, median, rel, noisy):
    from segbench.runtimes.latency import time_callable

    monkeypatch.setattr("os.getloadavg", lambda: (3.0, 2.0, 1.0))
    calls = [5.0] + [ms for r in rounds_ms for ms in r]  # one warm-up call first
    t = time_callable(_fake_clock(monkeypatch, calls), 1, len(rounds_ms[0]), rounds=len(rounds_ms))
    assert t["median_ms"] == pytest.approx(median)  # the median of the round medians
    assert t["rounds"] == len(rounds_ms) and t["runs"] == len(rounds_ms[0])
    assert t["rel_spread"] == (None if rel is None else pytest.approx(rel))
    assert t["noisy"] is noisy and t["noisy_threshold"] == 0.1
    # The warm-up call (5 ms) is not timed.
    assert t["min_ms"] == pytest.approx(min(calls[1:])) and t["max_ms"] == pytest.approx(
        max(calls[1:])
    )
    assert t["load_avg"] == [3.0, 2.0, 1.0] and t["load_per_cpu"] == round(3.0 / t["cpus"], 2)


def test_noisy_threshold_is_the_one_given(monkeypatch):
    from segbench.runtimes.latency import time_callable

    fn = _fake_clock(monkeypatch, [10, 10, 10, 10, 11.5, 11.5])
    t = time_callable(fn, 0, 2, rounds=3, noisy_threshold=0.2)
    assert t["rel_spread"] == pytest.approx(0.15) and not t["noisy"]
    fn = _fake_clock(monkeypatch, [10, 10, 10, 10, 11.5, 11.5])
    assert time_callable(fn, 0, 2, rounds=3, noisy_threshold=0.1)["noisy"]


def test_latency_rows_carry_spread_and_load():
    rows, _ = pytorch_latency(
        unet_mobilenet(),
        SIZE,
        [1],
        devices=["cpu"],
        precisions=["fp32"],
        warmup=0,
        runs=2,
        rounds=2,
    )
    (row,) = rows
    assert row["rounds"] == 2 and len(row["round_medians_ms"]) == 2
    assert row["median_ms"] == pytest.approx(sum(row["round_medians_ms"]) / 2, rel=1e-3)
    assert row["cpu_cores_used"] > 0 and row["load_per_cpu"] is not None
