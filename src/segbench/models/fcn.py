"""FCN (Long, Shelhamer & Darrell, CVPR 2015) on any smp-resolved backbone."""

import logging

import segmentation_models_pytorch as smp
import torch
from torch import nn

from segbench.errors import ConfigError
from segbench.models.backbones import smp_encoder_name
from segbench.models.base import SegmentationNetwork
from segbench.models.weights import load_encoder_weights

log = logging.getLogger(__name__)

# Variant -> the encoder strides whose 1x1 scores are fused (deepest first).
VARIANTS = {"32s": (32,), "16s": (32, 16), "8s": (32, 16, 8)}


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """The ``(channels, channels, 2f, 2f)`` deconv weight of bilinear x``factor`` upsampling.

    Each class channel is upsampled on its own (a diagonal weight), as FCN's
    ``upsample_filt`` does.
    """
    size = 2 * factor
    center = factor - 0.5  # (size - 1) / 2 for the even kernel sizes used here
    grid = torch.arange(size, dtype=torch.float32)
    filt = 1 - (grid - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return weight


class BilinearDeconv(nn.ConvTranspose2d):
    """Learnable x``factor`` upsampling initialised to bilinear.

    ``keep_init`` tells :func:`segbench.models.init.initialize` to leave the
    bilinear weights alone. Kernel ``2f``, stride ``f``, padding ``f/2`` maps
    ``H`` to exactly ``f * H``.
    """

    keep_init = True

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__(
            channels,
            channels,
            kernel_size=2 * factor,
            stride=factor,
            padding=factor // 2,
            bias=False,
        )
        self.factor = factor
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if hasattr(self, "factor"):  # nn.ConvTranspose2d calls this before factor is set
            with torch.no_grad():
                self.weight.copy_(bilinear_kernel(self.out_channels, self.factor))


class FCN(SegmentationNetwork):
    """FCN-32s/16s/8s: 1x1 conv score layers on encoder features and learnable upsampling.

    FCN-32s scores the stride-32 features and upsamples them x32. FCN-16s adds
    the 1x1 scores of the stride-16 features to the x2-upsampled stride-32
    scores, then upsamples x16; FCN-8s does the same again with the stride-8
    features, then upsamples x8.

    Args:
        backbone: Backbone config (``conf/backbone/*.yaml``); any smp-resolved encoder.
        num_classes: Number of classes.
        in_channels: Input channels.
        variant: ``"32s"``, ``"16s"`` or ``"8s"``.
        freeze_encoder: Freeze the encoder (BatchNorm in eval mode).
    """

    def __init__(
        self,
        backbone: dict,
        num_classes: int,
        in_channels: int = 3,
        variant: str = "8s",
        freeze_encoder: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ConfigError(
                "model.variant",
                variant,
                "unknown FCN variant",
                allowed=VARIANTS,
                fix="model.variant=8s (finest) or 32s (coarsest)",
            )
        super().__init__(num_classes, pad_multiple=32, freeze_encoder=freeze_encoder)
        self.variant = variant
        self.strides = VARIANTS[variant]
        self.encoder = smp.encoders.get_encoder(
            smp_encoder_name(backbone), in_channels=in_channels, depth=5, weights=None
        )
        # encoder(x) returns features at strides 1, 2, 4, 8, 16, 32.
        channels = {2**i: c for i, c in enumerate(self.encoder.out_channels)}
        self.score = nn.ModuleDict(
            {f"stride{s}": nn.Conv2d(channels[s], num_classes, 1) for s in self.strides}
        )
        # x2 between the fused strides, then up to the input from the finest one.
        self.up2 = nn.ModuleList(BilinearDeconv(num_classes, 2) for _ in self.strides[1:])
        self.up_final = BilinearDeconv(num_classes, self.strides[-1])
        self._pretrained = load_encoder_weights(self.encoder, backbone)
        self.apply_freeze()

    def pretrained_modules(self) -> list[nn.Module]:
        return [self.encoder] if self._pretrained else []

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        by_stride = {2**i: f for i, f in enumerate(features)}
        scores = self.score[f"stride{self.strides[0]}"](by_stride[self.strides[0]])
        for up, stride in zip(self.up2, self.strides[1:], strict=True):
            scores = up(scores) + self.score[f"stride{stride}"](by_stride[stride])
        return self.up_final(scores)
