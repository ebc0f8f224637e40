"""TensorRT engines from segbench's ONNX: build (fp32/fp16/int8), calibrate, run.

Written against TensorRT's documented Python API (8.6 and 10.x: ``OnnxParser``,
``IBuilderConfig.set_memory_pool_limit``, optimisation profiles, timing cache,
``IInt8EntropyCalibrator2``, name-based I/O with ``execute_async_v3``).
``tensorrt`` is imported only when an engine is built or run, so everything
else works where it cannot be installed.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from segbench.errors import ConfigError, DataError, SegbenchError
from segbench.runtimes.calibration import CalibrationBatches

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


def import_tensorrt():
    """Returns the ``tensorrt`` module, or raises an error saying how to get it.

    Raises:
        ConfigError: ``tensorrt`` is not installed or no CUDA GPU is visible.
    """
    try:
        import tensorrt as trt
    except ImportError:
        raise ConfigError(
            "format",
            "tensorrt",
            "needs NVIDIA TensorRT's Python package `tensorrt`, which is not installed here",
            fix="on a machine with an NVIDIA GPU: pip install -e '.[trt]' (or the tensorrt wheel "
            "matching your CUDA / JetPack); elsewhere use format=onnx and "
            "evaluate.py runtime=onnxruntime",
        ) from None
    if not torch.cuda.is_available():
        raise ConfigError(
            "format",
            "tensorrt",
            "TensorRT needs a CUDA GPU and none is visible",
            fix="run on the target GPU, or use format=onnx",
        )
    return trt


def make_calibrator(trt, batches: CalibrationBatches, cache_path: str | Path, device: str = "cuda"):
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` and keeping a calibration cache.

    A cache that exists is used instead of calibrating again (delete it after
    changing the model or the data). ``trt`` is the imported ``tensorrt`` module.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.batches = iter(batches)
            self.buffer = torch.empty(batches.shape, dtype=torch.float32, device=device)

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.buffer.copy_(torch.from_numpy(batch))
            return [self.buffer.data_ptr()]

        def read_calibration_cache(self) -> bytes | None:
            if self.cache_path.is_file():
                log.info("INT8 calibration cache %s", self.cache_path)
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            self.cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str = "fp32",
    min_shape: Sequence[int] = (1, 3, 32, 32),
    opt_shape: Sequence[int] = (1, 3, 360, 480),
    max_shape: Sequence[int] = (8, 3, 1024, 2048),
    workspace_gib: float = 4.0,
    timing_cache: str | Path | None = None,
    calibration: CalibrationBatches | None = None,
    calibration_cache: str | Path | None = None,
) -> Path:
    """Builds a serialized TensorRT engine from a segbench ONNX file.

    Args:
        onnx_path: The ONNX model (input ``images``, output ``logits``).
        engine_path: Where the engine goes.
        precision: ``fp32``, ``fp16`` or ``int8`` (INT8 with FP16 fallback layers).
        min_shape, opt_shape, max_shape: The optimisation profile of the input
            ``(N, 3, H, W)``; equal H/W for a static-shape ONNX.
        workspace_gib: Workspace memory pool limit.
        timing_cache: Reused and updated across builds (``None``: no cache).
        calibration: INT8 calibration batches (required for ``int8``).
        calibration_cache: The calibrator's cache file.

    Raises:
        ConfigError: bad precision, TensorRT missing, or int8 without calibration data.
        SegbenchError: the ONNX parser or the builder failed (their messages included).
    """
    if precision not in PRECISIONS:
        raise ConfigError("precision", precision, "unknown precision", allowed=PRECISIONS)
    if precision == "int8" and calibration is None:
        raise ConfigError(
            "precision",
            precision,
            "INT8 needs calibration images",
            fix="set tensorrt.calibration_images > 0",
        )
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _parse_onnx(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(
        network.get_input(0).name, tuple(min_shape), tuple(opt_shape), tuple(max_shape)
    )
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        cache_file = calibration_cache or Path(engine_path).with_suffix(".calib")
        _set_calibration(trt, builder, config, network, calibration, cache_file)
    cache = None
    if timing_cache:
        timing_cache = Path(timing_cache)
        cache = config.create_timing_cache(
            timing_cache.read_bytes() if timing_cache.is_file() else b""
        )
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SegbenchError(
            f"{onnx_path}: TensorRT could not build a {precision} engine "
            "(see the TensorRT log above)"
        )
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    if cache is not None:
        timing_cache.write_bytes(bytes(cache.serialize()))
    log.info("TensorRT %s %s engine -> %s", trt.__version__, precision, engine_path)
    return engine_path


def _parse_onnx(trt, builder, logger, onnx_path: str | Path):
    """The TensorRT network of an ONNX file, or SegbenchError with the parser's messages."""
    # TensorRT 10 networks are always explicit-batch; 8.x needs the flag.
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SegbenchError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    return network


def _set_calibration(trt, builder, config, network, calibration, cache_file) -> None:
    """INT8 with the entropy calibrator; dynamic shapes calibrate at the batches' one shape."""
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = make_calibrator(trt, calibration, cache_file)
    calib_profile = builder.create_optimization_profile()
    calib_profile.set_shape(
        network.get_input(0).name, calibration.shape, calibration.shape, calibration.shape
    )
    config.set_calibration_profile(calib_profile)


class TensorRTModel:
    """A serialized TensorRT engine as a segbench predictor.

    Calling it maps normalised images ``(N, 3, H, W)`` to label maps ``(N, H, W)``;
    :meth:`logits` returns ``(N, num_classes, H, W)``. Buffers are torch CUDA
    tensors, run on torch's current stream with ``execute_async_v3``.

    Args:
        path: The ``.engine`` file written by :func:`build_engine`.
    """

    runtime = "tensorrt"

    def __init__(self, path: str | Path) -> None:
        trt = import_tensorrt()
        path = Path(path)
        if not path.is_file():
            raise DataError(
                path,
                "TensorRT engine not found",
                fix="build one with `python export.py ckpt_path=... format=tensorrt`",
            )
        self.path = path
        self.runtime_ = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime_.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise DataError(
                path,
                "TensorRT cannot deserialize this engine (built with another "
                "TensorRT version or GPU?)",
                fix="rebuild it on this machine",
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        )
        self.output_name = next(n for n in names if n != self.input_name)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)`` (float32, on the GPU)."""
        images = images.to("cuda", torch.float32).contiguous()
        if not self.context.set_input_shape(self.input_name, tuple(images.shape)):
            raise ConfigError(
                "input shape",
                list(images.shape),
                f"is outside the optimisation profile of {self.path}",
                fix="rebuild with tensorrt.max_batch / max_size covering it",
            )
        out = torch.empty(
            tuple(self.context.get_tensor_shape(self.output_name)),
            dtype=torch.float32,
            device="cuda",
        )
        self.context.set_tensor_address(self.input_name, images.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise SegbenchError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        return out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).argmax(1)
