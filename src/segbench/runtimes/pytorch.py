"""Eager PyTorch as a runtime: the reference every exported runtime is checked against."""

from collections.abc import Callable

import torch

from segbench.errors import ConfigError

#: Maps a normalised image batch ``(N, 3, H, W)`` to label maps ``(N, H, W)``.
Predictor = Callable[[torch.Tensor], torch.Tensor]

#: Precision names and their torch types.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_device(device: str | torch.device, key: str = "device") -> torch.device:
    """``device`` as a torch device that exists on this machine.

    Raises:
        ConfigError: an unknown device name, or CUDA (MPS) asked for where there is none,
            naming ``key`` and saying why.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            key, device, f"not a torch device ({err})", allowed=["cpu", "cuda", "cuda:0"]
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        raise ConfigError(
            key,
            device,
            f"CUDA is not available on this machine (torch {torch.__version__}, "
            f"CUDA build {built}, no GPU visible)",
            fix=f"use {key}=cpu, or run on a machine with an NVIDIA GPU and a CUDA build of torch",
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            key, device, f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(key, device, "MPS is not available on this machine", fix=f"{key}=cpu")
    return dev


def torch_predictor(net: torch.nn.Module, device: torch.device | str) -> Predictor:
    """A predictor running ``net`` in eval mode on ``device``."""
    device = torch.device(device)
    net.eval().to(device)

    @torch.inference_mode()
    def predict(images: torch.Tensor) -> torch.Tensor:
        return net(images.to(device)).argmax(1)

    return predict


def eager_logits(
    net: torch.nn.Module, device: str | torch.device, precision: str = "fp32"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``images -> logits`` of ``net`` in eval mode on ``device`` at ``precision``.

    Inputs are moved and cast to the network's device and type.
    """
    dtype = DTYPES[precision]
    net = net.eval().to(device=device, dtype=dtype)

    def logits(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(images.to(device=device, dtype=dtype))

    return logits
