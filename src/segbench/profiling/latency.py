"""Latency rows of a network per runtime, precision, device and batch.

Eager PyTorch is timed directly; ONNX Runtime and TensorRT through a temporary
ONNX export; ONNX Runtime INT8 and PyTorch's fast paths (channels_last, CUDA
graphs, torch.compile) after a parity check against eager fp32
(:mod:`segbench.profiling.gated`). Every row comes from
:func:`segbench.runtimes.latency.latency_table`, so all of segbench's latency
figures are measured the same way.

Row layout (readers key on these; a new runtime adds rows, never renames keys):
``runtime``, ``precision``, ``device_type``, ``batch`` identify a row (the report's
column is ``ms <runtime> <device_type> <precision> b<batch>``, plus ``variant``
when a row has one, e.g. ``channels_last``); ``median_ms``, ``p90_ms``,
``mean_ms``, ``min_ms``, ``max_ms``, ``iqr_ms``, ``runs`` (per round), ``rounds``,
``round_medians_ms``, ``rel_spread``, ``noisy``, ``noisy_threshold`` time it;
``load_avg``, ``load_per_cpu``, ``cpus``, ``cpu_cores_used`` give the machine's
load; ``device``, ``threads``, ``torch``, ``python`` and runtime tags say where.
"""

import copy
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from segbench.errors import ConfigError
from segbench.profiling.gated import gated_latency
from segbench.runtimes import runtime_spec
from segbench.runtimes.latency import NOISY_SPREAD, Runtime, latency_table
from segbench.runtimes.onnx import OnnxModel, export_onnx, runtime_tags
from segbench.runtimes.pytorch import DTYPES, eager_logits
from segbench.runtimes.tensorrt import TensorRTModel, build_engine, import_tensorrt

log = logging.getLogger(__name__)


def pytorch_latency(
    net: nn.Module,
    input_size: Sequence[int],
    batch_sizes: Iterable[int],
    devices: Iterable[str] = ("cpu", "cuda"),
    precisions: Iterable[str] = ("fp32", "fp16", "bf16"),
    warmup: int = 3,
    runs: int = 10,
    rounds: int = 3,
    noisy_threshold: float = NOISY_SPREAD,
) -> tuple[list[dict], list[dict]]:
    """Eager PyTorch latency rows and the combinations skipped (with the reason).

    fp16/bf16 run on CUDA only (weights and input cast to the type): on a CPU
    they measure an emulation nobody deploys. ``rounds`` x ``runs`` timed calls
    per row (:func:`segbench.runtimes.latency.time_callable`).
    """
    rows, skipped = [], []
    for device in devices:
        if device not in ("cpu", "cuda"):
            raise ConfigError("devices", device, "unknown device", allowed=["cpu", "cuda"])
        if device == "cuda" and not torch.cuda.is_available():
            skipped.append(
                {"runtime": "pytorch", "device_type": "cuda", "reason": "no CUDA device"}
            )
            continue
        for precision in precisions:
            if precision not in DTYPES:
                raise ConfigError("precisions", precision, "unknown precision", allowed=DTYPES)
            if device == "cpu" and precision != "fp32":
                skipped.append(
                    {
                        "runtime": "pytorch",
                        "device_type": "cpu",
                        "precision": precision,
                        "reason": "half precision is measured on CUDA only",
                    }
                )
                continue
            logits = eager_logits(copy.deepcopy(net), device, precision)
            runtime = Runtime("pytorch", logits, device=device, precision=precision)
            rows += latency_table(
                [runtime],
                input_size,
                list(batch_sizes),
                warmup,
                runs,
                rounds=rounds,
                noisy_threshold=noisy_threshold,
            )
            del logits, runtime
    return rows, skipped


