"""FLOPs of a network at an input size, counted by torch.utils.flop_counter.

Conventions: 1 MAC (multiply-accumulate) = 2 FLOPs; a convolution of
``k x k x C_in`` over ``C_out x H x W`` outputs is ``k*k*C_in*C_out*H*W`` MACs.
Elementwise ops (activations, norms, additions) are not counted, as in fvcore
and ptflops' conv/linear counts.
"""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(
    net: nn.Module, input_size: tuple[int, int], batch: int = 1, in_channels: int = 3
) -> dict[str, float]:
    """Counts one forward pass of ``net`` (eval mode) on a zero input.

    Returns:
        ``gflops`` and ``gmacs`` (= gflops / 2) for the whole batch, and ``by_op``
        GFLOPs per aten op.
    """
    was_training = net.training
    net.eval()
    param = next(net.parameters(), None)
    x = torch.zeros(
        batch, in_channels, *input_size, device=param.device if param is not None else "cpu"
    )
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    net.train(was_training)
    total = counter.get_total_flops()
    by_op = {str(op): n / 1e9 for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"gflops": total / 1e9, "gmacs": total / 2e9, "by_op": by_op}
