"""Latency, measured one way everywhere: warm-up, N timed runs, median/p90, tagged rows.

:func:`time_callable` is the only timer in segbench; :func:`latency_table` times
any set of :class:`Runtime` (eager PyTorch, ONNX Runtime, TensorRT) at the same
inputs, and every latency figure (profiles, exports, sweeps, logger summaries)
comes from it.
"""

import logging
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from segbench.runtimes.pytorch import DTYPES

log = logging.getLogger(__name__)


def time_callable(
    fn: Callable[[], object],
    warmup: int = 5,
    runs: int = 30,
    sync: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Times ``fn()`` after ``warmup`` calls.

    Args:
        fn: The call to time (inputs bound in).
        warmup: Untimed calls first (allocators, autotuning, caches).
        runs: Timed calls.
        sync: Called after each ``fn()`` before the clock stops (e.g.
            ``torch.cuda.synchronize`` for asynchronous devices).

    Returns:
        ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms``, ``max_ms``, ``runs``.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return {
        "median_ms": statistics.median(times),
        "p90_ms": p90,
        "mean_ms": statistics.fmean(times),
        "min_ms": times[0],
        "max_ms": times[-1],
        "runs": runs,
    }


def device_tags(device: str | torch.device = "cpu") -> dict[str, object]:
    """Tags a latency figure must carry: device name, threads, versions."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": name,
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Runtime:
    """One way of running the network, with the tags its latency figures carry.

    Args:
        name: ``pytorch``, ``onnxruntime``, ``tensorrt``.
        logits: Maps normalised images ``(N, 3, H, W)`` to logits.
        device: Where it runs (``cpu``, ``cuda``).
        precision: ``fp32``, ``fp16``, ``int8``.
        **tags: More tags (ONNX Runtime providers, threads).
    """

    def __init__(
        self,
        name: str,
        logits: Callable[[torch.Tensor], torch.Tensor],
        device: str = "cpu",
        precision: str = "fp32",
        **tags,
    ) -> None:
        self.name, self.logits, self.device, self.precision = name, logits, device, precision
        self.tags = tags


def latency_table(
    runtimes: Sequence[Runtime],
    input_size: Sequence[int],
    batch_sizes: Sequence[int] = (1, 4),
    warmup: int = 3,
    runs: int = 20,
    miou: dict[str, float] | None = None,
) -> list[dict]:
    """Median/p90 latency of every runtime at every batch size, on random normalised input.

    Returns:
        One row per (runtime, batch size): the timings of
        :func:`time_callable`, per-image median, the device tags,
        runtime, precision, input shape and the runtime's mIoU when ``miou`` has it.
    """
    rows = []
    for runtime in runtimes:
        cuda = torch.device(runtime.device).type == "cuda"
        sync = torch.cuda.synchronize if cuda else None
        for batch in batch_sizes:
            x = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(0))
            if runtime.name == "pytorch" or cuda:
                # Eager runs get their input on the device and in the precision beforehand.
                dtype = DTYPES.get(runtime.precision, torch.float32)
                x = x.to(runtime.device, dtype if runtime.name == "pytorch" else torch.float32)
            with torch.inference_mode():
                timing = time_callable(lambda x=x, rt=runtime: rt.logits(x), warmup, runs, sync)
            row = {
                "runtime": runtime.name,
                "precision": runtime.precision,
                "batch": batch,
                "input": [batch, 3, *input_size],
                "input_size": list(input_size),
                **timing,
                "median_ms_per_image": timing["median_ms"] / batch,
                "fps": 1000.0 * batch / timing["median_ms"],
                **device_tags(runtime.device),
                **runtime.tags,
            }
            if miou and runtime.name in miou:
                row["miou"] = miou[runtime.name]
            log.info(
                "%s %s batch %d: median %.1f ms, p90 %.1f ms",
                runtime.name,
                runtime.precision,
                batch,
                timing["median_ms"],
                timing["p90_ms"],
            )
            rows.append(row)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """The rows as a markdown table (yolov5's benchmark layout, for segmentation)."""
    lines = [
        "| runtime | precision | device | batch | median ms | p90 ms | ms/image | mIoU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        miou = f"{r['miou']:.4f}" if "miou" in r else "-"
        lines.append(
            f"| {r['runtime']} | {r['precision']} | {r['device_type']} | {r['batch']} | "
            f"{r['median_ms']:.1f} | {r['p90_ms']:.1f} | "
            f"{r['median_ms_per_image']:.1f} | {miou} |"
        )
    return "\n".join(lines)
