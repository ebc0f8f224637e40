"""Running a network: PyTorch eager, ONNX Runtime, TensorRT, and timing them alike.

Each runtime gives a :data:`Predictor` (normalised images ``(N, 3, H, W)`` ->
label maps ``(N, H, W)``), so evaluation scores an exported model through the
same metric code as a checkpoint; :mod:`segbench.runtimes.latency` times them.
"""

import torch

from segbench.errors import ConfigError
from segbench.runtimes.onnx import OnnxModel
from segbench.runtimes.pytorch import Predictor, torch_predictor
from segbench.runtimes.tensorrt import TensorRTModel

#: Every runtime segbench knows, in the order reports list them.
RUNTIMES = ("pytorch", "onnxruntime", "tensorrt")

__all__ = ["RUNTIMES", "OnnxModel", "Predictor", "TensorRTModel", "make_predictor"]


def make_predictor(
    runtime: str | None, net: torch.nn.Module, device: str = "cpu", model_path: str | None = None
) -> Predictor:
    """The predictor ``runtime`` names (default ``pytorch``).

    ``onnxruntime`` and ``tensorrt`` run ``model_path`` (the ``model.onnx`` /
    ``model_<precision>.engine`` written by ``export.py``); ``pytorch`` runs ``net``
    on ``device``.

    Raises:
        ConfigError: an unknown runtime, or no model file for an exported runtime.
    """
    runtime = runtime or "pytorch"
    if runtime not in RUNTIMES:
        raise ConfigError("runtime", runtime, "unknown runtime", allowed=RUNTIMES)
    if runtime == "pytorch":
        return torch_predictor(net, torch.device(device))
    if not model_path:
        suffix = "model.onnx" if runtime == "onnxruntime" else "model_fp16.engine"
        raise ConfigError(
            "model_path",
            None,
            f"runtime={runtime} needs the exported model file",
            fix=f"pass model_path=logs/export/runs/<run>/{suffix}",
        )
    if runtime == "onnxruntime":
        return OnnxModel(model_path, device=device)
    return TensorRTModel(model_path)
