"""Parameter counts: the one place segbench counts them."""

from torch import nn


def count_params(net: nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts of ``net``."""
    return {
        "total": sum(p.numel() for p in net.parameters()),
        "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
    }
