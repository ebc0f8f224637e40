"""Static INT8 through ONNX Runtime: the fp32 graph quantised to QDQ from calibration batches.

Settings measured on x86 (AVX-512 VNNI) with ONNX Runtime 1.32: QDQ format,
per-channel int8 weights, **uint8 activations** (ORT's default int8 x int8 runs
slower than fp32 on x86: VNNI multiplies u8 x s8), MinMax calibration, full
8-bit range, and ``quant_pre_process`` first. The graph is calibrated once; the
ranges are kept in a JSON cache beside the model, so re-quantising with some
layers kept in fp32 (:mod:`segbench.runtimes.int8_layers`) reads no data again.

The graph quantised is the network's deploy form (:mod:`segbench.models.deploy`:
no transposed convolutions, no BatchNorm outside a convolution, nearest
upsampling as an NHWC copy) at a static H/W, so that ONNX Runtime runs it in
integer kernels end to end (:func:`segbench.runtimes.int8_graph.export_source`).
"""

import ast
import collections
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from segbench.errors import ConfigError
from segbench.runtimes.int8_graph import RULES, input_pools, shared_ranges

log = logging.getLogger(__name__)

TYPES = ("uint8", "int8")
METHODS = ("minmax", "percentile")
#: Op types that only convert or describe tensors: neither integer nor fp32 compute.
_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Shape", "Constant", "Identity"}
_INT8 = (2, 3)  # onnx.TensorProto.UINT8, INT8
_INDEX = (6, 7)  # INT32, INT64: shape arithmetic


@dataclass(frozen=True)
class Int8Settings:
    """How the graph is quantised (``conf/export.yaml`` ``int8``).

    Args:
        method: Calibration: ``minmax`` (range of every activation over the
            calibration frames) or ``percentile`` (clips the top ``percentile``).
        per_channel: One weight scale per output channel (else per tensor).
        activation_type: ``uint8`` (fast on x86) or ``int8``.
        weight_type: ``int8`` or ``uint8``.
        percentile: For ``method=percentile``.
    """

    method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    percentile: float = 99.999

    def check(self, key: str = "int8") -> "Int8Settings":
        """Raises ConfigError for a value ONNX Runtime would reject; returns self."""
        if self.method not in METHODS:
            raise ConfigError(
                f"{key}.method", self.method, "unknown calibration method", allowed=METHODS
            )
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in TYPES:
                raise ConfigError(
                    f"{key}.{name}", getattr(self, name), "unknown type", allowed=TYPES
                )
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"{key}.percentile", self.percentile, "must be in (0, 100]")
        return self

    def record(self) -> dict:
        """What export.json says about the quantisation."""
        return {
            "format": "QDQ",
            **asdict(self),
            "reduce_range": False,
            "quant_pre_process": True,
            "rules": list(RULES),
        }


def preprocess(fp32_path: str | Path, out_path: str | Path) -> dict:
    """``quant_pre_process`` (ONNX shape inference, ORT's basic optimisations) into ``out_path``.

    ORT's symbolic shape inference is skipped: it cannot follow the in-graph
    padding of a dynamic-H/W graph, and when it fails it leaves a debug model
    (``sym_shape_infer_temp.onnx`` + data) in the working directory. ONNX's own
    shape inference is all the quantiser needs for convolution networks.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
    return {"onnx_shape_inference": True, "symbolic_shape_inference": False}


def quantize(
    pre_path: str | Path,
    out_path: str | Path,
    reader,
    settings: Int8Settings,
    cache_path: str | Path,
    exclude: list[str] | tuple = (),
    keep_activations: bool = False,
) -> None:
    """Writes the QDQ model of the pre-processed ``pre_path`` to ``out_path``.

    Two rules of this CPU provider are applied to every quantisation: pooling that
    reads the input image directly stays fp32 (:func:`input_pools`: ONNX Runtime
    runs a uint8 NCHW MaxPool about 20x slower than the fp32 one), and the tensors
    around a concatenation share one range where that widens none more than 2x
    (:func:`shared_ranges`: the integer concatenation is then a copy, 5x faster
    than requantising, measured).

    Args:
        reader: ONNX Runtime ``CalibrationDataReader`` (unused when the cache exists).
        cache_path: Calibration ranges (JSON): read when present, written otherwise.
        exclude: Node names kept in fp32.
        keep_activations: Keep Relu/Clip nodes explicit (for layer-by-layer comparison).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(pre_path)).graph
    fp32_nodes = [*exclude, *input_pools(graph)]
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    extra = {"CalibPercentile": settings.percentile} if settings.method == "percentile" else {}
    if keep_activations:
        extra["QDQKeepRemovableActivations"] = True

    def run(overrides: dict | None) -> None:
        quantize_static(
            str(pre_path),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            reduce_range=False,
            activation_type=types[settings.activation_type],
            weight_type=types[settings.weight_type],
            nodes_to_exclude=fp32_nodes,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "percentile": CalibrationMethod.Percentile,
            }[settings.method],
            extra_options=extra | ({"TensorQuantOverrides": overrides} if overrides else {}),
            calibration_cache_path=str(cache_path),
        )

    calibrating = not Path(cache_path).is_file()
    if calibrating:
        run(None)  # reads the frames, writes the ranges the shared ones are computed from
    overrides = shared_ranges(graph, cache_path)
    if overrides or not calibrating:  # else the calibrating run's model is the one
        run(overrides)


