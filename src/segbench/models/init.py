"""Weight initialisation schemes for layers not loaded from pretrained weights."""

import logging

from torch import nn

from segbench.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMES = ("kaiming", "xavier")
_CONV = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def initialize(net: nn.Module, scheme: str) -> int:
    """Initialises conv/deconv/linear weights by ``scheme``, norms to 1/0, biases to 0.

    Skips the modules ``net.pretrained_modules()`` names and any module with
    ``keep_init = True`` (e.g. FCN's bilinear deconvolutions).

    Returns:
        The number of layers initialised.

    Raises:
        ConfigError: unknown scheme.
    """
    if scheme not in SCHEMES:
        raise ConfigError("init.scheme", scheme, "unknown initialisation", allowed=SCHEMES)
    skip: set[int] = set()
    for module in getattr(net, "pretrained_modules", list)():
        skip.update(id(m) for m in module.modules())
    count = 0
    for module in net.modules():
        if id(module) in skip or getattr(module, "keep_init", False):
            continue
        if isinstance(module, _CONV):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, _NORM) and module.weight is not None:
            nn.init.ones_(module.weight)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        count += 1
    log.info(
        "%s initialisation of %d layers (%d pretrained modules kept)", scheme, count, len(skip)
    )
    return count
