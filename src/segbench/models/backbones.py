"""Backbone configs -> smp encoder names, and loading their weights from local files only."""

import logging
from pathlib import Path

from torch import nn

from segbench.errors import ConfigError

log = logging.getLogger(__name__)

# timm model names of the "adjustable MobileNets" (width multiplier -> name).
MOBILENET_WIDTHS = {
    "v2": {
        0.35: "mobilenetv2_035",
        0.5: "mobilenetv2_050",
        0.75: "mobilenetv2_075",
        1.0: "mobilenetv2_100",
        1.4: "mobilenetv2_140",
    },
    "v3": {0.75: "mobilenetv3_large_075", 1.0: "mobilenetv3_large_100"},
}
# smp's native encoders.
SMP_NATIVE = {"resnet50": "resnet50", "resnext_wsl": "resnext101_32x8d"}
BACKBONES = ["mobilenet", *SMP_NATIVE]


def smp_encoder_name(backbone: dict) -> str:
    """The smp ``encoder_name`` for a backbone config (``conf/backbone/*.yaml``).

    Raises:
        ConfigError: unknown backbone, version or width.
    """
    name = backbone.get("name")
    if name in SMP_NATIVE:
        return SMP_NATIVE[name]
    if name != "mobilenet":
        raise ConfigError(
            "backbone.name",
            name,
            "unknown backbone",
            allowed=BACKBONES,
            fix="choose a backbone config, e.g. backbone=mobilenet",
        )
    version = backbone.get("version", "v2")
    if version not in MOBILENET_WIDTHS:
        raise ConfigError(
            "backbone.version", version, "unknown MobileNet version", allowed=list(MOBILENET_WIDTHS)
        )
    widths = MOBILENET_WIDTHS[version]
    width = float(backbone.get("width", 1.0))
    if width not in widths:
        raise ConfigError(
            "backbone.width", width, f"no MobileNet{version} of this width", allowed=list(widths)
        )
    return "tu-" + widths[width]


def load_encoder_weights(encoder: nn.Module, backbone: dict) -> bool:
    """Loads ``backbone.weights`` from a local file into ``encoder``.

    Returns:
        Whether weights were loaded.
    """
    weights = backbone.get("weights")
    if weights is None:
        return False
    from segbench.models.weights import load_pretrained

    load_pretrained(encoder, backbone, Path(str(weights)) if _is_path(weights) else weights)
    return True


def _is_path(weights: object) -> bool:
    text = str(weights)
    return "/" in text or text.endswith((".pth", ".pt", ".safetensors", ".bin"))
