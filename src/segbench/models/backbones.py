"""Backbone configs -> smp encoder names.

A backbone's facts live in its yaml (``conf/backbone/<name>.yaml``): ``encoder``,
the smp encoder name (or ``encoders``, one per ``version`` and ``width``), and
``named_weights``. Adding an encoder smp already resolves (e.g. ``resnet18``)
is one yaml file; the networks that take "any smp encoder" take it at once.
Backbones without an encoder name (``erfnet``, ``vgg16_bn``, ``segnet_basic``)
are the own encoders of the models that name them.
"""

import logging
import warnings
from pathlib import Path

import yaml

from segbench.env import CONFIG_DIR
from segbench.errors import ConfigError

log = logging.getLogger(__name__)

# Checkpoints written before the backbone yamls named their encoder hold only the
# backbone's name; these are the encoders those names meant then.
_LEGACY_ENCODERS = {"resnet50": "resnet50", "resnext_wsl": "resnext101_32x8d"}
_LEGACY_MOBILENETS = {
    "v2": {
        "0.35": "tu-mobilenetv2_035",
        "0.5": "tu-mobilenetv2_050",
        "0.75": "tu-mobilenetv2_075",
        "1.0": "tu-mobilenetv2_100",
        "1.4": "tu-mobilenetv2_140",
    },
    "v3": {"0.75": "tu-mobilenetv3_large_075", "1.0": "tu-mobilenetv3_large_100"},
}


def is_smp_backbone(backbone: dict) -> bool:
    """Whether the backbone config names an smp encoder (any smp-based model takes it)."""
    return bool(backbone.get("encoder") or backbone.get("encoders"))


def smp_backbones(config_dir: Path = CONFIG_DIR) -> list[str]:
    """The ``conf/backbone`` options that name an smp encoder."""
    names = []
    for path in sorted((config_dir / "backbone").glob("*.yaml")):
        if is_smp_backbone(yaml.safe_load(path.read_text()) or {}):
            names.append(path.stem)
    return names


def smp_encoder_name(backbone: dict) -> str:
    """The smp ``encoder_name`` of a backbone config (``conf/backbone/*.yaml``).

    Raises:
        ConfigError: the backbone names no smp encoder, or an unknown version/width.
    """
    if not is_smp_backbone(backbone):
        legacy = _legacy(backbone)
        if legacy:
            return legacy
        raise ConfigError(
            "backbone.name",
            backbone.get("name"),
            "names no smp encoder (no `encoder` in its yaml)",
            allowed=smp_backbones(),
            fix="choose a backbone config, e.g. backbone=mobilenet, or add `encoder: <smp "
            "encoder name>` to its yaml",
        )
    if backbone.get("encoder"):
        return str(backbone["encoder"])
    return _by_version_and_width(backbone, backbone["encoders"])


def _by_version_and_width(backbone: dict, encoders: dict) -> str:
    version = backbone.get("version", "v2")
    if version not in encoders:
        raise ConfigError(
            "backbone.version", version, "unknown version of this backbone", allowed=list(encoders)
        )
    widths = {str(float(w)): name for w, name in encoders[version].items()}
    width = str(float(backbone.get("width", 1.0)))
    if width not in widths:
        raise ConfigError(
            "backbone.width",
            float(width),
            f"no {backbone.get('name')} {version} of this width",
            allowed=[float(w) for w in widths],
        )
    return widths[width]


def _legacy(backbone: dict) -> str | None:
    name = backbone.get("name")
    if name == "mobilenet":
        found = _by_version_and_width(backbone, _LEGACY_MOBILENETS)
    else:
        found = _LEGACY_ENCODERS.get(name)
    if found:
        warnings.warn(
            f"backbone {name!r} without an `encoder` entry (a checkpoint written before "
            f"segbench 0.2): read as {found}",
            DeprecationWarning,
            stacklevel=3,
        )
    return found
