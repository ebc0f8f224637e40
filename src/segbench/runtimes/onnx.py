"""ONNX: segbench networks written with torch.onnx and run with ONNX Runtime.

The graph takes normalised images ``(N, 3, H, W)`` and returns logits
``(N, num_classes, H, W)``; padding to the network's stride and cropping back
are inside it, exactly as in PyTorch.
"""

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segbench.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def default_providers(device: str | torch.device = "cpu") -> list[str]:
    """ONNX Runtime execution providers for ``device``, best first, as installed.

    CUDA is used only for a CUDA ``device`` and only when the installed
    onnxruntime build has it; CPU is always the last resort.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxModel:
    """An ONNX segmentation model run by ONNX Runtime.

    Calling it is a :data:`segbench.runtimes.Predictor`: normalised images
    ``(N, 3, H, W)`` to label maps ``(N, H, W)``; :meth:`logits` returns the raw
    ``(N, num_classes, H, W)`` output for parity checks. Padding to the network's
    stride and cropping back happen inside the graph, as in PyTorch.

    Args:
        path: The ``.onnx`` file.
        device: ``cpu`` or ``cuda``; picks the execution providers when
            ``providers`` is not given.
        providers: ONNX Runtime execution providers, best first.
        threads: Intra-op threads (``None``: ONNX Runtime's default, all cores).
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise DataError(
                path,
                "ONNX model not found",
                fix="pass the model.onnx written by `python export.py ckpt_path=...`",
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = path
        self.providers = providers or default_providers(device)
        self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name
        log.info(
            "ONNX Runtime %s on %s, input %s %s",
            path,
            self.session.get_providers(),
            self.input.name,
            self.input.shape,
        )

    @property
    def static_size(self) -> tuple[int, int] | None:
        """``(H, W)`` when the graph was exported with a fixed input size, else ``None``."""
        h, w = self.input.shape[2:]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)`` on the CPU for normalised images ``(N, 3, H, W)``."""
        size = self.static_size
        if size is not None and tuple(images.shape[-2:]) != size:
            raise ConfigError(
                "input_size",
                list(images.shape[-2:]),
                f"{self.path} was exported with a static input size {list(size)} "
                "(see static_reason in its export.json)",
                fix=f"feed {size[0]}x{size[1]} images or re-export with "
                f"input_size=[{images.shape[-2]},{images.shape[-1]}]",
            )
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run([self.output_name], {self.input.name: array})
        return torch.from_numpy(out)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).argmax(1)


def runtime_tags(model: OnnxModel) -> dict:
    """Tags an ONNX Runtime latency row carries: providers, version, threads."""
    import onnxruntime as ort

    return {
        "providers": model.session.get_providers(),
        "onnxruntime": ort.__version__,
        "threads": model.session.get_session_options().intra_op_num_threads,
    }


#: Input and output names of every segbench ONNX graph.
INPUT_NAME, OUTPUT_NAME = "images", "logits"
EXPORTERS = ("dynamo", "torchscript")


def static_shape_reason(net: torch.nn.Module) -> str | None:
    """Why ``net`` cannot take a dynamic H/W in ONNX, or ``None`` when it can.

    Adaptive pooling to a grid larger than 1x1 (PSPNet's pyramid bins) derives
    its kernel and stride from the input size; ONNX's AveragePool/MaxPool fix
    them at export time, so a dynamic graph would be silently wrong at any
    other padded size (global pooling, ``output_size=1``, is fine).
    """
    for name, module in net.named_modules():
        if isinstance(module, (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d)):
            size = module.output_size
            sizes = size if isinstance(size, tuple) else (size, size)
            if any(s not in (1, None) for s in sizes):
                return (
                    f"{type(module).__name__}(output_size={size}) at '{name}' computes its "
                    "kernel from the input size, which ONNX pooling fixes at export time"
                )
    return None


def export_onnx(
    net: torch.nn.Module,
    path: str | Path,
    input_size: Sequence[int],
    dynamic: bool = True,
    exporter: str = "dynamo",
    opset: int = 18,
    metadata: dict[str, str] | None = None,
    why_static: str = "dynamic=false was requested",
) -> dict:
    """Writes ``net`` (eval mode) to one ONNX file and says which shapes are dynamic.

    The batch is always dynamic. H and W are dynamic unless ``dynamic`` is
    false (``why_static`` says why), :func:`static_shape_reason` names an op
    that forbids it, the dynamic export fails, or the dynamic graph disagrees
    with PyTorch at a second, differently padded size (a probe that catches
    silent shape specialisation); then the graph is exported again with H, W fixed at ``input_size`` and the
    reason is returned.

    Returns:
        ``exporter``, ``opset``, ``dynamic`` (per axis), ``static_reason``,
        ``input``/``output`` shapes as the ONNX file declares them, ``export_s``.
    """
    if exporter not in EXPORTERS:
        raise ConfigError("exporter", exporter, "unknown ONNX exporter", allowed=EXPORTERS)
    import onnx

    path, net = Path(path), net.eval()
    example = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    reason = static_shape_reason(net) if dynamic else why_static
    if reason is None:
        try:
            _torch_export(net, path, example, exporter, opset, dynamic_hw=True)
            reason = _probe(net, path, input_size, getattr(net, "pad_multiple", 32))
        except Exception as err:  # any exporter failure: the static graph may still work
            reason = f"dynamic export failed: {type(err).__name__}: {str(err).splitlines()[0]}"
    if reason is not None:
        log.warning("exporting static H, W %s: %s", list(input_size), reason)
        _torch_export(net, path, example, exporter, opset, dynamic_hw=False)
    export_s = time.perf_counter() - start

    model = onnx.load(str(path))
    if reason is None:
        # forward() crops the logits to the input's H, W, but torch.export cannot prove
        # it through every decoder and names the output dims with a formula (e.g.
        # Min(height, 16*(...))); the probe verified the sizes match, so say so.
        for dim, name in zip(
            model.graph.output[0].type.tensor_type.shape.dim,
            ["batch", None, "height", "width"],
            strict=True,
        ):
            if name:
                dim.dim_param = name
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output]
    }
    return {
        "exporter": exporter,
        "opset": opset,
        "dynamic": {"batch": True, "height": reason is None, "width": reason is None},
        "static_reason": reason,
        "input": {"name": INPUT_NAME, "shape": shapes[INPUT_NAME]},
        "output": {"name": OUTPUT_NAME, "shape": shapes[OUTPUT_NAME]},
        "export_s": round(export_s, 2),
    }


def _torch_export(
    net: torch.nn.Module,
    path: Path,
    example: torch.Tensor,
    exporter: str,
    opset: int,
    dynamic_hw: bool,
) -> None:
    axes = {0: "batch", **({2: "height", 3: "width"} if dynamic_hw else {})}
    kwargs: dict = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    if exporter == "dynamo":
        dims = {
            i: torch.export.Dim(name, min=1 if i == 0 else getattr(net, "min_size", 32), max=8192)
            for i, name in axes.items()
        }
        # Single file: the weights stay inside (fine below ONNX's 2 GB protobuf limit).
        # verbose=False: no "[torch.onnx] ..." progress lines on stdout.
        kwargs |= {"dynamo": True, "dynamic_shapes": {"x": dims}, "external_data": False}
        kwargs["verbose"] = False
    else:
        kwargs |= {"dynamo": False, "dynamic_axes": {INPUT_NAME: axes, OUTPUT_NAME: axes}}
    # The exporter's passes log every step at INFO (hundreds of lines); failures still raise.
    chatty = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in chatty]
    try:
        for logger in chatty:
            logger.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), **kwargs)
    finally:
        for logger, level in zip(chatty, levels, strict=True):
            logger.setLevel(level)


def _probe(
    net: torch.nn.Module, path: Path, input_size: Sequence[int], pad_multiple: int
) -> str | None:
    """Runs the dynamic graph at batch 2 and a differently padded, odd size vs PyTorch."""
    h, w = (s + pad_multiple + 1 for s in input_size)
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = net(x)
    got = OnnxModel(path, threads=torch.get_num_threads()).logits(x)
    diff = (got - ref).abs().max().item()
    if diff > 1e-3 * max(1.0, ref.abs().max().item()):
        agree = (got.argmax(1) == ref.argmax(1)).float().mean().item() * 100
        return (
            f"the dynamic-shape graph disagrees with PyTorch at 2x3x{h}x{w} (max |logit "
            f"diff| {diff:.3g}, argmax agreement {agree:.2f}%), so it is exported at a "
            "static H/W (an op that fixed its shape, or one that computes differently in ONNX "
            "Runtime)"
        )
    return None
