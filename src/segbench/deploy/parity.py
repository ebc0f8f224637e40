"""Parity: does an exported model predict what the PyTorch network predicts?"""

import torch

from segbench.errors import SegbenchError
from segbench.runtimes.parity import agreement


class ParityError(SegbenchError):
    """The exported model's predictions differ from PyTorch's more than allowed."""


def parity(
    net: torch.nn.Module,
    model,
    images: list[torch.Tensor],
    batch_size: int,
    device: torch.device,
    min_agreement: float,
) -> dict:
    """Compares ``model.logits`` with PyTorch on ``images`` (normalised ``(3, H, W)`` each).

    Returns:
        ``images``, ``max_abs_diff`` and ``mean_abs_diff`` of the logits,
        ``agreement_pct`` (pixels with the same argmax), ``min_agreement_pct``, ``passed``.
    """
    batches = (torch.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size))
    return agreement(lambda x: net(x.to(device)), model.logits, batches, min_agreement)


def check_parity(report: dict, split: str, where: str) -> None:
    """Raises :class:`ParityError` for every runtime of ``report["parity"]`` that failed.

    Args:
        report: The export report (``parity`` per runtime, each with its threshold).
        split: The split the parity images came from (for the message).
        where: The file the numbers are in.
    """
    failed = {name: p for name, p in report["parity"].items() if not p["passed"]}
    if failed:
        raise ParityError(
            "; ".join(
                f"{name}: argmax agreement {p['agreement_pct']:.3f}% < "
                f"{p['min_agreement_pct']}% (max |logit diff| {p['max_abs_diff']:.3g}) on "
                f"{p['images']} {split} images; see {where}"
                for name, p in failed.items()
            )
        )
