"""Latency per runtime: the same network eager, in ONNX Runtime and in TensorRT, side by side."""

import logging
from collections.abc import Callable, Sequence

import torch

from segbench.latency import device_tags, time_callable

log = logging.getLogger(__name__)


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
        :func:`segbench.latency.time_callable`, per-image median, the device tags,
        runtime, precision, input shape and the runtime's mIoU when ``miou`` has it.
    """
    rows = []
    for runtime in runtimes:
        cuda = torch.device(runtime.device).type == "cuda"
        sync = torch.cuda.synchronize if cuda else None
        for batch in batch_sizes:
            x = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(0))
            if runtime.name == "pytorch" or cuda:
                x = x.to(runtime.device)
            with torch.inference_mode():
                timing = time_callable(lambda x=x, rt=runtime: rt.logits(x), warmup, runs, sync)
            row = {
                "runtime": runtime.name,
                "precision": runtime.precision,
                "batch": batch,
                "input": [batch, 3, *input_size],
                **timing,
                "median_ms_per_image": timing["median_ms"] / batch,
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
