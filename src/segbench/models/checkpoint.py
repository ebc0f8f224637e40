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
from torch.utils.data import Dataset

from segbench.errors import ConfigError, DataError
from segbench.models.base import SegmentationNetwork
from segbench.models.build import build_network
from segbench.targets import stored_target_allowed

CHECKPOINT_FIX = "pass ckpt_path=<run dir>/checkpoints/best.ckpt of a segbench run"
UNTRUSTED_FIX = (
    "open only checkpoints written by segbench's train.py (a stored config may name "
    "segbench's classes only; nothing else is imported or run)"
)

#: Where a segbench checkpoint's ``hyper_parameters`` may name a class (``_target_``):
#: a module prefix, or an already-imported class of that kind (e.g. your own network,
#: imported by your code). A ``_target_`` anywhere else is refused.
STORED_TARGETS: dict[str, tuple[str, type | None]] = {
    "net": ("segbench.models.", SegmentationNetwork),
    "datamodule": ("segbench.data.", None),
    "datamodule.dataset": ("segbench.data.", Dataset),
}


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Loads a segbench checkpoint safely, or raises DataError naming the file and the fix.

    Raises:
        DataError: missing file, unreadable file, a file holding pickled objects
            (refused: opening it could run code), not a segbench checkpoint, or a
            stored config naming a class outside segbench (:func:`check_stored_targets`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found", fix=CHECKPOINT_FIX)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not _looks_like_torch_file(path):
            raise DataError(
                path, "cannot be read as a checkpoint (not a PyTorch file)", fix=CHECKPOINT_FIX
            ) from None
        raise DataError(
            path,
            "refused: the file holds pickled objects other than tensors and plain values, "
            f"and opening it could run code ({_unpickler_reason(err)})",
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
    check_stored_targets(path, hparams)
    return ckpt


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch.save's format) or a pickle (its legacy one), by the first bytes."""
    with path.open("rb") as f:
        head = f.read(4)
    return head.startswith((b"PK\x03\x04", b"\x80"))


def _unpickler_reason(err: Exception) -> str:
    """What torch's weights-only unpickler refused, without its boilerplate paragraphs."""
    skip = ("Weights only load failed", "Check the documentation", "Please file an issue")
    parts = [p.strip() for p in str(err).split("\n\n") if p.strip()]
    reason = " ".join(p for p in parts if not p.startswith(skip)) or type(err).__name__
    return reason[:200]


def check_stored_targets(path: Path, node: object, key: str = "") -> None:
    """Refuses a checkpoint whose stored config names anything but segbench's classes.

    Nothing is imported to decide (:func:`segbench.targets.stored_target_allowed`);
    the classes are resolved again, strictly, when the network or dataset is built.

    Raises:
        DataError: naming the file and the ``hyper_parameters`` key.
    """
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for name, value in items:
        if name == "_target_":
            prefix, base = STORED_TARGETS.get(key, ("", None))
            if not prefix or not stored_target_allowed(value, prefix, base):
                where = f"classes of {prefix[:-1]}" if prefix else "no class at this key"
                raise DataError(
                    path,
                    f"refused: hyper_parameters.{key}._target_={value!r} is not a segbench "
                    f"class (a checkpoint may name {where}); nothing was imported or run",
                    fix=UNTRUSTED_FIX,
                )
        elif isinstance(value, dict | list):
            check_stored_targets(path, value, f"{key}.{name}" if key else str(name))


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
        DataError: the file is missing, unsafe or not a segbench checkpoint, or its
            network config names a class outside segbench.models or does not build.
    """
    ckpt = read_checkpoint(ckpt_path, map_location)
    hparams = ckpt["hyper_parameters"]
    net_config = dict(hparams["net"])
    # The weights come from the checkpoint: skip pretrained-weight lookups.
    net_config["backbone"] = {**(net_config.get("backbone") or {}), "weights": None}
    try:
        net = build_network(net_config, trusted=False)
    except ConfigError as err:
        if err.key.endswith("_target_"):
            raise DataError(
                ckpt_path,
                f"refused: hyper_parameters.net._target_={err.value!r} {err.problem}",
                fix=UNTRUSTED_FIX,
            ) from None
        raise DataError(
            ckpt_path, f"its network config is not valid ({err})", fix=CHECKPOINT_FIX
        ) from None
    except (TypeError, ValueError) as err:
        raise DataError(
            ckpt_path,
            f"its network config does not build ({type(err).__name__}: {str(err)[:300]})",
            fix=CHECKPOINT_FIX,
        ) from None
    try:
        net.load_state_dict(network_state(ckpt))
    except RuntimeError as err:
        raise DataError(
            ckpt_path,
            f"its weights do not fit the network its config describes ({str(err)[:300]})",
            fix=CHECKPOINT_FIX,
        ) from None
    return net.eval(), hparams
