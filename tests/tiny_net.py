"""A tiny network for sweep, resume and DDP tests: seconds per run on CPU.

It states the backbones it takes (``backbones``), as zoo models do, so a grid
with it has incompatible pairs to skip.
"""

import torch
from torch import nn

from segbench.models.base import SegmentationNetwork


class TinyNet(SegmentationNetwork):
    """conv(stride 2) -> BN -> ReLU -> 1x1 classifier -> x2 upsampling; takes only MobileNet."""

    backbones = ("mobilenet",)

    def __init__(
        self, backbone: dict, num_classes: int, in_channels: int = 3, width: int = 8
    ) -> None:
        super().__init__(num_classes, pad_multiple=2)
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(
            self.head(self.encoder(x)), scale_factor=2.0, mode="bilinear", align_corners=False
        )


class SlowBatches:
    """A Lightning callback that sleeps after each training batch, so a test can kill a
    run mid-epoch (configured as ``+callbacks.slow._target_=tests.tiny_net.SlowBatches``)."""

    def __new__(cls, seconds: float = 0.3):
        import time

        import lightning as L

        class _Slow(L.Callback):
            def on_train_batch_end(self, *args, **kwargs) -> None:
                time.sleep(seconds)

        return _Slow()
