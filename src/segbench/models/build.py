"""Networks from config dicts, without Lightning or Hydra."""

from segbench.models.base import SegmentationNetwork
from segbench.targets import resolve_class

#: Modules a checkpoint's ``_target_`` may be imported from (anything else must
#: already be loaded, e.g. a test's own network class).
TRUSTED_PREFIX = "segbench.models."


def build_network(config: dict, trusted: bool = True) -> SegmentationNetwork:
    """Builds a network from a resolved model config (``{"_target_": ..., **kwargs}``).

    This is the small part of Hydra's ``instantiate`` a checkpoint needs, so
    inference and export run without Hydra.

    Args:
        config: The model config; ``_target_`` names a :class:`SegmentationNetwork`.
        trusted: The config is the user's own (a yaml, the command line). A
            checkpoint's config is not: its ``_target_`` may only name a network
            class of ``segbench.models`` or one already imported.

    Raises:
        ConfigError: the target cannot be imported or is not a segbench network.
    """
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    return network_class(config.get("_target_", ""), trusted)(**kwargs)


def network_class(target: str, trusted: bool = True) -> type[SegmentationNetwork]:
    """The network class a model config's ``_target_`` names.

    Raises:
        ConfigError: the target cannot be imported, is not a segbench network,
            or (``trusted=False``) lies outside ``segbench.models`` and is not loaded.
    """
    return resolve_class(target, SegmentationNetwork, TRUSTED_PREFIX, "model._target_", trusted)
