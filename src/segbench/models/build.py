"""Networks from config dicts and checkpoints, without Lightning or Hydra."""

import importlib
from pathlib import Path

from segbench.errors import ConfigError
from segbench.models.base import SegmentationNetwork


def build_network(config: dict) -> SegmentationNetwork:
    """Builds a network from a resolved model config (``{"_target_": ..., **kwargs}``).

    This is the small part of Hydra's ``instantiate`` a checkpoint needs, so
    inference and export run without Hydra.

    Raises:
        ConfigError: the target cannot be imported or is not a segbench network.
    """
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    return network_class(config.get("_target_", ""))(**kwargs)


def network_class(target: str) -> type[SegmentationNetwork]:
    """Imports the network class a model config's ``_target_`` names.

    Raises:
        ConfigError: the target cannot be imported or is not a segbench network.
    """
    module_name, _, attr = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            "model._target_",
            target,
            "cannot be imported",
            fix="use a class of segbench.models, e.g. segbench.models.Unet",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, SegmentationNetwork)):
        raise ConfigError("model._target_", target, "is not a segbench SegmentationNetwork")
    return cls


def load_network(
    ckpt_path: str | Path, map_location: str = "cpu"
) -> tuple[SegmentationNetwork, dict]:
    """Rebuilds the trained network of a segbench checkpoint.

    Returns:
        The network (eval mode, weights loaded) and the checkpoint's
        hyper-parameters (``net``: model config, ``data``: dataset facts such as
        mean/std, class names and ignore index).
    """
    from segbench.checkpoint import read_checkpoint

    ckpt = read_checkpoint(ckpt_path, map_location)
    hparams = ckpt["hyper_parameters"]
    net_config = dict(hparams["net"])
    # The weights come from the checkpoint: skip pretrained-weight lookups.
    net_config["backbone"] = {**net_config.get("backbone", {}), "weights": None}
    net = build_network(net_config)
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    net.load_state_dict(state)
    return net.eval(), hparams
