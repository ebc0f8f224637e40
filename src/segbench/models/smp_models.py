"""Networks whose decoders come from segmentation-models-pytorch."""

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from segbench.models.backbones import load_encoder_weights, smp_encoder_name
from segbench.models.base import SegmentationNetwork


class SmpNetwork(SegmentationNetwork):
    """An smp architecture on a segbench backbone.

    Args:
        arch: smp architecture name (``smp.create_model``'s ``arch``).
        backbone: Backbone config (``conf/backbone/*.yaml``).
        num_classes: Number of classes.
        in_channels: Input channels.
        freeze_encoder: Freeze the encoder (BatchNorm in eval mode).
        **decoder_kwargs: smp's own arguments of that architecture.
    """

    def __init__(self, arch: str, backbone: dict, num_classes: int, in_channels: int = 3,
                 freeze_encoder: bool = False, **decoder_kwargs) -> None:
        super().__init__(num_classes, pad_multiple=32, freeze_encoder=freeze_encoder)
        self.model = smp.create_model(arch, encoder_name=smp_encoder_name(backbone),
                                      encoder_weights=None, in_channels=in_channels,
                                      classes=num_classes, **decoder_kwargs)
        self._pretrained = load_encoder_weights(self.model.encoder, backbone)
        self.apply_freeze()

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def pretrained_modules(self) -> list[nn.Module]:
        return [self.model.encoder] if self._pretrained else []

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Unet(SmpNetwork):
    """U-Net (Ronneberger et al., 2015) decoder with skip connections at every stride.

    Args:
        backbone: Backbone config.
        num_classes: Number of classes.
        in_channels: Input channels.
        decoder_channels: Channels of the decoder blocks, deepest first (one per stage).
        decoder_attention_type: ``None`` or ``"scse"``.
        freeze_encoder: Freeze the encoder.
    """

    def __init__(self, backbone: dict, num_classes: int, in_channels: int = 3,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
                 decoder_attention_type: str | None = None, freeze_encoder: bool = False) -> None:
        super().__init__("unet", backbone, num_classes, in_channels, freeze_encoder,
                         encoder_depth=len(decoder_channels),
                         decoder_channels=list(decoder_channels),
                         decoder_attention_type=decoder_attention_type)
