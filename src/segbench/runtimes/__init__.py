"""Running a network: PyTorch eager and its fast paths, ONNX Runtime (fp32, INT8), TensorRT.

Each runtime gives a :data:`Predictor` (normalised images ``(N, 3, H, W)`` ->
label maps ``(N, H, W)``), so evaluation scores an exported model through the
same metric code as a checkpoint; :mod:`segbench.runtimes.latency` times them.
"""

from typing import NamedTuple

import torch

from segbench.errors import ConfigError
from segbench.runtimes.onnx import OnnxModel
from segbench.runtimes.pytorch import FAST_PATHS, Predictor, fast_path_logits, torch_predictor
from segbench.runtimes.tensorrt import TensorRTModel


class RuntimeSpec(NamedTuple):
    """One runtime as configs name it and as its latency rows are keyed.

    Attributes:
        name: What ``runtimes=[...]`` (``segbench profile``), ``profile_runtimes``
            (``train.py``) and ``evaluate.py runtime=`` take; also the key of its
            mIoU in ``export.json``.
        row: The ``runtime`` of its latency rows (rows are keyed by runtime,
            precision, device and batch).
        precisions: The precisions it runs at.
        devices: Where it runs.
        exported: Runs a file ``export.py`` wrote (``model_path``).
        about: One line for docs and errors.
    """

    name: str
    row: str
    precisions: tuple[str, ...]
    devices: tuple[str, ...]
    exported: bool
    about: str


#: Every runtime segbench knows, in the order reports list them.
RUNTIMES = (
    RuntimeSpec(
        "pytorch", "pytorch", ("fp32", "fp16", "bf16"), ("cpu", "cuda"), False,
        "eager PyTorch (fp16/bf16 on CUDA only)",
    ),
    RuntimeSpec(
        "onnxruntime", "onnxruntime", ("fp32",), ("cpu", "cuda"), True,
        "ONNX Runtime, the fp32 graph export.py writes",
    ),
    RuntimeSpec(
        "onnxruntime_int8", "onnxruntime", ("int8",), ("cpu",), True,
        "ONNX Runtime, static INT8 (QDQ, calibrated on training frames)",
    ),
    RuntimeSpec(
        "tensorrt", "tensorrt", ("fp32", "fp16", "int8"), ("cuda",), True,
        "TensorRT engine built from the ONNX graph",
    ),
    RuntimeSpec(
        "channels_last", "channels_last", ("fp16",), ("cuda",), False,
        "eager PyTorch fp16, weights and input in channels_last (NHWC)",
    ),
    RuntimeSpec(
        "cuda_graphs", "cuda_graphs", ("fp16",), ("cuda",), False,
        "the fp16 channels_last forward captured once in a CUDA graph and replayed",
    ),
    RuntimeSpec(
        "torch_compile", "torch_compile", ("fp32", "fp16"), ("cpu", "cuda"), False,
        "torch.compile (inductor): fp16 channels_last on CUDA, fp32 on the CPU",
    ),
)  # fmt: skip
RUNTIME_NAMES = tuple(spec.name for spec in RUNTIMES)

__all__ = [
    "RUNTIMES",
    "RUNTIME_NAMES",
    "OnnxModel",
    "Predictor",
    "RuntimeSpec",
    "TensorRTModel",
    "make_predictor",
    "runtime_key",
    "runtime_spec",
]


def runtime_spec(name: str, key: str = "runtime") -> RuntimeSpec:
    """The :class:`RuntimeSpec` called ``name``; ConfigError (closest names first) otherwise."""
    for spec in RUNTIMES:
        if spec.name == name:
            return spec
    raise ConfigError(key, name, "unknown runtime", allowed=RUNTIME_NAMES)


def runtime_key(row: dict) -> str:
    """The runtime name (:data:`RUNTIMES`) of a latency row: ``onnxruntime`` + ``int8`` ->
    ``onnxruntime_int8``; the key of that runtime's mIoU in ``export.json``."""
    for spec in RUNTIMES:
        if spec.row == row["runtime"] and row.get("precision") in spec.precisions:
            return spec.name
    return row["runtime"]


def make_predictor(
    runtime: str | None, net: torch.nn.Module, device: str = "cpu", model_path: str | None = None
) -> Predictor:
    """The predictor ``runtime`` names (default ``pytorch``).

    ``onnxruntime``, ``onnxruntime_int8`` and ``tensorrt`` run ``model_path`` (the
    ``model.onnx`` / ``model_int8.onnx`` / ``model_<precision>.engine`` written by
    ``export.py``); ``pytorch`` and its fast paths (``channels_last``,
    ``cuda_graphs``, ``torch_compile``) run ``net`` on ``device``.

    Raises:
        ConfigError: an unknown runtime, or no model file for an exported runtime.
    """
    spec = runtime_spec(runtime or "pytorch")
    if spec.name == "pytorch":
        return torch_predictor(net, torch.device(device))
    if spec.name in FAST_PATHS:
        logits = fast_path_logits(spec.name, net, device)
        return lambda images: logits(images).argmax(1)
    if not model_path:
        suffix = {
            "onnxruntime": "model.onnx",
            "onnxruntime_int8": "model_int8.onnx",
            "tensorrt": "model_fp16.engine",
        }[spec.name]
        raise ConfigError(
            "model_path",
            None,
            f"runtime={spec.name} needs the exported model file",
            fix=f"pass model_path=logs/export/runs/<run>/{suffix}",
        )
    if spec.row == "onnxruntime":
        return OnnxModel(model_path, device=device)
    return TensorRTModel(model_path)