def exported_latency(
    net: nn.Module,
    runtime: str,
    input_size: Sequence[int],
    batch_sizes: Sequence[int],
    devices: Iterable[str] = ("cpu", "cuda"),
    precisions: Iterable[str] = ("fp32", "fp16"),
    warmup: int = 3,
    runs: int = 10,
    rounds: int = 3,
    noisy_threshold: float = NOISY_SPREAD,
) -> list[dict]:
    """Latency rows of ``net`` exported to ``runtime``, in the layout of the eager rows.

    The network is exported to a temporary ONNX file at ``input_size`` (dynamic
    where it can be) and timed on random input. ONNX Runtime runs the fp32 graph
    on every device in ``devices`` it has an execution provider for; TensorRT
    builds one engine per precision (``int8`` is skipped here: it needs
    calibration images, see ``export.py precision=int8``).

    Raises:
        ConfigError: ``runtime`` is unknown; TensorRT or its GPU is missing.
    """
    if runtime not in ("onnxruntime", "tensorrt"):
        raise ConfigError(
            "runtime", runtime, "has no exported form", allowed=["onnxruntime", "tensorrt"]
        )
    if runtime == "tensorrt":
        import_tensorrt()  # before the export: say at once that TensorRT is missing
    input_size, batch_sizes = [int(v) for v in input_size], [int(b) for b in batch_sizes]
    rows = []
    with tempfile.TemporaryDirectory(prefix="segbench-latency-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        info = export_onnx(copy.deepcopy(net).cpu().float().eval(), onnx_path, input_size)
        if runtime == "onnxruntime":
            runners = _onnxruntime_runners(onnx_path, devices)
        else:
            runners = [
                Runtime("tensorrt", TensorRTModel(engine).logits, device="cuda", precision=p)
                for p, engine in _tensorrt_engines(
                    onnx_path, Path(tmp), precisions, input_size, batch_sizes
                )
            ]
        timed = latency_table(
            runners,
            input_size,
            batch_sizes,
            warmup,
            runs,
            rounds=rounds,
            noisy_threshold=noisy_threshold,
        )
        for row in timed:
            row["onnx_dynamic_hw"] = info["dynamic"]["height"]
            rows.append(row)
    return rows


def _onnxruntime_runners(onnx_path: Path, devices: Iterable[str]) -> list[Runtime]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    runners = []
    for device in devices:
        cuda_ok = torch.cuda.is_available() and "CUDAExecutionProvider" in available
        if device == "cpu" or (device == "cuda" and cuda_ok):
            model = OnnxModel(onnx_path, device=device, threads=torch.get_num_threads())
            runners.append(
                Runtime("onnxruntime", model.logits, device=device, **runtime_tags(model))
            )
    return runners


def _tensorrt_engines(onnx_path, folder, precisions, input_size, batch_sizes):
    for precision in (p for p in precisions if p in ("fp32", "fp16")):
        yield (
            precision,
            build_engine(
                onnx_path,
                folder / f"model_{precision}.engine",
                precision,
                min_shape=(1, 3, *input_size),
                opt_shape=(1, 3, *input_size),
                max_shape=(max(batch_sizes), 3, *input_size),
            ),
        )


def runtime_latency(
    runtime: str,
    net: nn.Module,
    input_size: Sequence[int],
    batch_sizes: Sequence[int],
    images: Sequence[torch.Tensor] | None = None,
    calibration_images: Sequence[torch.Tensor] | None = None,
    compile_mode: str | None = None,
    **kwargs,
) -> tuple[list[dict], list[dict]]:
    """Latency rows of ``runtime`` (a name of :data:`segbench.runtimes.RUNTIMES`) and the skips.

    A runtime missing here (TensorRT, CUDA), failing, or (for ``onnxruntime_int8``,
    ``channels_last``, ``cuda_graphs``, ``torch_compile``) disagreeing with eager
    fp32 is a skip with the reason.

    Args:
        images, calibration_images, compile_mode: For the parity-checked runtimes
            (:func:`segbench.profiling.gated.gated_latency`).
        **kwargs: ``devices``, ``precisions`` (eager PyTorch and TensorRT only),
            ``warmup``, ``runs``.
    """
    spec = runtime_spec(runtime, key="runtimes")
    if runtime == "pytorch":
        return pytorch_latency(net, input_size, batch_sizes, **kwargs)
    if runtime in ("onnxruntime", "tensorrt"):
        try:
            return exported_latency(net, runtime, input_size, batch_sizes, **kwargs), []
        except (ImportError, ConfigError) as err:  # e.g. TensorRT or its GPU missing here
            return [], [{"runtime": runtime, "reason": str(err)}]
    kwargs.pop("precisions", None)  # each of these runs at its own precision
    return gated_latency(
        spec, net, input_size, [int(b) for b in batch_sizes],
        images=images, calibration_images=calibration_images, compile_mode=compile_mode,
        **kwargs,
    )  # fmt: skip
