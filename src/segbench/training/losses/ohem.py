"""Online hard example mining (OHEM) cross-entropy: the loss of the real-time CamVid recipes.

The algorithm is PIDNet's ``OhemCrossEntropy`` (``utils/criterion.py``), which is
MMSegmentation's ``OhemPixelSampler`` applied to cross-entropy: over the labelled
pixels of the whole batch, sort the softmax probability of the true class; the
threshold is ``max(p_sorted[min(min_kept, n - 1)], thresh)``; the loss is the mean
per-pixel cross-entropy of the pixels whose probability is below it. So at least
``min_kept`` of the hardest pixels always count, and every pixel the network is
less than ``thresh`` sure of counts too. PaddleSeg's ``OhemCrossEntropyLoss``
(PP-LiteSeg: ``thresh=0.7``, ``min_kept=250000`` per batch of 6 at 960x720, about
1/16 of the pixels) selects the same pixels.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segbench.errors import ConfigError
from segbench.training.losses.common import _no_labels, _weights


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard pixels of a batch (PIDNet / MMSegmentation OHEM).

    Args:
        ignore_index: Target value that counts nowhere (neither in the ranking nor the loss).
        thresh: Pixels whose true-class probability is below this always count (0 < thresh <= 1).
        min_kept: At least this many of the hardest labelled pixels per batch count
            (PaddleSeg: about batch x H x W / 16).
        class_weights: One weight per class (scales each pixel's cross-entropy, as
            PIDNet's weighted criterion), or None.
    """

    def __init__(
        self,
        ignore_index: int,
        thresh: float = 0.7,
        min_kept: int = 100000,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < thresh <= 1.0:
            raise ConfigError(
                "loss.thresh", thresh, "is a probability threshold", fix="use 0 < thresh <= 1"
            )
        if min_kept < 0:
            raise ConfigError("loss.min_kept", min_kept, "is a pixel count", fix="use >= 0")
        self.ignore_index, self.thresh, self.min_kept = ignore_index, float(thresh), int(min_kept)
        self.register_buffer("weight", _weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the kept pixels.

        Args:
            logits: ``(N, C, H, W)``.
            target: ``(N, H, W)`` class ids or ``ignore_index``.

        Returns:
            A scalar; zero (with a gradient path) when no pixel is labelled or none
            falls below the threshold (every labelled pixel is confidently right).
        """
        zero = _no_labels(logits, target, self.ignore_index)
        if zero is not None:
            return zero
        pixel_loss = F.cross_entropy(
            logits, target, weight=self.weight, ignore_index=self.ignore_index, reduction="none"
        ).flatten()
        valid = (target != self.ignore_index).flatten()
        with torch.no_grad():
            # Ignored pixels look up class 0 here; they are dropped by `valid` before ranking.
            safe = target.masked_fill(target == self.ignore_index, 0)
            prob = logits.float().softmax(1).gather(1, safe.unsqueeze(1)).flatten()[valid]
            prob_sorted, order = prob.sort()
            kth = prob_sorted[min(self.min_kept, prob_sorted.numel() - 1)]
            threshold = torch.clamp(kth, min=self.thresh)
            kept = order[prob_sorted < threshold]
        if kept.numel() == 0:
            return logits.sum() * 0.0
        return pixel_loss[valid][kept].mean()
