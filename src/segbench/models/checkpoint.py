"""Opening segbench checkpoints: tensors and plain values only, never code.

A checkpoint is read with ``torch.load(weights_only=True)``, which refuses any
pickled object other than tensors and plain containers, so a crafted file cannot
run code when it is opened. The network is then rebuilt from the stored config
by :func:`segbench.models.build.build_network` with ``trusted=False``: only
classes of ``segbench.models`` are instantiated. (The stored dataset config is
checked the same way by :func:`segbench.data.datamodule.data_from_config`.)
"""

import pickle
from pathlib import Path

import torch

from segbench.errors import DataError
from segbench.models.base import SegmentationNetwork
from segbench.models.build import build_network

CHECKPOINT_FIX = "pass ckpt_path=<run dir>/checkpoints/best.ckpt of a segbench run"


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Loads a segbench checkpoint safely, or raises DataError naming the file and the fix.

    Raises:
        DataError: missing file, unreadable file, a file holding pickled objects
            (refused: opening it could run code), or not a segbench checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found", fix=CHECKPOINT_FIX)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            path,
            "refused: the file holds pickled objects other than tensors and plain values, "
            f"and opening it could run code ({first[:200]})",
            fix="only open checkpoints written by segbench's train.py; if you trust this file, "
            "re-save its state_dict and hyper_parameters with torch.save",
        ) from None
    except Exception as err:
        raise DataError(
            path,
            f"cannot be read as a checkpoint ({type(err).__name__}: {str(err)[:200]})",
            fix=CHECKPOINT_FIX,
        ) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or not isinstance(hparams.get("net"), dict):
        raise DataError(
            path,
            "is not a segbench checkpoint (no network config in it)",
            fix="pass a checkpoint written by segbench's train.py",
        )
    if not isinstance(ckpt.get("state_dict"), dict):
        raise DataError(path, "is not a segbench checkpoint (no state_dict)", fix=CHECKPOINT_FIX)
    return ckpt


def network_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The network's tensors of a checkpoint (the LightningModule's ``net.`` prefix removed)."""
    return {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }


def load_network(
    ckpt_path: str | Path, map_location: str = "cpu"
) -> tuple[SegmentationNetwork, dict]:
    """Rebuilds the trained network of a segbench checkpoint.

    Returns:
        The network (eval mode, weights loaded) and the checkpoint's
        hyper-parameters (``net``: model config, ``data``: dataset facts such as
        mean/std, class names and ignore index, ``datamodule``: the dataset config).

    Raises:
        DataError: the file is missing, unsafe or not a segbench checkpoint.
        ConfigError: its network config names a class outside segbench.models.
    """
    ckpt = read_checkpoint(ckpt_path, map_location)
    hparams = ckpt["hyper_parameters"]
    net_config = dict(hparams["net"])
    # The weights come from the checkpoint: skip pretrained-weight lookups.
    net_config["backbone"] = {**(net_config.get("backbone") or {}), "weights": None}
    net = build_network(net_config, trusted=False)
    try:
        net.load_state_dict(network_state(ckpt))
    except RuntimeError as err:
        raise DataError(
            ckpt_path,
            f"its weights do not fit the network its config describes ({str(err)[:300]})",
            fix=CHECKPOINT_FIX,
        ) from None
    return net.eval(), hparams
