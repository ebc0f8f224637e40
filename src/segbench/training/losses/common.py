"""What every segbench loss shares: zero for an all-ignored batch, class weights as given."""

from collections.abc import Sequence

import torch

from segbench.errors import ConfigError


def _no_labels(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> torch.Tensor | None:
    """Zero with a gradient path when every pixel is ignored, else None."""
    if bool((target != ignore_index).any()):
        return None
    return logits.sum() * 0.0


def _as_list(class_weights: Sequence[float] | str | None) -> list[float] | None:
    """The weights as a list; ``"none"`` is None; a scheme name needs the data first."""
    if class_weights is None or class_weights == "none":
        return None
    if isinstance(class_weights, str):
        raise ConfigError(
            "loss.class_weights",
            class_weights,
            "is computed from the training split, which this loss was not given",
            fix="build the loss with segbench.training.losses.build_loss(cfg.loss, datamodule)",
        )
    return [float(w) for w in class_weights]


def _weights(class_weights: Sequence[float] | str | None) -> torch.Tensor | None:
    weights = _as_list(class_weights)
    return None if weights is None else torch.as_tensor(weights, dtype=torch.float)
