"""Which models take which backbones: stated once, on each network class."""

from segbench.errors import ConfigError
from segbench.models.backbones import BACKBONES


def check_compatible(model: dict, backbone: dict) -> None:
    """Refuses a model x backbone pair before anything is built.

    Each network class states the backbones it takes in ``backbones`` (a tuple
    of ``conf/backbone`` names; absent means every smp-resolved backbone).

    Raises:
        ConfigError: the pair is not supported.
    """
    from segbench.models.build import network_class

    cls = network_class(model.get("_target_", ""))
    allowed = getattr(cls, "backbones", None) or tuple(BACKBONES)
    name = backbone.get("name")
    if name not in allowed:
        raise ConfigError(
            "backbone",
            name,
            f"{cls.__name__} does not take this backbone",
            allowed=allowed,
            fix=f"use backbone={allowed[0]} with this model, or another model",
        )
