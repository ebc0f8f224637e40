"""Lightning's checkpoint I/O for segbench runs: atomic writes, loads that run no code."""

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from segbench.files import atomic_write
from segbench.models.checkpoint import read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file beside the target, then renames it into place.

    A run killed while saving leaves the previous checkpoint intact, never a
    truncated file; a failed write (full disk, no permission) names the file
    and keeps the previous one. Loading (``ckpt_path=...`` to resume) goes
    through :func:`segbench.models.checkpoint.read_checkpoint`, which refuses
    files holding pickled code.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f), fsync=True)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_checkpoint(path, map_location=map_location or "cpu")