def module_name(node) -> str | None:
    """The PyTorch module a node of a ``torch.onnx.export(dynamo=True)`` graph came from."""
    props = {p.key: p.value for p in node.metadata_props}
    scopes = props.get("pkg.torch.onnx.name_scopes")
    if not scopes:
        return None
    try:
        names = ast.literal_eval(scopes)
    except (ValueError, SyntaxError):
        return None
    # [..., 'decoder.blocks.0.conv1', 'conv2d']: the last module path, then the op.
    modules = [n for n in names[:-1] if n]
    return modules[-1] if modules else None


def kernel_precision(path: str | Path, threads: int | None = None) -> dict:
    """What ONNX Runtime's CPU provider actually runs in integer and in float for a QDQ model.

    The graph is optimised as a session would (``ORT_ENABLE_ALL``: QDQ groups fused
    into ``QLinearConv``, ``QLinearAdd``, ..., NHWC layout) and each compute node
    is classed by its output type: float outputs are fp32 kernels (an excluded
    layer, the input padding), quantised outputs are integer kernels; shape
    arithmetic (int64) and the (de)quantisation itself are neither.

    Returns:
        ``int8_kernels`` and ``fp32_kernels`` (op type -> count) and
        ``fp32_nodes`` (node, op, module) of the float compute.
    """
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="segbench-ort-") as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3  # the "hardware-specific graph" warning is expected
        if threads:
            options.intra_op_num_threads = threads
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    modules = {n.name: module_name(n) for n in onnx.load(str(path)).graph.node}
    types = _tensor_types(graph)
    int8, fp32, nodes = collections.Counter(), collections.Counter(), []
    for node in graph.node:
        op = f"{node.domain}:{node.op_type}" if node.domain else node.op_type
        kind = types.get(node.output[0]) if node.output else None
        if node.op_type in _PLUMBING or kind in _INDEX or kind is None:
            continue
        if kind in _INT8:
            int8[op] += 1
        else:
            fp32[op] += 1
            nodes.append({"node": node.name, "op": op, "module": modules.get(node.name)})
    return {
        "int8_kernels": dict(sorted(int8.items())),
        "fp32_kernels": dict(sorted(fp32.items())),
        "fp32_nodes": nodes,
    }


def _tensor_types(graph) -> dict[str, int]:
    """Element type of every tensor of an ORT-optimised graph.

    ORT writes types only for the tensors it kept; the ones its fusions
    created are typed here by the op: quantised (``QuantizeLinear``,
    ``QLinear*``), float (``DequantizeLinear``, NCHWc kernels), else the type
    of the node's first input (layout and data movement: Transpose, Resize, ...).
    """
    import onnx

    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input]}
    types |= {v.name: v.type.tensor_type.elem_type for v in graph.output}
    types |= {t.name: t.data_type for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" or node.op_type.startswith("QLinear"):
            made = onnx.TensorProto.UINT8
        elif node.op_type == "DequantizeLinear" or node.domain == "com.microsoft.nchwc":
            made = onnx.TensorProto.FLOAT
        else:
            made = types.get(node.input[0]) if node.input else None
        for out in node.output:
            if not types.get(out) and made:
                types[out] = made
    return types
