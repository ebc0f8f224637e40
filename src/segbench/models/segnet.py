"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017): unpooling with max-pool indices."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segbench.errors import ConfigError
from segbench.models.base import SegmentationNetwork
from segbench.models.weights import load_encoder_weights


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class VggEncoder(nn.Module):
    """VGG-style stages of conv-BN-ReLU, each closed by a 2x2 max-pool that keeps its indices.

    Args:
        in_channels: Input channels.
        stages: Output channels of each conv, per stage (VGG16: 2, 2, 3, 3, 3 convs).
        kernel_size: Conv kernel size (3 in VGG16, 7 in SegNet-Basic).
    """

    def __init__(self, in_channels: int, stages: Sequence[Sequence[int]], kernel_size: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        for widths in stages:
            layers = []
            for width in widths:
                layers.append(conv_bn_relu(in_channels, width, kernel_size))
                in_channels = width
            self.stages.append(nn.Sequential(*layers))
            self.out_channels.append(in_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the deepest pooled features and each stage's pooling indices."""
        indices = []
        for stage in self.stages:
            x, idx = F.max_pool2d(stage(x), 2, stride=2, return_indices=True)
            indices.append(idx)
        return x, indices


class SegnetDecoder(nn.Module):
    """The encoder mirrored: unpool with the stored indices, then the stage's convs reversed.

    Each decoder stage ends at the channel count of the encoder stage before it,
    so the last one ends at the first stage's width, classified by a 1x1 conv.
    """

    def __init__(self, stages: Sequence[Sequence[int]], kernel_size: int, num_classes: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        for i in reversed(range(len(stages))):
            widths = list(stages[i])
            # conv outputs of the mirrored stage: its widths reversed, shifted by one,
            # ending at the previous stage's output (or the first stage's width).
            target = stages[i - 1][-1] if i > 0 else stages[0][0]
            outs = [*reversed(widths[:-1]), target]
            ins = [widths[-1], *outs[:-1]]
            self.stages.append(
                nn.Sequential(
                    *(conv_bn_relu(a, b, kernel_size) for a, b in zip(ins, outs, strict=True))
                )
            )
        self.classifier = nn.Conv2d(stages[0][0], num_classes, 1)

    def forward(self, x: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
        for stage, idx in zip(self.stages, reversed(indices), strict=True):
            x = stage(F.max_unpool2d(x, idx, 2, stride=2))
        return self.classifier(x)


class SegNet(SegmentationNetwork):
    """SegNet: a VGG-style encoder, a mirrored decoder that upsamples with its pool indices.

    The encoder comes from the backbone config: ``vgg16_bn`` (SegNet, 13 convs
    of VGG16 with BN) or ``segnet_basic`` (SegNet-Basic: 4 stages of one 7x7
    conv of 64 channels).

    Args:
        backbone: Backbone config with ``stages`` (conv widths per stage) and
            ``kernel_size``; ``weights``: null or a local state-dict file of the encoder.
        num_classes: Number of classes.
        in_channels: Input channels.
        freeze_encoder: Freeze the encoder (BatchNorm in eval mode).
    """

    backbones = ("vgg16_bn", "segnet_basic")

    def __init__(
        self, backbone: dict, num_classes: int, in_channels: int = 3, freeze_encoder: bool = False
    ) -> None:
        stages = backbone.get("stages")
        if not stages or not all(stages):
            raise ConfigError(
                "backbone.stages",
                stages,
                "SegNet needs conv widths per stage",
                fix="use backbone=vgg16_bn or backbone=segnet_basic",
            )
        kernel_size = int(backbone.get("kernel_size", 3))
        super().__init__(num_classes, pad_multiple=2 ** len(stages), freeze_encoder=freeze_encoder)
        self.encoder = VggEncoder(in_channels, stages, kernel_size)
        self.decoder = SegnetDecoder(stages, kernel_size, num_classes)
        self._pretrained = load_encoder_weights(self.encoder, backbone)
        self.apply_freeze()

    def pretrained_modules(self) -> list[nn.Module]:
        return [self.encoder] if self._pretrained else []

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(*self.encoder(x))
