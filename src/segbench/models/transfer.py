"""Transfer learning: every matching tensor of a previous segbench run into a new network."""

import logging
from pathlib import Path

import torch
from torch import nn

from segbench.errors import ConfigError
from segbench.models.checkpoint import network_state, read_checkpoint

log = logging.getLogger(__name__)


def load_matching(net: nn.Module, ckpt_path: str | Path) -> dict[str, list[str]]:
    """Loads the tensors of a segbench checkpoint whose name and shape match ``net``'s.

    Typical uses: a Cityscapes model fine-tuned on CamVid (the classifier has a
    new class count, so its tensors are skipped and keep their initialisation),
    or ERFNet's second stage started from its encoder-only run.

    Args:
        net: The network to fill (already initialised).
        ckpt_path: A checkpoint written by segbench's ``train.py``.

    Returns:
        ``loaded``, ``skipped`` (same name, other shape), ``missing`` (in ``net``,
        not in the checkpoint) and ``unused`` (in the checkpoint, not in ``net``):
        lists of tensor names.

    Raises:
        DataError: the file is missing or not a segbench checkpoint.
        ConfigError: no tensor of the checkpoint matches ``net``.
    """
    ckpt = read_checkpoint(ckpt_path)
    source = network_state(ckpt)
    target = net.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "skipped": [], "missing": [], "unused": []}
    matched: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        if name not in source:
            report["missing"].append(name)
        elif source[name].shape != tensor.shape:
            report["skipped"].append(name)
            log.info(
                "init.checkpoint: skipped %s (checkpoint %s, network %s)",
                name,
                tuple(source[name].shape),
                tuple(tensor.shape),
            )
        else:
            matched[name] = source[name]
    report["unused"] = [name for name in source if name not in target]
    if not matched:
        other = ckpt["hyper_parameters"]["net"].get("_target_")
        raise ConfigError(
            "init.checkpoint",
            str(ckpt_path),
            f"none of its {len(source)} tensors ({other}) match this network",
            fix="give a checkpoint of the same model/backbone, or init.checkpoint=null",
        )
    net.load_state_dict(matched, strict=False)
    report["loaded"] = list(matched)
    log.info(
        "init.checkpoint %s: %d tensors loaded, %d skipped (shape mismatch), %d missing "
        "(kept initialised), %d unused",
        ckpt_path,
        len(report["loaded"]),
        len(report["skipped"]),
        len(report["missing"]),
        len(report["unused"]),
    )
    if report["missing"]:
        log.info("init.checkpoint: missing %s", _short(report["missing"]))
    return report


def _short(names: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(names) - limit})" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
