"""Deploy form: the same function in layers that integer runtimes run end to end.

ONNX Runtime's CPU provider runs convolutions, additions, concatenation and
pooling in int8, in NHWC layout; four things in the zoo fall outside that set
and cost an INT8 graph a float island with a layout change on each side:

- ``ConvTranspose2d`` (no int8 kernel): rewritten as its sub-pixel form, a
  stride-1 convolution to ``s * s`` phases of the output followed by
  depth-to-space (:class:`SubPixelConvTranspose2d`; exact, any stride whose
  output is ``s`` times the input).
- A BatchNorm after a concatenation (ERFNet's downsampler: it follows no
  convolution, so nothing folds it): modules that have one define
  ``deploy_form()``, which folds it into the branches (:func:`fold_bn`).
- Nearest upsampling by an integer factor: ONNX ``Resize`` in NHWC has no fast
  path (about 1.6 GB/s for 2x on uint8, 40x slower than its NCHW 2x kernel);
  under :func:`nhwc_upsampling` it is a broadcast copy in NHWC that the layout
  optimiser keeps next to the convolutions.
- A classifier with a class count that is not a multiple of 16: the int8 GEMM
  works on blocks of 16 output channels, and an 11-channel 3x3 convolution at
  384x480 took 3.5 ms against 1.3 ms for 16 channels; :class:`PaddedConv2d`
  computes 16 (zero filters added) and keeps the first 11.

Every rewrite is exact in fp32 (tests/test_deploy_form.py compares outputs);
:func:`deploy_form` returns a converted copy and the list of what it changed.
"""

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode ``bn`` as ``x * scale + shift`` per channel (running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    scale: torch.Tensor,
    shift: torch.Tensor,
    out_dim: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of a layer followed by the per-channel ``x * scale + shift``.

    ``out_dim`` is the weight's output-channel axis (0 for ``Conv2d``, 1 for
    ``ConvTranspose2d``); ``scale``/``shift`` come from :func:`bn_scale_shift`.
    """
    shape = [1] * weight.dim()
    shape[out_dim] = -1
    bias = torch.zeros_like(shift) if bias is None else bias
    return weight * scale.reshape(shape), bias * scale + shift


def affine_conv(scale: torch.Tensor, shift: torch.Tensor) -> nn.Conv2d:
    """``x * scale + shift`` per channel as a depthwise 1x1 convolution (int8 runtimes have it)."""
    channels = scale.numel()
    conv = nn.Conv2d(channels, channels, 1, groups=channels)
    conv.weight.data.copy_(scale.reshape(-1, 1, 1, 1))
    conv.bias.data.copy_(shift)
    return conv


def _phases(kernel: int, stride: int, padding: int) -> tuple[int, list[list[int | None]]]:
    """Sub-pixel taps of a transposed convolution along one axis.

    Output position ``stride * m + a`` reads input positions ``m + d``; returns
    the smallest offset ``d`` and, per phase ``a``, the transposed kernel's tap
    for each offset from the smallest to the largest (``None``: no tap).
    """
    taps = {
        a: {
            (a + padding - k) // stride: k for k in range(kernel) if (a + padding - k) % stride == 0
        }
        for a in range(stride)
    }
    offsets = [d for by_offset in taps.values() for d in by_offset]
    low, high = min(offsets), max(offsets)
    return low, [[taps[a].get(d) for d in range(low, high + 1)] for a in range(stride)]


class SubPixelConvTranspose2d(nn.Module):
    """``ConvTranspose2d`` (optionally followed by a BatchNorm) as conv + depth-to-space.

    A transposed convolution of stride ``s`` whose output is ``s`` times its
    input (``kernel - 2 * padding + output_padding == s``) computes each of the
    ``s * s`` output phases as an ordinary convolution of the input; this module
    is that convolution (``s * s * C_out`` channels, phase-major) and the
    interleaving of its phases.

    Args:
        deconv: The transposed convolution (groups 1, dilation 1).
        bn: An eval-mode BatchNorm that followed it, folded in.
    """

    def __init__(self, deconv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None = None) -> None:
        super().__init__()
        if not self.supports(deconv):
            raise ValueError(f"{deconv} has no exact sub-pixel form")
        weight, bias = deconv.weight.detach(), deconv.bias
        bias = None if bias is None else bias.detach()
        if bn is not None:
            weight, bias = fold_bn(weight, bias, *bn_scale_shift(bn), out_dim=1)
        (s, _), c_out = deconv.stride, deconv.out_channels
        low_h, taps_h = _phases(deconv.kernel_size[0], s, deconv.padding[0])
        low_w, taps_w = _phases(deconv.kernel_size[1], s, deconv.padding[1])
        kh, kw = len(taps_h[0]), len(taps_w[0])
        sub = torch.zeros(s * s * c_out, deconv.in_channels, kh, kw, dtype=weight.dtype)
        for a in range(s):
            for b in range(s):
                block = sub[(a * s + b) * c_out : (a * s + b + 1) * c_out]
                for t, ky in enumerate(taps_h[a]):
                    for u, kx in enumerate(taps_w[b]):
                        if ky is not None and kx is not None:
                            block[:, :, t, u] = weight[:, :, ky, kx].T
        self.stride = s
        # Input rows low..low+kh-1 around each output row: pad -low before, the rest after.
        self.pad = (-low_w, kw - 1 + low_w, -low_h, kh - 1 + low_h)
        self.conv = nn.Conv2d(deconv.in_channels, s * s * c_out, (kh, kw))
        self.conv.weight.data.copy_(sub)
        phase_bias = torch.zeros(c_out) if bias is None else bias
        self.conv.bias.data.copy_(phase_bias.repeat(s * s))

    @staticmethod
    def supports(deconv: nn.ConvTranspose2d) -> bool:
        """Whether ``deconv`` has an exact sub-pixel form here."""
        s = deconv.stride
        return (
            deconv.groups == 1
            and deconv.dilation == (1, 1)
            and s[0] == s[1]
            and deconv.padding_mode == "zeros"
            and all(
                k - 2 * p + op == s[0]
                for k, p, op in zip(
                    deconv.kernel_size, deconv.padding, deconv.output_padding, strict=True
                )
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return depth_to_space(self.conv(x), self.stride)


def depth_to_space(x: torch.Tensor, s: int) -> torch.Tensor:
    """``(N, s*s*C, H, W)`` with phase-major channels to ``(N, C, s*H, s*W)``.

    Written in NHWC (channels last, then two blocks of ``C`` moved per pixel)
    so that a runtime holding the convolution's output in NHWC moves whole
    channel vectors instead of single values.
    """
    _, c, h, w = x.shape
    # -1 for the batch: torch.export keeps it symbolic (an explicit size guards it).
    y = x.permute(0, 2, 3, 1).reshape(-1, h, w, s, s, c // (s * s))
    y = y.permute(0, 1, 3, 2, 4, 5).reshape(-1, h * s, w * s, c // (s * s))
    return y.permute(0, 3, 1, 2).contiguous()


def upsample_nearest(x: torch.Tensor, s: int) -> torch.Tensor:
    """Nearest upsampling by the integer ``s``, as a broadcast copy in NHWC."""
    _, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(-1, h, s, w, s, c)
    return y.reshape(-1, h * s, w * s, c).permute(0, 3, 1, 2).contiguous()


@contextlib.contextmanager
def nhwc_upsampling():
    """Within the block, ``F.interpolate(mode="nearest")`` by an integer factor is
    :func:`upsample_nearest`; sizes must be concrete (a static-shape export).

    Yields the set of factors it replaced (empty: nothing was rewritten).
    """
    original, replaced = F.interpolate, set()

    def interpolate(input, size=None, scale_factor=None, mode="nearest", *args, **kwargs):
        factor = _integer_factor(input, size, scale_factor) if mode == "nearest" else None
        if factor is None or args or kwargs.get("align_corners") or kwargs.get("antialias"):
            return original(input, size, scale_factor, mode, *args, **kwargs)
        replaced.add(factor)
        return upsample_nearest(input, factor)

    F.interpolate = interpolate
    try:
        yield replaced
    finally:
        F.interpolate = original


def _integer_factor(x: torch.Tensor, size, scale_factor) -> int | None:
    """The common integer factor of a 4-D nearest resize, or ``None``."""
    if x.dim() != 4:
        return None
    h, w = x.shape[-2:]
    if not all(isinstance(v, int) for v in (h, w)):
        return None
    if size is not None:
        out = (size, size) if isinstance(size, int) else tuple(size)
        if not all(isinstance(v, int) for v in out) or out[0] % h or out[1] % w:
            return None
        factors = {out[0] // h, out[1] // w}
    else:
        scales = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        if not all(float(v).is_integer() for v in scales):
            return None
        factors = {int(v) for v in scales}
    return factors.pop() if len(factors) == 1 and min(factors) > 1 else None


class PaddedConv2d(nn.Module):
    """``conv`` computed with its output channels rounded up to ``multiple`` (zero
    filters), the extra channels dropped: the same output, in whole GEMM blocks."""

    def __init__(self, conv: nn.Conv2d, multiple: int = 16) -> None:
        super().__init__()
        self.out_channels = conv.out_channels
        padded = -(-conv.out_channels // multiple) * multiple
        self.conv = nn.Conv2d(
            conv.in_channels, padded, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
        )  # fmt: skip
        self.conv.weight.data.zero_()
        self.conv.bias.data.zero_()
        self.conv.weight.data[: conv.out_channels] = conv.weight.detach()
        if conv.bias is not None:
            self.conv.bias.data[: conv.out_channels] = conv.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[:, : self.out_channels]


def deploy_form(
    net: nn.Module, classes: int | None = None, multiple: int = 16
) -> tuple[nn.Module, list[str]]:
    """A copy of the eval-mode ``net`` in its deploy form, and what was rewritten.

    Modules with a ``deploy_form()`` method are replaced by what it returns;
    every other ``ConvTranspose2d`` with an exact sub-pixel form becomes
    :class:`SubPixelConvTranspose2d`; a ``Conv2d`` (groups 1) to ``classes``
    channels (default: ``net.num_classes``) that is not a multiple of
    ``multiple`` becomes :class:`PaddedConv2d`. ``net`` itself is not changed.
    """
    classes = getattr(net, "num_classes", None) if classes is None else classes
    net = copy.deepcopy(net).eval()
    changes: list[str] = []

    def convert(parent: nn.Module, prefix: str) -> None:
        for name, child in parent.named_children():
            path = f"{prefix}{name}"
            if hasattr(child, "deploy_form"):
                setattr(parent, name, child.deploy_form())
                changes.append(f"{path}: {type(child).__name__} -> {child.deploy_note}")
            elif isinstance(child, nn.ConvTranspose2d) and SubPixelConvTranspose2d.supports(child):
                setattr(parent, name, SubPixelConvTranspose2d(child))
                changes.append(f"{path}: ConvTranspose2d -> sub-pixel Conv2d + depth-to-space")
            elif (
                type(child) is nn.Conv2d
                and child.out_channels == classes
                and child.groups == 1
                and classes % multiple
            ):
                setattr(parent, name, PaddedConv2d(child, multiple))
                changes.append(
                    f"{path}: Conv2d to {classes} classes -> {multiple * -(-classes // multiple)} "
                    "channels (zero filters), the first kept"
                )
            else:
                convert(child, f"{path}.")

    with torch.no_grad():
        convert(net, "")
    return net, changes
