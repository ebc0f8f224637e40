"""Inference runtimes for exported networks: PyTorch eager, ONNX Runtime, TensorRT.

Each gives a :data:`segbench.evaluation.Predictor` (normalised images
``(N, 3, H, W)`` -> label maps ``(N, H, W)``), so evaluation scores an exported
model through the same metric code as a checkpoint.
"""

import torch
from omegaconf import DictConfig

from segbench.errors import ConfigError

RUNTIMES = ("pytorch", "onnxruntime", "tensorrt")


def make_predictor(cfg: DictConfig, net: torch.nn.Module, hparams: dict):
    """The predictor ``cfg.runtime`` names (default ``pytorch``).

    ``onnxruntime`` and ``tensorrt`` run ``cfg.model_path`` (the ``model.onnx`` /
    ``model_<precision>.engine`` written by ``export.py``); ``pytorch`` runs ``net``
    on ``cfg.device``.

    Raises:
        ConfigError: an unknown runtime, or no model file for an exported runtime.
    """
    runtime = cfg.get("runtime") or "pytorch"
    if runtime not in RUNTIMES:
        raise ConfigError("runtime", runtime, "unknown runtime", allowed=RUNTIMES)
    if runtime == "pytorch":
        from segbench.evaluation import torch_predictor

        return torch_predictor(net, torch.device(cfg.device))
    if not cfg.get("model_path"):
        suffix = "model.onnx" if runtime == "onnxruntime" else "model_fp16.engine"
        raise ConfigError(
            "model_path",
            None,
            f"runtime={runtime} needs the exported model file",
            fix=f"pass model_path=logs/export/runs/<run>/{suffix}",
        )
    if runtime == "onnxruntime":
        from segbench.runtimes.onnx import OnnxModel

        return OnnxModel(cfg.model_path, device=cfg.device)
    from segbench.runtimes.tensorrt import TensorRTModel

    return TensorRTModel(cfg.model_path)
