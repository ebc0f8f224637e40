"""Real-time budget: does a network's compute fit a camera setup on a device?

A network needs ``GOP/frame x cameras x fps`` operations per second (1 MAC = 2
operations, so GOP/frame = GFLOPs of one frame at the deployment resolution).
A device offers ``GOP/s x utilization`` per precision (``conf/budget/device/*.yaml``).
The per-frame budget is ``device GOP/s x utilization / (cameras x fps)`` and the
headroom is ``(budget - GOP/frame) / budget``. Where a latency was measured on
the device itself, the measured frame rate is checked against the requirement too.
"""

import logging
from collections.abc import Iterable, Mapping

import torch

from segbench.errors import ConfigError
from segbench.runtimes.latency import time_callable

log = logging.getLogger(__name__)

#: A device's ``gops`` entry whose value is measured on this machine when needed.
MEASURED = "measured"
_measured_gops: dict[int, float] = {}


def frame_budget(device_gops: float, cameras: int, fps: float, utilization: float = 1.0) -> float:
    """GOP a single frame may cost: ``device_gops * utilization / (cameras * fps)``."""
    if cameras <= 0 or fps <= 0:
        raise ConfigError(
            "budget.scenarios.*",
            {"cameras": cameras, "fps": fps},
            "cameras and fps must be positive",
        )
    return device_gops * utilization / (cameras * fps)


def measure_cpu_gops(size: int = 1024, runs: int = 5) -> float:
    """fp32 GOP/s of this CPU on a ``size``-square matrix multiply (best of ``runs``)."""
    threads = torch.get_num_threads()
    if threads not in _measured_gops:
        a, b = torch.randn(size, size), torch.randn(size, size)
        best_ms = time_callable(lambda: torch.mm(a, b), warmup=1, runs=runs)["min_ms"]
        _measured_gops[threads] = 2 * size**3 / (best_ms / 1e3) / 1e9
        log.info(
            "local CPU: %.1f fp32 GOP/s (%d threads, %dx%d matmul)",
            _measured_gops[threads],
            threads,
            size,
            size,
        )
    return _measured_gops[threads]


def check_budget(
    gop_per_frame: Mapping[tuple[int, int], float] | float,
    devices: Mapping[str, Mapping],
    scenarios: Mapping[str, Mapping],
    utilization: float | None = None,
    latencies: Iterable[Mapping] = (),
) -> list[dict]:
    """One verdict per scenario x device x precision.

    Args:
        gop_per_frame: GOP of one frame, or a mapping ``(H, W) -> GOP`` holding
            every scenario's deployment resolution (``resolution: null`` scenarios
            use the key ``None``).
        devices: ``conf/budget/device`` entries by key: ``name``, ``gops`` (precision ->
            GOP/s, or ``"measured"``), ``utilization``, ``match``.
        scenarios: ``conf/scenario`` entries by key: ``cameras``, ``fps``, ``resolution``.
        utilization: Overrides every device's own utilization.
        latencies: Measured latency rows (``device``, ``device_type``,
            ``precision``, ``batch``, ``median_ms``); a batch-1 row whose device
            matches a device's ``match`` gives that device's measured fps.

    Returns:
        Rows with ``scenario``, ``cameras``, ``fps``, ``required_fps``, ``device``,
        ``device_name``, ``precision``, ``device_gops``, ``utilization``,
        ``budget_gop``, ``gop_per_frame``, ``fits``, ``headroom_pct`` and, where a
        latency was measured there, ``measured_fps`` and ``measured_fits``.
    """
    latencies = list(latencies)
    rows = []
    for s_key, scenario in scenarios.items():
        resolution = scenario.get("resolution")
        gop = _gop_at(gop_per_frame, resolution, s_key)
        for d_key, device in devices.items():
            util = utilization if utilization is not None else device.get("utilization", 1.0)
            for precision, gops in (device.get("gops") or {}).items():
                if gops == MEASURED:
                    gops = measure_cpu_gops()
                elif not isinstance(gops, int | float):
                    raise ConfigError(
                        f"budget.devices.{d_key}.gops.{precision}",
                        gops,
                        f"is neither a number of GOP/s nor '{MEASURED}'",
                    )
                budget = frame_budget(gops, scenario["cameras"], scenario["fps"], util)
                required_fps = scenario["cameras"] * scenario["fps"]
                row = {
                    "scenario": s_key,
                    "cameras": scenario["cameras"],
                    "fps": scenario["fps"],
                    "required_fps": required_fps,
                    "resolution": resolution,
                    "device": d_key,
                    "device_name": device.get("name", d_key),
                    "precision": precision,
                    "device_gops": gops,
                    "utilization": util,
                    "budget_gop": budget,
                    "gop_per_frame": gop,
                    "fits": gop <= budget,
                    "headroom_pct": 100 * (budget - gop) / budget,
                }
                measured = _measured_fps(latencies, device.get("match"), precision, resolution)
                if measured is not None:
                    row["measured_fps"] = measured
                    row["measured_fits"] = measured >= required_fps
                rows.append(row)
    return rows


def _gop_at(gop_per_frame, resolution, scenario: str) -> float:
    if isinstance(gop_per_frame, int | float):
        return float(gop_per_frame)
    key = tuple(resolution) if resolution else None
    if key not in gop_per_frame:
        raise ConfigError(
            f"budget.scenarios.{scenario}.resolution",
            resolution,
            "no GOP/frame was counted at this resolution",
            allowed=[str(k) for k in gop_per_frame],
        )
    return gop_per_frame[key]


def _measured_fps(
    latencies: list[Mapping], match: str | None, precision: str, resolution
) -> float | None:
    """Frames/s of the fastest matching batch-1 row (None where nothing matches)."""
    if not match:
        return None
    found = [
        r
        for r in latencies
        if r.get("batch") == 1
        and r.get("precision") == precision
        and (
            match.lower() in str(r.get("device", "")).lower()
            or match.lower() == str(r.get("device_type", "")).lower()
        )
        and (not resolution or list(r.get("input_size") or []) == list(resolution))
    ]
    if not found:
        return None
    return 1000.0 / min(r["median_ms"] for r in found)
