"""The base every segbench network shares: any input size in, same size out."""

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationNetwork(nn.Module):
    """A network mapping images ``(N, C, H, W)`` to logits ``(N, num_classes, H, W)``.

    Encoders halve the resolution a fixed number of times, so most networks need
    H and W divisible by their total stride. ``forward`` pads the input at the
    bottom and right to a multiple of ``pad_multiple`` and crops the logits back,
    the same in training, evaluation and export, so any H, W >= 32 works.

    Subclasses implement :meth:`forward_padded` and expose their encoder as
    ``self.encoder`` (what ``freeze_encoder`` and pretrained weights apply to).

    Args:
        num_classes: Number of output channels (classes).
        pad_multiple: The input is padded to a multiple of this.
        freeze_encoder: Freeze the encoder's weights and keep its norms in eval mode.
    """

    min_size: int = 32

    def __init__(self, num_classes: int, pad_multiple: int, freeze_encoder: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.pad_multiple = pad_multiple
        self.freeze_encoder = freeze_encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns logits ``(N, num_classes, H, W)`` for images ``(N, C, H, W)``."""
        h, w = x.shape[-2:]
        pad_h = (self.pad_multiple - h % self.pad_multiple) % self.pad_multiple
        pad_w = (self.pad_multiple - w % self.pad_multiple) % self.pad_multiple
        # Zero is the dataset mean after normalisation: the least surprising fill. A size
        # known to need none (not a symbolic export size) gets no pad: no copy, no graph op.
        if not (isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == pad_w == 0):
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.forward_padded(x)[..., :h, :w]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for an input whose H and W are multiples of ``pad_multiple``."""
        raise NotImplementedError

    def pretrained_modules(self) -> list[nn.Module]:
        """Modules whose weights were loaded from a file (initialisation skips them)."""
        return []

    def apply_freeze(self) -> None:
        """Applies ``freeze_encoder``: no gradients for the encoder."""
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> "SegmentationNetwork":
        super().train(mode)
        if self.freeze_encoder:
            # A frozen encoder keeps its BatchNorm running statistics as loaded.
            self.encoder.eval()
        return self
