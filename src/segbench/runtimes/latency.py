"""Latency, measured one way everywhere: warm-up, rounds of timed runs, median/p90, tagged rows.

:func:`time_callable` is the only timer in segbench; :func:`latency_table` times
any set of :class:`Runtime` (eager PyTorch, ONNX Runtime, TensorRT) at the same
inputs, and every latency figure (profiles, exports, sweeps, logger summaries)
comes from it. Each figure carries its spread over rounds, a ``noisy`` flag
(spread above :data:`NOISY_SPREAD`), the machine load it was measured under and
the heap (:mod:`segbench.runtimes.heap`: freed memory is kept in the process, so
eager PyTorch on the CPU is not timed paying page faults that ONNX Runtime's
arena never pays).
"""

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from segbench.runtimes.heap import steady_heap
from segbench.runtimes.pytorch import DTYPES

log = logging.getLogger(__name__)


#: A row is ``noisy`` when its round medians spread (max - min) over more than this share
#: of its median: on a quiet machine they agree within a few percent.
NOISY_SPREAD = 0.10


def time_callable(
    fn: Callable[[], object],
    warmup: int = 5,
    runs: int = 30,
    sync: Callable[[], None] | None = None,
    rounds: int = 1,
    noisy_threshold: float = NOISY_SPREAD,
) -> dict:
    """Times ``fn()`` after ``warmup`` calls: ``rounds`` rounds of ``runs`` calls each.

    The median is the median of the round medians; their spread says how far one
    round can be trusted (another process taking the CPU for a while moves a
    round, not every call of it). The machine's load is recorded with the figures.

    Args:
        fn: The call to time (inputs bound in).
        warmup: Untimed calls first (allocators, autotuning, caches).
        runs: Timed calls per round.
        sync: Called after each ``fn()`` before the clock stops (e.g.
            ``torch.cuda.synchronize`` for asynchronous devices).
        rounds: Rounds of ``runs`` calls (``timeit``'s repeat); the spread needs >= 2.
        noisy_threshold: ``noisy`` when ``rel_spread`` exceeds it.

    Returns:
        ``median_ms`` (median of round medians), ``p90_ms``, ``mean_ms``, ``min_ms``,
        ``max_ms``, ``iqr_ms`` (over every call), ``runs``, ``rounds``,
        ``round_medians_ms``, ``rel_spread`` ((max - min) of the round medians /
        median; None with one round), ``noisy``, ``noisy_threshold``, the load
        (:func:`machine_load`) and ``heap`` (:func:`segbench.runtimes.heap.steady_heap`).
    """
    heap = steady_heap()
    runs = max(1, int(runs))
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times, medians = [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(max(1, rounds)):
        batch = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            if sync:
                sync()
            batch.append((time.perf_counter() - start) * 1e3)
        medians.append(statistics.median(batch))
        times += batch
    cpu_cores = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return {
        **_summary(times, medians, noisy_threshold),
        **machine_load(cpu_cores),
        "heap": heap,
    }


def _summary(times: list[float], medians: list[float], threshold: float) -> dict:
    times = sorted(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    median = statistics.median(medians)
    rel = (max(medians) - min(medians)) / median if len(medians) > 1 and median > 0 else None
    return {
        "median_ms": median,
        "p90_ms": times[min(len(times) - 1, round(0.9 * (len(times) - 1)))],
        "mean_ms": statistics.fmean(times),
        "min_ms": times[0],
        "max_ms": times[-1],
        "iqr_ms": q3 - q1,
        "runs": len(times) // len(medians),
        "rounds": len(medians),
        "round_medians_ms": [round(m, 4) for m in medians],
        "rel_spread": rel,
        "noisy": rel is not None and rel > threshold,
        "noisy_threshold": threshold,
    }


def machine_load(cpu_cores_used: float | None = None) -> dict:
    """The load a latency figure was measured under.

    ``load_avg``: the 1/5/15-minute load averages (runnable threads, this process's
    included); ``cpus``: CPUs this process may run on; ``load_per_cpu``: 1-minute
    load / cpus (above 1, threads queue for a CPU); ``cpu_cores_used``: this
    process's CPU time / wall time while timing (about ``threads`` when it had
    the CPUs to itself, less when it waited for them or for a GPU).
    """
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "load_avg": load,
        "cpus": cpus,
        "load_per_cpu": round(load[0] / cpus, 2) if load and cpus else None,
        "cpu_cores_used": None if cpu_cores_used is None else round(cpu_cores_used, 2),
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
    runs: int = 10,
    miou: dict[str, float] | None = None,
    rounds: int = 3,
    noisy_threshold: float = NOISY_SPREAD,
) -> list[dict]:
    """Median/p90 latency of every runtime at every batch size, on random normalised input.

    Args:
        runs: Timed calls per round; ``rounds`` rounds (see :func:`time_callable`).

    Returns:
        One row per (runtime, batch size): the timings, spread, ``noisy`` flag and
        load of :func:`time_callable`, per-image median, the device tags, runtime,
        precision, input shape and the runtime's mIoU when ``miou`` has it.
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
                timing = time_callable(
                    lambda x=x, rt=runtime: rt.logits(x),
                    warmup,
                    runs,
                    sync,
                    rounds,
                    noisy_threshold,
                )
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
            _log_row(row)
            rows.append(row)
    return rows


def _log_row(row: dict) -> None:
    spread = "" if row["rel_spread"] is None else f", spread {100 * row['rel_spread']:.0f}%"
    log.log(
        logging.WARNING if row["noisy"] else logging.INFO,
        "%s %s batch %d: median %.1f ms, p90 %.1f ms%s%s (load %s per CPU)",
        row["runtime"],
        row["precision"],
        row["batch"],
        row["median_ms"],
        row["p90_ms"],
        spread,
        " NOISY" if row["noisy"] else "",
        row["load_per_cpu"],
    )


def format_table(rows: Sequence[dict]) -> str:
    """The rows as a markdown table (yolov5's benchmark layout, for segmentation)."""
    lines = [
        "| runtime | precision | device | batch | median ms | spread | p90 ms | ms/image "
        "| load/CPU | mIoU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        miou = f"{r['miou']:.4f}" if "miou" in r else "-"
        rel = r.get("rel_spread")
        spread = "-" if rel is None else f"{100 * rel:.0f}%" + (" noisy" if r.get("noisy") else "")
        lines.append(
            f"| {r['runtime']} | {r['precision']} | {r['device_type']} | {r['batch']} | "
            f"{r['median_ms']:.1f} | {spread} | {r['p90_ms']:.1f} | "
            f"{r['median_ms_per_image']:.1f} | {r.get('load_per_cpu', '-')} | {miou} |"
        )
    return "\n".join(lines)
