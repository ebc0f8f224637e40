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
from segbench.training.losses.common import _weights


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

        Computed with fixed-shape tensors only (masks instead of boolean indexing,
        the k-th probability gathered at a tensor index): no value is read back to
        the host, so a GPU step is not stalled by the loss.

        Args:
            logits: ``(N, C, H, W)``.
            target: ``(N, H, W)`` class ids or ``ignore_index``.

        Returns:
            A scalar; zero (with a gradient path) when no pixel is labelled or none
            falls below the threshold (every labelled pixel is confidently right).
        """
        valid = target != self.ignore_index
        safe = target.masked_fill(~valid, 0)  # ignored pixels look up class 0, then drop out
        pixel_loss = F.cross_entropy(logits, safe, weight=self.weight, reduction="none")
        with torch.no_grad():
            prob = logits.float().softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
            # Ignored pixels rank after every labelled one (probabilities are <= 1).
            prob = prob.masked_fill(~valid, 2.0).flatten()
            count = valid.sum()
            index = torch.clamp(count - 1, min=0).clamp(max=self.min_kept).reshape(1)
            kth = prob.sort().values.gather(0, index)
            keep = valid.flatten() & (prob < torch.clamp(kth, min=self.thresh))
        kept = keep.to(pixel_loss.dtype)
        return (pixel_loss.flatten() * kept).sum() / kept.sum().clamp(min=1.0)
