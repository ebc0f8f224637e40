"""Files written whole or not at all: a temporary file beside the target, then a rename.

Every JSON, report and checkpoint segbench writes goes through :func:`atomic_write`,
so a run killed mid-write (or two sweep jobs reading each other's files) never
sees half a file, and a failed write names the file and the reason.
"""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from segbench.errors import SegbenchError


class WriteError(SegbenchError, OSError):
    """A file could not be written (disk full, no permission, missing folder)."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], fsync: bool = False) -> Path:
    """Calls ``write(f)`` on a temporary file beside ``path`` and renames it into place.

    The previous content of ``path`` stays intact until the new one is complete.

    Args:
        path: The target file (its folder is created).
        write: Writes the content to the binary file object it is given.
        fsync: Flush the data to disk before the rename (checkpoints: a power
            loss must not leave a renamed but empty file).

    Raises:
        WriteError: the folder or file cannot be written; names the file and the reason.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp makes the file owner-only; give it the mode open() would (0666 minus umask).
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            _write_reporting_os_errors(write, f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise write_error(path, err) from err
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Recorder:
    """A binary file that remembers the first OSError its ``write`` raised."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def _write_reporting_os_errors(write: Callable[[IO[bytes]], Any], f: IO[bytes]) -> None:
    """Calls ``write(f)``; an OSError inside it surfaces as that OSError.

    ``torch.save`` turns a failed write (ENOSPC) into ``RuntimeError("... unexpected
    pos ...")``, which names neither the reason nor the file.
    """
    recorder = _Recorder(f)
    try:
        write(recorder)  # type: ignore[arg-type]
    except OSError:
        raise
    except Exception:
        if recorder.error is not None:
            raise recorder.error from None
        raise


def write_error(path: str | Path, err: OSError) -> WriteError:
    """The :class:`WriteError` for ``err`` raised while writing ``path``: the file, why, the fix."""
    return WriteError(
        f"{path}: cannot be written ({err.strerror or err}); the previous file, if any, is "
        "kept\n  fix: free disk space or choose a writable folder (paths.log_dir=..., "
        "hydra.run.dir=...)"
    )


def write_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, data: Any, **kwargs: Any) -> Path:
    """Writes ``data`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=2, **kwargs) + "\n")


def stale_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files that a killed :func:`atomic_write` left in ``folder``."""
    folder = Path(folder)
    return sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
