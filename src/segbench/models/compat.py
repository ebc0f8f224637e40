"""Which models take which backbones: stated once, on each network class."""

from segbench.errors import ConfigError
from segbench.models.backbones import is_smp_backbone, smp_backbones
from segbench.models.build import network_class


def check_compatible(model: dict, backbone: dict) -> None:
    """Refuses a model x backbone pair before anything is built.

    Each network class states the backbones it takes in ``backbones`` (a tuple
    of ``conf/backbone`` names); absent means every backbone whose yaml names an
    smp encoder.

    Raises:
        ConfigError: the pair is not supported.
    """
    cls = network_class(model.get("_target_", ""))
    named = getattr(cls, "backbones", None)
    name = backbone.get("name")
    ok = name in named if named else is_smp_backbone(backbone)
    if not ok:
        allowed = tuple(named or smp_backbones())
        raise ConfigError(
            "backbone",
            name,
            f"{cls.__name__} does not take this backbone",
            allowed=allowed,
            fix=f"use backbone={allowed[0]} with this model, or another model",
        )
