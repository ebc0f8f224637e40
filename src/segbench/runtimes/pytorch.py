"""Eager PyTorch as a runtime: the reference every exported runtime is checked against."""

from collections.abc import Callable

import torch

#: Maps a normalised image batch ``(N, 3, H, W)`` to label maps ``(N, H, W)``.
Predictor = Callable[[torch.Tensor], torch.Tensor]

#: Precision names and their torch types.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
