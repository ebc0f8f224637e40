"""Checkpoints: written atomically, read with a clear error."""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from segbench.errors import DataError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file beside the target, then renames it into place.

    A run killed while saving leaves the previous checkpoint intact, never a
    truncated file.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Loads a segbench checkpoint, or raises DataError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path,
            "checkpoint not found",
            fix="pass ckpt_path=<run dir>/checkpoints/best.ckpt of a segbench run",
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise DataError(
            path, f"cannot be read as a checkpoint ({type(err).__name__}: {err})"
        ) from None
    if "net" not in ckpt.get("hyper_parameters", {}):
        raise DataError(
            path,
            "is not a segbench checkpoint (no network config in it)",
            fix="pass a checkpoint written by segbench's train.py",
        )
    return ckpt
