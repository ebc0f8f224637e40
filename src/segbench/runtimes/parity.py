"""Parity: does a runtime predict what eager fp32 PyTorch predicts on the same images?

Used by ``export.py`` (every exported model, on real frames of the scored split)
and by the profile's latency rows (a runtime's latency counts only after it
agrees with eager fp32). Frames without a dataset are rendered street scenes.
"""

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segbench.data.scenes import render_scene

Logits = Callable[[torch.Tensor], torch.Tensor]

#: Least argmax agreement (% of pixels) with eager fp32 per precision. fp32 runtimes
#: differ by rounding only; fp16 moves near-tie pixels; INT8 changes more of them.
MIN_AGREEMENT = {"fp32": 99.9, "fp16": 99.0, "bf16": 98.0, "int8": 95.0}
#: ImageNet statistics: what every dataset yaml of segbench normalises with.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def agreement(
    reference: Logits, candidate: Logits, batches: Iterable[torch.Tensor], min_agreement: float
) -> dict:
    """Compares ``candidate``'s logits with ``reference``'s on every batch.

    Returns:
        ``images``, ``max_abs_diff`` and ``mean_abs_diff`` of the logits,
        ``agreement_pct`` (pixels with the same argmax), ``min_agreement_pct``,
        ``passed``.
    """
    max_diff, sum_diff, same, total, images, values = 0.0, 0.0, 0, 0, 0, 0
    for batch in batches:
        with torch.inference_mode():
            ref = reference(batch).float().cpu()
            got = candidate(batch).float().cpu()
        diff = (got - ref).abs()
        max_diff, sum_diff = max(max_diff, diff.max().item()), sum_diff + diff.sum().item()
        same += (got.argmax(1) == ref.argmax(1)).sum().item()
        total, images, values = total + ref[:, 0].numel(), images + len(batch), values + ref.numel()
    pct = 100.0 * same / max(total, 1)
    return {
        "images": images,
        "max_abs_diff": max_diff,
        "mean_abs_diff": sum_diff / max(values, 1),
        "agreement_pct": pct,
        "min_agreement_pct": min_agreement,
        "passed": bool(total) and pct >= min_agreement,
    }


def street_frames(
    count: int,
    size: Sequence[int],
    seed: int = 0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> list[torch.Tensor]:
    """``count`` rendered street scenes at ``size``, normalised ``(3, H, W)`` float32.

    Stand-ins for real frames where none are given (profiling a config without
    data): in-distribution for street networks, unlike random noise, so INT8
    ranges and argmax agreement measured on them mean something.
    """
    rng = np.random.default_rng(seed)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    frames = []
    for _ in range(count):
        image, _ = render_scene(rng, int(size[0]), int(size[1]))
        frames.append((torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 - m) / s)
    return frames


def fit_batch(frames: Sequence[torch.Tensor], batch: int, size: Sequence[int]) -> torch.Tensor:
    """A ``(batch, 3, H, W)`` tensor of ``frames`` (cycled), each resized to ``size`` if needed."""
    out = []
    for i in range(batch):
        frame = frames[i % len(frames)].float()
        if tuple(frame.shape[-2:]) != tuple(size):
            frame = F.interpolate(
                frame[None], size=tuple(size), mode="bilinear", align_corners=False
            )[0]
        out.append(frame)
    return torch.stack(out)
