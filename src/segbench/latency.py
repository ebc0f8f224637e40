"""Timing a callable the way latency figures are reported: warm-up, N runs, median/p90."""

import platform
import statistics
import time
from collections.abc import Callable

import torch


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
