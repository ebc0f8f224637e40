"""Parity: does an exported model predict what the PyTorch network predicts?"""

import torch

from segbench.errors import SegbenchError


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
        ``agreement_pct`` (pixels with the same argmax), ``passed``.
    """
    max_diff, sum_diff, same, total = 0.0, 0.0, 0, 0
    for i in range(0, len(images), batch_size):
        batch = torch.stack(images[i : i + batch_size])
        with torch.inference_mode():
            ref = net(batch.to(device)).float().cpu()
        got = model.logits(batch).float().cpu()
        diff = (got - ref).abs()
        max_diff, sum_diff = max(max_diff, diff.max().item()), sum_diff + diff.sum().item()
        same += (got.argmax(1) == ref.argmax(1)).sum().item()
        total += ref[:, 0].numel()
    agreement = 100.0 * same / max(total, 1)
    return {
        "images": len(images),
        "max_abs_diff": max_diff,
        "mean_abs_diff": sum_diff / max(total * net.num_classes, 1),
        "agreement_pct": agreement,
        "min_agreement_pct": min_agreement,
        "passed": agreement >= min_agreement,
    }


def check_parity(report: dict, split: str, min_agreement: float, where: str) -> None:
    """Raises :class:`ParityError` for every runtime of ``report["parity"]`` that failed.

    Args:
        report: The export report (``parity`` per runtime).
        split: The split the parity images came from (for the message).
        min_agreement: The threshold that was applied (%).
        where: The file the numbers are in.
    """
    failed = {name: p for name, p in report["parity"].items() if not p["passed"]}
    if failed:
        raise ParityError(
            "; ".join(
                f"{name}: argmax agreement {p['agreement_pct']:.3f}% < parity_min_agreement="
                f"{min_agreement}% (max |logit diff| {p['max_abs_diff']:.3g}) on "
                f"{p['images']} {split} images; see {where}"
                for name, p in failed.items()
            )
        )
