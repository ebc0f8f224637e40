"""Deploy form: rewrites that keep the function and leave ONNX Runtime's INT8 no float island."""

import onnx
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.deploy import (
    SubPixelConvTranspose2d,
    deploy_form,
    nhwc_upsampling,
    upsample_nearest,
)
from segbench.models.erfnet import ERFNet
from segbench.runtimes import int8_graph
from segbench.runtimes.int8 import Int8Settings, kernel_precision, preprocess, quantize
from segbench.runtimes.int8_graph import export_source


def _randomise_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Eval mode with BatchNorm statistics and affine far from the identity (folding shows)."""
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
            with torch.no_grad():
                # Negative scales too: max-pool and a negative affine do not commute.
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))
    return net.eval()


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding", "bias"),
    [(3, 2, 1, 1, True), (2, 2, 0, 0, True), (4, 2, 1, 0, False), (3, 3, 0, 0, True),
     (5, 2, 2, 1, True), ((3, 2), 2, (1, 0), (1, 0), True)],
)  # fmt: skip
@pytest.mark.parametrize("with_bn", [False, True])
def test_sub_pixel_form_equals_the_transposed_convolution(
    kernel, stride, padding, output_padding, bias, with_bn
):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(5, 7, kernel, stride, padding, output_padding, bias=bias)
    bn = _randomise_bn(nn.BatchNorm2d(7)) if with_bn else None
    x = torch.randn(2, 5, 7, 9)
    with torch.no_grad():
        ref = deconv(x) if bn is None else bn(deconv(x))
        got = SubPixelConvTranspose2d(deconv, bn)(x)
    assert got.shape == ref.shape == (2, 7, 7 * stride, 9 * stride)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "deconv",
    [
        nn.ConvTranspose2d(4, 4, 3, 2, 1),  # output 2H - 1: not s times the input
        nn.ConvTranspose2d(4, 4, 3, 2, 1, 1, groups=2),
        nn.ConvTranspose2d(4, 4, 3, 2, 2, 1, dilation=2),
    ],
)
def test_transposed_convolutions_without_an_exact_form_are_left_alone(deconv):
    assert not SubPixelConvTranspose2d.supports(deconv)
    net, changes = deploy_form(nn.Sequential(deconv))
    assert changes == [] and isinstance(net[0], nn.ConvTranspose2d)
    with pytest.raises(ValueError, match="no exact sub-pixel form"):
        SubPixelConvTranspose2d(deconv)


def test_erfnet_deploy_form_computes_the_same_logits_without_deconvolutions():
    torch.manual_seed(0)
    net = _randomise_bn(ERFNet({"name": "erfnet", "weights": None}, num_classes=5))
    deployed, changes = deploy_form(net)
    # The three downsamplers, the two upsamplers and the final 2x2 deconvolution.
    assert len(changes) == 6 and sum("DownsamplerBlock" in c for c in changes) == 3
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in deployed.modules())
    assert isinstance(net.decoder[6], nn.ConvTranspose2d)  # the network itself is unchanged
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), net(x), atol=1e-4, rtol=1e-4)


def test_classifier_is_computed_in_whole_gemm_blocks():
    torch.manual_seed(0)
    net = smp.Unet("mobilenet_v2", encoder_weights=None, classes=11).eval()
    deployed, changes = deploy_form(net, classes=11)
    assert changes == [
        "segmentation_head.0: Conv2d to 11 classes -> 16 channels (zero filters), the first kept"
    ]
    assert deployed.segmentation_head[0].conv.out_channels == 16
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), net(x), atol=1e-5, rtol=1e-5)
    assert deploy_form(net, classes=16)[1] == []  # already whole blocks: left alone


@pytest.mark.parametrize("factor", [2, 3])
def test_nearest_upsampling_as_an_nhwc_copy_is_exact(factor):
    x = torch.randn(2, 5, 6, 7)
    ref = F.interpolate(x, scale_factor=factor, mode="nearest")
    assert torch.equal(upsample_nearest(x, factor), ref)
    with nhwc_upsampling() as replaced:
        by_size = F.interpolate(x, size=(6 * factor, 7 * factor))
        bilinear = F.interpolate(x, scale_factor=2, mode="bilinear")
        fractional = F.interpolate(x, size=(9, 10))
    assert replaced == {factor}  # only the integer nearest resize was rewritten
    assert torch.equal(by_size, ref)
    assert torch.equal(bilinear, F.interpolate(x, scale_factor=2, mode="bilinear"))
    assert torch.equal(fractional, F.interpolate(x, size=(9, 10)))
    assert F.interpolate.__module__ == "torch.nn.functional"  # restored


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_int8_source_graph_of_unet_has_no_resize(tmp_path):
    torch.manual_seed(0)
    net = smp.Unet("mobilenet_v2", encoder_weights=None, classes=4).eval()
    info = export_source(net, tmp_path / "unet.onnx", [64, 96])
    ops = _ops(tmp_path / "unet.onnx")
    assert "Resize" not in ops and "Expand" in ops
    assert info["deploy_form"] == ["nearest upsampling x2 -> NHWC broadcast copy"]
    assert info["input"]["shape"] == ["batch", 3, 64, 96] and info["dynamic"]["batch"]
    assert info["deploy_form_max_abs_diff"] < 1e-4


def test_erfnet_int8_graph_runs_every_layer_in_integer_kernels(tmp_path):
    """Without the deploy form ONNX Runtime keeps 3 ConvTranspose and 3 BatchNorm in fp32."""
    torch.manual_seed(0)
    net = _randomise_bn(ERFNet({"name": "erfnet", "weights": None}, num_classes=5))
    source = tmp_path / "erfnet.onnx"
    export_source(net, source, [64, 96])
    assert not {"ConvTranspose", "BatchNormalization"} & _ops(source)
    gen = torch.Generator().manual_seed(1)
    frames = [torch.randn(1, 3, 64, 96, generator=gen).numpy() for _ in range(2)]

    class Reader:
        def __init__(self):
            self.frames = iter(frames)

        def get_next(self):
            frame = next(self.frames, None)
            return None if frame is None else {"images": frame}

    pre, qdq = tmp_path / "pre.onnx", tmp_path / "int8.onnx"
    preprocess(source, pre)
    quantize(pre, qdq, Reader(), Int8Settings(), tmp_path / "calib.json")
    kernels = kernel_precision(qdq, threads=1)
    # Only the first downsampler's max-pool of the input image is float (by rule: it is
    # faster than ONNX Runtime's uint8 NCHW pooling); 64x96 needs no padding to 8.
    assert kernels["fp32_kernels"] == {"MaxPool": 1}, kernels["fp32_kernels"]
    assert kernels["int8_kernels"]["com.microsoft:QLinearConv"] > 70


def test_a_wrong_deploy_form_is_refused_before_quantisation(tmp_path, monkeypatch):
    net = smp.Unet("mobilenet_v2", encoder_weights=None, classes=4).eval()

    def broken(module):
        copy, changes = deploy_form(module)
        with torch.no_grad():
            copy.segmentation_head[0].bias.add_(1.0)
        return copy, changes

    monkeypatch.setattr(int8_graph, "deploy_form", broken)
    with pytest.raises(RuntimeError, match="deploy form of Unet .* differs from the network"):
        export_source(net, tmp_path / "m.onnx", [64, 96])


def _cache(path, ranges: dict) -> str:
    """An ONNX Runtime calibration cache with the given (low, high) per tensor."""
    import json

    def array(v):
        return {"data": [v], "dtype": "float32", "CLS": "numpy.array"}

    data = {
        name: {"lowest": array(lo), "highest": array(hi), "CLS": "TensorData"}
        for name, (lo, hi) in ranges.items()
    }
    path.write_text(json.dumps({"CLS": "TensorsData", "data": data}))
    return str(path)


def _concat_graph():
    """relu(x) = a -> Transpose -> t; -x = b; concat(t, b) -> c; a MaxPool on the input x."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Transpose", ["a"], ["t"], name="move", perm=[0, 1, 2, 3]),
        helper.make_node("Neg", ["x"], ["b"], name="neg"),
        helper.make_node("Concat", ["t", "b"], ["c"], name="cat", axis=1),
        helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2]),
    ]
    value = helper.make_tensor_value_info
    shape = [1, 1, 4, 4]
    return helper.make_graph(
        nodes,
        "g",
        [value("x", TensorProto.FLOAT, shape)],
        [value("c", TensorProto.FLOAT, None), value("p", TensorProto.FLOAT, None)],
    )


