"""``loss.class_weights=none|median_freq|enet|[...]`` resolved, then the loss instantiated."""

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segbench.data.class_weights import SCHEMES
from segbench.data.class_weights import class_weights as resolve_class_weights


def build_loss(cfg: DictConfig, datamodule, cache_dir: Path | None = None) -> nn.Module:
    """Instantiates ``cfg`` (``conf/loss/*.yaml``) with its ``class_weights`` resolved.

    Args:
        cfg: The loss config; ``class_weights`` may be ``none``, ``median_freq``,
            ``enet`` or a list (see :mod:`segbench.data.class_weights`).
        datamodule: The :class:`~segbench.data.SegmentationDataModule`; its train
            split gives the statistics.
        cache_dir: Where label statistics are cached.
    """
    if "class_weights" not in cfg:
        return instantiate(cfg)
    scheme = cfg.class_weights
    if OmegaConf.is_config(scheme):
        scheme = OmegaConf.to_container(scheme, resolve=True)
    computed = isinstance(scheme, str) and scheme in SCHEMES and scheme != "none"
    weights = resolve_class_weights(
        scheme,
        datamodule.get_split("train") if computed else None,
        datamodule.num_classes,
        cache_dir,
    )
    return instantiate(cfg, class_weights=weights)
