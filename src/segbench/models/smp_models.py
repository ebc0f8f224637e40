"""Networks whose decoders come from segmentation-models-pytorch."""

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from segbench.errors import ConfigError
from segbench.models.backbones import smp_encoder_name
from segbench.models.base import SegmentationNetwork
from segbench.models.weights import load_encoder_weights


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

    def __init__(
        self,
        arch: str,
        backbone: dict,
        num_classes: int,
        in_channels: int = 3,
        freeze_encoder: bool = False,
        **decoder_kwargs,
    ) -> None:
        super().__init__(num_classes, pad_multiple=32, freeze_encoder=freeze_encoder)
        self.model = smp.create_model(
            arch,
            encoder_name=smp_encoder_name(backbone),
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            **decoder_kwargs,
        )
        # smp refuses inputs not divisible by the encoder's output stride (32, or
        # 8/16 for shallow or dilated encoders): pad to exactly that.
        self.pad_multiple = self.model.encoder.output_stride
        drop_unused_stages(self.model.encoder, decoder_kwargs.get("encoder_depth", 5))
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

    def __init__(
        self,
        backbone: dict,
        num_classes: int,
        in_channels: int = 3,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        decoder_attention_type: str | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__(
            "unet",
            backbone,
            num_classes,
            in_channels,
            freeze_encoder,
            encoder_depth=len(decoder_channels),
            decoder_channels=list(decoder_channels),
            decoder_attention_type=decoder_attention_type,
        )


def drop_unused_stages(encoder: nn.Module, depth: int) -> None:
    """Removes the encoder stages below stride ``2**depth`` (PSPNet uses depth 3).

    smp builds the whole backbone and only returns the first ``depth`` features:
    the deeper stages would count as parameters and, for timm encoders, still
    run. Without them, parameter and FLOP counts are those of the network used.
    """
    if depth >= 5:
        return
    timm_model = getattr(encoder, "model", None)
    stage_ends = getattr(timm_model, "_stage_out_idx", None)
    if stage_ends and hasattr(timm_model, "blocks"):
        # EfficientNetFeatures (MobileNetV2/V3): block i feeds output stage i + 1.
        timm_model.blocks = timm_model.blocks[: max(stage_ends)]
    elif hasattr(encoder, "get_stages"):
        unused = {
            id(m)
            for stride, mods in encoder.get_stages().items()
            if stride > 2**depth
            for m in mods
        }
        for name, child in list(encoder.named_children()):
            if id(child) in unused:
                setattr(encoder, name, nn.Identity())


#: PSPNet shapes (``model.variant``): what each sets unless given explicitly.
PSPNET_VARIANTS = {
    # The paper's: the whole encoder, its last stages dilated so the pyramid pools stride-8
    # features (Zhao et al. 2017; mmseg mobilenet-v2-d8_pspnet), dropout 0.1.
    "paper": {"encoder_depth": 5, "output_stride": 8, "psp_dropout": 0.1},
    # smp's default: the encoder cut after stride 8 (0.14 M parameters on MobileNetV2).
    "compact": {"encoder_depth": 3, "output_stride": None, "psp_dropout": 0.2},
}


class PSPNet(SmpNetwork):
    """PSPNet (Zhao et al., 2017): pyramid pooling (bins 1, 2, 3, 6) on stride-8 features.

    ``variant="paper"`` runs the whole encoder with its last stages dilated to output
    stride 8 (on MobileNetV2 at 11 classes: 2.29 M parameters, pyramid on 45x60
    features at 360x480). ``variant="compact"`` is smp's default, which keeps only the
    encoder's first three stages (0.14 M parameters). Arguments left None take the
    variant's value; smp 0.6 fixes the bins.

    Args:
        backbone: Backbone config.
        num_classes: Number of classes.
        in_channels: Input channels.
        variant: ``paper`` or ``compact`` (see :data:`PSPNET_VARIANTS`).
        encoder_depth: Encoder stages used (3 to 5).
        output_stride: Stride of the deepest features (8 or 16 dilate the deeper stages;
            None: ``2**encoder_depth``).
        psp_out_channels: Channels of the 1x1 conv after the pyramid.
        psp_dropout: Spatial dropout after the pyramid.
        decoder_use_norm: Norm in the pyramid convs (``"batchnorm"``, ``"identity"``, ...).
        upsampling: Final upsampling factor; None: the features' stride (the input size).
        freeze_encoder: Freeze the encoder.
    """

    def __init__(
        self,
        backbone: dict,
        num_classes: int,
        in_channels: int = 3,
        variant: str = "paper",
        encoder_depth: int | None = None,
        output_stride: int | None = None,
        psp_out_channels: int = 512,
        psp_dropout: float | None = None,
        decoder_use_norm: str = "batchnorm",
        upsampling: int | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        if variant not in PSPNET_VARIANTS:
            raise ConfigError(
                "model.variant", variant, "unknown PSPNet shape", allowed=tuple(PSPNET_VARIANTS)
            )
        shape = PSPNET_VARIANTS[variant]
        depth = shape["encoder_depth"] if encoder_depth is None else encoder_depth
        stride = shape["output_stride"] if output_stride is None else output_stride
        if stride is not None and stride not in (8, 16, 32):
            raise ConfigError("model.output_stride", stride, "not a stride", allowed=(8, 16, 32))
        # A stride at or above the encoder's own (2**depth) dilates nothing: not passed, so
        # checkpoints of the compact shape rebuild the same modules.
        stride = stride if stride is not None and stride < 2**depth else None
        super().__init__(
            "pspnet",
            backbone,
            num_classes,
            in_channels,
            freeze_encoder,
            encoder_depth=depth,
            psp_out_channels=psp_out_channels,
            psp_dropout=shape["psp_dropout"] if psp_dropout is None else psp_dropout,
            decoder_use_norm=decoder_use_norm,
            upsampling=upsampling or stride or 2**depth,
            **({} if stride is None else {"output_stride": stride}),
        )


class DeepLabV3Plus(SmpNetwork):
    """DeepLabV3+ (Chen et al., 2018): ASPP on a dilated encoder, fused with stride-4 features.

    Args:
        backbone: Backbone config.
        num_classes: Number of classes.
        in_channels: Input channels.
        encoder_output_stride: 16 or 8 (the encoder's last stages are dilated).
        decoder_atrous_rates: The three ASPP dilation rates (paper: 6/12/18 at stride
            16, 12/24/36 at stride 8).
        decoder_channels: Channels of ASPP and the decoder.
        decoder_aspp_separable: Depthwise-separable ASPP convolutions.
        decoder_aspp_dropout: Dropout of the ASPP projection.
        freeze_encoder: Freeze the encoder.
    """

    def __init__(
        self,
        backbone: dict,
        num_classes: int,
        in_channels: int = 3,
        encoder_output_stride: int = 16,
        decoder_atrous_rates: Sequence[int] = (6, 12, 18),
        decoder_channels: int = 256,
        decoder_aspp_separable: bool = True,
        decoder_aspp_dropout: float = 0.5,
        freeze_encoder: bool = False,
    ) -> None:
        if encoder_output_stride not in (8, 16):
            raise ConfigError(
                "model.encoder_output_stride",
                encoder_output_stride,
                "DeepLabV3+ dilates its encoder to stride 8 or 16",
                allowed=(16, 8),
            )
        if len(decoder_atrous_rates) != 3:
            raise ConfigError(
                "model.decoder_atrous_rates",
                list(decoder_atrous_rates),
                "ASPP takes exactly three rates",
                fix="e.g. [6, 12, 18] at stride 16 or [12, 24, 36] at stride 8",
            )
        super().__init__(
            "deeplabv3plus",
            backbone,
            num_classes,
            in_channels,
            freeze_encoder,
            encoder_output_stride=encoder_output_stride,
            decoder_atrous_rates=tuple(decoder_atrous_rates),
            decoder_channels=decoder_channels,
            decoder_aspp_separable=decoder_aspp_separable,
            decoder_aspp_dropout=decoder_aspp_dropout,
        )
