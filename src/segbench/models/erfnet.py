"""ERFNet (Romera et al., IEEE T-ITS 2018), layer for layer as Eromera/erfnet_pytorch."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.base import SegmentationNetwork
from segbench.models.deploy import SubPixelConvTranspose2d, affine_conv, bn_scale_shift, fold_bn
from segbench.models.weights import load_encoder_weights

BN_EPS = 1e-3


class DownsamplerBlock(nn.Module):
    """concat(3x3 stride-2 conv to ``out - in`` channels, 2x2 max-pool) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    deploy_note = "BatchNorm folded into the conv branch and a depthwise 1x1 on the pool branch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))

    def deploy_form(self) -> nn.Module:
        """The same function with the BatchNorm folded into each branch (see models.deploy)."""
        n = self.conv.out_channels
        scale, shift = bn_scale_shift(self.bn)
        conv = nn.Conv2d(self.conv.in_channels, n, 3, stride=2, padding=1)
        weight, bias = fold_bn(self.conv.weight, self.conv.bias, scale[:n], shift[:n])
        conv.weight.data.copy_(weight)
        conv.bias.data.copy_(bias)
        return _DeployedDownsampler(conv, self.pool, affine_conv(scale[n:], shift[n:]))


class _DeployedDownsampler(nn.Module):
    """concat(ReLU(conv'), ReLU(affine(pool))): DownsamplerBlock with its BatchNorm folded."""

    def __init__(self, conv: nn.Conv2d, pool: nn.MaxPool2d, affine: nn.Conv2d) -> None:
        super().__init__()
        self.conv, self.pool, self.affine = conv, pool, affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.conv(x)), F.relu(self.affine(self.pool(x)))], 1)


class NonBottleneck1d(nn.Module):
    """Residual block of factorised 3x1 / 1x3 convs, the second pair dilated.

    3x1, ReLU, 1x3, BN, ReLU, 3x1 (dilation d), ReLU, 1x3 (dilation d), BN,
    Dropout2d, + input, ReLU.
    """

    def __init__(self, channels: int, dropout: float, dilation: int) -> None:
        super().__init__()
        d = dilation
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1))
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d))
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv3x1_1(x))
        out = F.relu(self.bn1(self.conv1x3_1(out)))
        out = F.relu(self.conv3x1_2(out))
        out = self.dropout(self.bn2(self.conv1x3_2(out)))
        return F.relu(out + x)


class UpsamplerBlock(nn.Module):
    """ConvTranspose 3x3 stride 2 (padding 1, output padding 1) -> BN -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    deploy_note = "sub-pixel Conv2d (BatchNorm folded) + depth-to-space, ReLU"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    def deploy_form(self) -> nn.Module:
        """The same function without a transposed convolution (see models.deploy)."""
        return nn.Sequential(SubPixelConvTranspose2d(self.conv, self.bn), nn.ReLU())


class ErfnetEncoder(nn.Sequential):
    """Input -> 128 channels at 1/8 resolution."""

    def __init__(self, in_channels: int = 3) -> None:
        layers: list[nn.Module] = [DownsamplerBlock(in_channels, 16), DownsamplerBlock(16, 64)]
        layers += [NonBottleneck1d(64, 0.03, 1) for _ in range(5)]
        layers.append(DownsamplerBlock(64, 128))
        layers += [NonBottleneck1d(128, 0.3, d) for _ in range(2) for d in (2, 4, 8, 16)]
        super().__init__(*layers)


class ErfnetDecoder(nn.Sequential):
    """128 channels at 1/8 resolution -> class logits at full resolution."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(
            UpsamplerBlock(128, 64),
            NonBottleneck1d(64, 0, 1),
            NonBottleneck1d(64, 0, 1),
            UpsamplerBlock(64, 16),
            NonBottleneck1d(16, 0, 1),
            NonBottleneck1d(16, 0, 1),
            nn.ConvTranspose2d(16, num_classes, 2, stride=2),
        )


class ERFNet(SegmentationNetwork):
    """ERFNet: its own encoder (downsamplers + non-bottleneck-1D) and a deconv decoder.

    For 20 classes it has 2,064,256 learnable parameters, as the reference code.
    With ``encoder_only`` it is the paper's first training stage: the encoder
    plus a 1x1 classifier, logits at 1/8 of the input size (``ceil(H/8) x
    ceil(W/8)``); the training loss downsamples the labels to match. A later
    ``init.checkpoint`` of that run loads the trained encoder into the full net.

    Args:
        backbone: Backbone config; must be ``conf/backbone/erfnet.yaml``
            (``weights``: null or a local state-dict file of the encoder).
        num_classes: Number of classes.
        in_channels: Input channels.
        encoder_only: Encoder + 1x1 classifier at 1/8 resolution.
        freeze_encoder: Freeze the encoder (BatchNorm in eval mode).
    """

    backbones = ("erfnet",)

    def __init__(
        self,
        backbone: dict,
        num_classes: int,
        in_channels: int = 3,
        encoder_only: bool = False,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__(num_classes, pad_multiple=8, freeze_encoder=freeze_encoder)
        self.encoder_only = encoder_only
        self.encoder = ErfnetEncoder(in_channels)
        if encoder_only:
            self.classifier = nn.Conv2d(128, num_classes, 1)
        else:
            self.decoder = ErfnetDecoder(num_classes)
        self._pretrained = load_encoder_weights(self.encoder, backbone)
        self.apply_freeze()

    def pretrained_modules(self) -> list[nn.Module]:
        return [self.encoder] if self._pretrained else []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.encoder_only:
            return super().forward(x)
        h, w = x.shape[-2:]
        logits = super().forward(x)  # padded to a multiple of 8, cropped to (h, w): a no-op
        return logits[..., : math.ceil(h / 8), : math.ceil(w / 8)]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        if self.encoder_only:
            return self.classifier(features)
        return self.decoder(features)
