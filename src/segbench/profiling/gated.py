"""Latency rows that count only after parity: ONNX Runtime INT8 and PyTorch's fast paths.

Each of these runtimes changes the arithmetic (INT8, fp16, fused kernels), so
before it is timed at a batch size it must agree with eager fp32 PyTorch on
the same frames at that shape (argmax agreement at least
:data:`segbench.runtimes.parity.MIN_AGREEMENT` of its precision). A runtime
that cannot be built here, fails, or disagrees is a ``skipped`` entry with the
reason (and the parity numbers), never a latency row.
"""

import copy
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from segbench.errors import ConfigError
from segbench.runtimes import RuntimeSpec
from segbench.runtimes.calibration import CalibrationBatches, ort_reader
from segbench.runtimes.int8 import Int8Settings, kernel_precision, preprocess, quantize
from segbench.runtimes.int8_graph import export_source
from segbench.runtimes.latency import NOISY_SPREAD, Runtime, latency_table, time_callable
from segbench.runtimes.onnx import OnnxModel, runtime_tags
from segbench.runtimes.parity import MIN_AGREEMENT, agreement, fit_batch, street_frames
from segbench.runtimes.pytorch import eager_logits, fast_path_logits

log = logging.getLogger(__name__)

#: Frames rendered when none are given: parity (seed 0) and INT8 calibration (seed 1).
PARITY_FRAMES, CALIBRATION_FRAMES = 4, 8


def gated_latency(
    spec: RuntimeSpec,
    net: nn.Module,
    input_size: Sequence[int],
    batch_sizes: Sequence[int],
    devices: Iterable[str] = ("cpu", "cuda"),
    warmup: int = 3,
    runs: int = 10,
    rounds: int = 3,
    noisy_threshold: float = NOISY_SPREAD,
    images: Sequence[torch.Tensor] | None = None,
    calibration_images: Sequence[torch.Tensor] | None = None,
    compile_mode: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """Parity-checked latency rows of ``spec`` on each of its ``devices``, and the skips.

    Args:
        images: Normalised ``(3, H, W)`` frames for parity (resized to
            ``input_size``, cycled to fill a batch); ``None``: rendered street scenes.
        calibration_images: INT8 calibration frames (training frames, not
            ``images``); ``None``: other rendered street scenes.
        compile_mode: ``torch_compile``'s mode (default per device).
    """
    rows, skipped = [], []
    if not set(devices) & set(spec.devices):
        reason = f"runs on {' / '.join(spec.devices)} only; devices={list(devices)}"
        return [], [{"runtime": spec.row, "precision": spec.precisions[0], "reason": reason}]
    source = "given frames" if images is not None else "rendered street scenes"
    frames = list(images) if images is not None else street_frames(PARITY_FRAMES, input_size)
    for device in (d for d in devices if d in spec.devices):
        skip = {"runtime": spec.row, "precision": _precision(spec, device), "device_type": device}
        if device == "cuda" and not torch.cuda.is_available():
            skipped.append({**skip, "reason": "no CUDA device"})
            continue
        try:
            logits, tags = _build(spec, net, device, input_size, calibration_images, compile_mode)
        except (ConfigError, ImportError, RuntimeError) as err:
            skipped.append({**skip, "reason": f"{type(err).__name__}: {err}"})
            continue
        runtime = Runtime(spec.row, logits, device=device, precision=skip["precision"], **tags)
        reference = eager_logits(copy.deepcopy(net), device, "fp32")
        for batch in batch_sizes:
            x = fit_batch(frames, batch, input_size)
            check = _parity(runtime, reference, x, {**skip, "frames": source}, skipped)
            if check is not None:
                timed = latency_table(
                    [runtime],
                    input_size,
                    [batch],
                    warmup,
                    runs,
                    rounds=rounds,
                    noisy_threshold=noisy_threshold,
                )
                for row in timed:
                    rows.append({**row, "parity": check})
        if spec.name == "torch_compile":
            torch.compiler.reset()  # drop the compiled graphs before the next model
    return rows, skipped


def _parity(runtime: Runtime, reference, x: torch.Tensor, skip: dict, skipped: list) -> dict | None:
    """Parity of ``runtime`` at ``x``'s shape, or None after adding the skip with the reason.

    The first call at a shape compiles / captures / warms up; its time is kept.
    """
    out = {}
    try:
        first = time_callable(
            lambda: out.update(
                agreement(reference, runtime.logits, [x], MIN_AGREEMENT[runtime.precision])
            ),
            warmup=0,
            runs=1,
        )
    except Exception as err:  # a runtime failing at run time is a skip with its reason
        skipped.append({**skip, "batch": len(x), "reason": f"{type(err).__name__}: {err}"})
        return None
    out |= {"frames": skip["frames"], "first_call_s": round(first["median_ms"] / 1e3, 2)}
    if not out["passed"]:
        skipped.append({**skip, "batch": len(x), "parity": out, "reason": _disagrees(out)})
        return None
    return out


def _precision(spec: RuntimeSpec, device: str) -> str:
    if spec.name == "torch_compile":
        return "fp16" if device == "cuda" else "fp32"
    return spec.precisions[0]


def _disagrees(check: dict) -> str:
    return (
        f"parity: argmax agreement {check['agreement_pct']:.2f}% < "
        f"{check['min_agreement_pct']}% with eager fp32 on {check['images']} "
        f"{check['frames']} (max |logit diff| {check['max_abs_diff']:.3g}); untrained weights "
        "leave most pixels on near-ties: profile a trained checkpoint (ckpt_path=...)"
    )


def _build(spec, net, device, input_size, calibration_images, compile_mode):
    """``(logits, tags)`` of the runtime; raises what its build raises."""
    if spec.name == "onnxruntime_int8":
        return _int8_session(net, input_size, calibration_images)
    logits = fast_path_logits(spec.name, copy.deepcopy(net), device, compile_mode)
    tags = {"memory_format": "channels_last" if device == "cuda" else "contiguous"}
    if spec.name == "torch_compile":
        tags["compile_mode"] = logits.mode
    return logits, tags


def _int8_session(net, input_size, calibration_images) -> tuple:
    """Exports ``net``, quantises it (calibrated on ``calibration_images``), opens a session."""
    settings = Int8Settings()
    given = calibration_images is not None
    frames = list(calibration_images) if given else street_frames(CALIBRATION_FRAMES, input_size, 1)
    batches = CalibrationBatches(
        [{"image": f} for f in frames], input_size, 1, len(frames), key="calibration_images"
    )
    with tempfile.TemporaryDirectory(prefix="segbench-int8-") as tmp:
        fp32, pre, int8 = (Path(tmp) / n for n in ("model.onnx", "pre.onnx", "int8.onnx"))
        info = export_source(copy.deepcopy(net), fp32, input_size)
        preprocess(fp32, pre)
        quantize(pre, int8, ort_reader(batches), settings, Path(tmp) / "calib.json")
        model = OnnxModel(int8, threads=torch.get_num_threads())
        kernels = kernel_precision(int8, threads=torch.get_num_threads())
    tags = {
        **runtime_tags(model),
        "onnx_dynamic_hw": info["dynamic"]["height"],
        "deploy_form": info["deploy_form"],
        "int8": {
            **settings.record(),
            "calibration_images": len(frames),
            "calibration_frames": "given" if given else "rendered street scenes",
            "fp32_kernels": kernels["fp32_kernels"],
        },
    }
    return model.logits, tags