def test_concat_tensors_share_a_range_only_where_it_costs_at_most_a_bit(tmp_path):
    from segbench.runtimes.int8_graph import input_pools, shared_ranges

    graph = _concat_graph()
    close = _cache(tmp_path / "close.json", {"a": (0, 4), "t": (0, 4), "b": (0, 6), "c": (0, 6)})
    overrides = shared_ranges(graph, close)
    # The moved-from tensor joins the group: the Transpose stays a pure copy.
    assert set(overrides) == {"a", "t", "b", "c"}
    assert {(o[0]["rmin"], o[0]["rmax"]) for o in overrides.values()} == {(0, 6)}
    # A ReLU'd [0, 6] beside a signed [-14, 14]: sharing would cost it two bits; left alone.
    far = _cache(tmp_path / "far.json", {"a": (0, 6), "t": (0, 6), "b": (-14, 14), "c": (-14, 14)})
    assert shared_ranges(graph, far) == {}
    # Within 2x, but a ReLU output's range may not go below 0: the quantiser folds the
    # ReLU into it, and a negative low would drop the ReLU from the integer graph.
    signed = _cache(
        tmp_path / "signed.json", {"a": (0, 4), "t": (0, 4), "b": (-3, 3), "c": (-3, 4)}
    )
    assert shared_ranges(graph, signed) == {}
    assert input_pools(graph) == ["pool"]
