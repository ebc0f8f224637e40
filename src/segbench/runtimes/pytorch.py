"""PyTorch as a runtime: eager (the reference every other runtime is checked against) and
the fast paths a GPU user reaches for when TensorRT is not there.

- ``channels_last``: eager fp16 with weights and input in NHWC, the layout tensor
  cores read directly (``Module.to(memory_format=torch.channels_last)``).
- ``cuda_graphs``: that forward captured once per input shape in a
  ``torch.cuda.CUDAGraph`` with static input/output buffers and replayed, so a
  launch-bound batch-1 forward costs one graph launch.
- ``torch_compile``: ``torch.compile`` with inductor; ``reduce-overhead`` on CUDA
  (inductor's kernels replayed through CUDA graphs), ``default`` on the CPU.
"""

from collections.abc import Callable

import torch

from segbench.errors import ConfigError

#: Maps a normalised image batch ``(N, 3, H, W)`` to label maps ``(N, H, W)``.
Predictor = Callable[[torch.Tensor], torch.Tensor]
Logits = Callable[[torch.Tensor], torch.Tensor]

#: Precision names and their torch types.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: The fast paths of eager PyTorch (rows of their own; see segbench.runtimes.RUNTIMES).
FAST_PATHS = ("channels_last", "cuda_graphs", "torch_compile")
#: torch.compile's mode per device type when none is given.
COMPILE_MODES = {"cuda": "reduce-overhead", "cpu": "default"}
_COMPILE_MODE_NAMES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def torch_device(device: str | torch.device, key: str = "device") -> torch.device:
    """``device`` as a torch device that exists on this machine.

    Raises:
        ConfigError: an unknown device name, or CUDA (MPS) asked for where there is none,
            naming ``key`` and saying why.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            key, device, f"not a torch device ({err})", allowed=["cpu", "cuda", "cuda:0"]
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        raise ConfigError(
            key,
            device,
            f"CUDA is not available on this machine (torch {torch.__version__}, "
            f"CUDA build {built}, no GPU visible)",
            fix=f"use {key}=cpu, or run on a machine with an NVIDIA GPU and a CUDA build of torch",
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            key, device, f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(key, device, "MPS is not available on this machine", fix=f"{key}=cpu")
    return dev


def torch_predictor(net: torch.nn.Module, device: torch.device | str) -> Predictor:
    """A predictor running ``net`` in eval mode on ``device``."""
    device = torch.device(device)
    net.eval().to(device)

    @torch.inference_mode()
    def predict(images: torch.Tensor) -> torch.Tensor:
        return net(images.to(device)).argmax(1)

    return predict


def eager_logits(
    net: torch.nn.Module,
    device: str | torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
) -> Logits:
    """``images -> logits`` of ``net`` in eval mode on ``device`` at ``precision``.

    Inputs are moved and cast to the network's device, type and (with
    ``channels_last``) memory format.
    """
    dtype = DTYPES[precision]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.eval().to(device=device, dtype=dtype, memory_format=fmt)

    def logits(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(images.to(device=device, dtype=dtype, memory_format=fmt))

    return logits


def require_cuda(runtime: str, device: str | torch.device) -> None:
    """Raises ConfigError unless ``device`` is CUDA and one is visible."""
    if torch.device(device).type != "cuda":
        raise ConfigError(
            "device", str(device), f"{runtime} runs on CUDA only", fix="use device=cuda"
        )
    if not torch.cuda.is_available():
        raise ConfigError("device", str(device), f"{runtime} needs a CUDA GPU and none is visible")


class CudaGraphLogits:
    """``images -> logits`` replaying a CUDA graph of ``net``'s forward (one per input shape).

    The network runs in ``precision`` and channels_last. Each new input shape is
    warmed up on a side stream and captured (``torch.cuda.graph``); a call copies
    the images into the static input buffer and replays. The returned logits are
    the graph's static output buffer: valid until the next call with that shape.

    Args:
        net: The network (moved to ``device``, cast, put in channels_last).
        device: A CUDA device.
        precision: ``fp16`` (default), ``bf16`` or ``fp32``.
        warmup: Eager runs before each capture (cuDNN autotuning, allocator).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        device: str | torch.device = "cuda",
        precision: str = "fp16",
        warmup: int = 3,
    ) -> None:
        require_cuda("cuda_graphs", device)
        self.device, self.dtype, self.warmup = torch.device(device), DTYPES[precision], warmup
        self.net = net.eval().to(
            device=self.device, dtype=self.dtype, memory_format=torch.channels_last
        )
        self.graphs: dict[tuple[int, ...], tuple] = {}

    def _capture(self, shape: tuple[int, ...]) -> tuple:
        static_in = torch.zeros(shape, device=self.device, dtype=self.dtype).contiguous(
            memory_format=torch.channels_last
        )
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.net(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.net(static_in)
        torch.cuda.synchronize(self.device)
        return graph, static_in, static_out

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            shape = tuple(images.shape)
            if shape not in self.graphs:
                self.graphs[shape] = self._capture(shape)
            graph, static_in, static_out = self.graphs[shape]
            static_in.copy_(images)  # casts to the device, type and layout of the buffer
            graph.replay()
            return static_out


def compiled_logits(
    net: torch.nn.Module,
    device: str | torch.device,
    precision: str | None = None,
    mode: str | None = None,
) -> Logits:
    """``images -> logits`` of ``torch.compile(net)`` (inductor, static shapes).

    On CUDA the network runs in fp16 channels_last; on the CPU in fp32. The first
    call of each input shape compiles (minutes for a large network on a few CPU
    cores); time it apart from the steady state.

    Args:
        mode: torch.compile's mode; ``None``: :data:`COMPILE_MODES` for the device.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        require_cuda("torch_compile", device)
    mode = mode or COMPILE_MODES[device.type]
    if mode not in _COMPILE_MODE_NAMES:
        raise ConfigError(
            "compile_mode", mode, "unknown torch.compile mode", allowed=_COMPILE_MODE_NAMES
        )
    dtype = DTYPES[precision or ("fp16" if cuda else "fp32")]
    fmt = torch.channels_last if cuda else torch.contiguous_format
    net = net.eval().to(device=device, dtype=dtype, memory_format=fmt)
    compiled = torch.compile(net, mode=mode, dynamic=False)
    graphs = cuda and mode in ("reduce-overhead", "max-autotune")

    def logits(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if graphs:  # each call is a new step: earlier outputs may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            return compiled(images.to(device=device, dtype=dtype, memory_format=fmt))

    logits.mode = mode
    return logits


def fast_path_logits(
    runtime: str, net: torch.nn.Module, device: str | torch.device, compile_mode: str | None = None
) -> Logits:
    """The ``images -> logits`` callable of one of :data:`FAST_PATHS` on ``device``.

    Raises:
        ConfigError: an unknown fast path, or a CUDA-only one without CUDA.
    """
    if runtime == "channels_last":
        require_cuda(runtime, device)
        return eager_logits(net, device, "fp16", channels_last=True)
    if runtime == "cuda_graphs":
        return CudaGraphLogits(net, device, "fp16")
    if runtime == "torch_compile":
        return compiled_logits(net, device, mode=compile_mode)
    raise ConfigError("runtime", runtime, "not a PyTorch fast path", allowed=FAST_PATHS)
