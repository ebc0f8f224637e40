"""Reads offline W&B runs back from their ``run-<id>.wandb`` files, without a server.

An offline run (``WANDB_MODE=offline``, segbench's default) keeps everything it
logged in ``<save_dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``: a log of
protobuf ``Record`` messages (W&B's ``wandb_internal.proto``) in LevelDB's log
framing, the same file ``wandb sync`` uploads. This module decodes it into the
run's metadata, config, history rows and summary, so tests and scripts can check
what was logged.

Example::

    from segbench.training.wandb_offline import find_runs, read_run
    run = read_run(find_runs("logs/train/multiruns/2024-01-01_00-00-00")[0])
    run.summary["val/miou"], [row["val/miou"] for row in run.history if "val/miou" in row]
"""

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from segbench.errors import DataError

# LevelDB log framing as W&B writes it (wandb/sdk/internal/datastore.py before wandb-core,
# core/pkg/leveldb in wandb-core): a 7-byte file header, then 32 KiB blocks of records,
# each with a 7-byte header (crc32, length, type); a record may span blocks.
_FILE_HEADER = struct.Struct("<4sHB")
_IDENT, _MAGIC = b":W&B", 0xBEE1
_RECORD_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline W&B run logged.

    Attributes:
        path: The ``.wandb`` file.
        run_id, name, project, group, job_type: The run's identity.
        tags: Its tags.
        config: The logged config (nested as logged; W&B's ``{"value": ...}``
            wrappers removed).
        history: One dict per ``log`` call (``_step`` included), in order.
        summary: The run summary: the last value of each history key, updated
            by explicit summary writes (as W&B computes it).
        artifacts: ``{"name", "type", "aliases"}`` of each logged artifact.
        exit_code: The run's exit code, or None if it never finished (killed).
    """

    path: Path
    run_id: str = ""
    name: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list[dict] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def files_dir(self) -> Path:
        """The run's ``files/`` folder (media such as logged images live under it)."""
        return self.path.parent / "files"

    def series(self, key: str) -> list:
        """The values of ``key`` in history order (rows without it skipped)."""
        return [row[key] for row in self.history if key in row]


def find_runs(root: str | Path) -> list[Path]:
    """The ``.wandb`` files of every offline run under ``root``, oldest first."""
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name)


def read_run(path: str | Path) -> OfflineRun:
    """Decodes one offline run.

    Args:
        path: A ``run-<id>.wandb`` file, or the ``offline-run-*`` folder holding it.

    Raises:
        DataError: the file is missing or is not a W&B transaction log.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if not files:
            raise DataError(
                path,
                "holds no run-*.wandb file",
                fix="pass an offline-run-* folder written by W&B in offline mode",
            )
        path = files[0]
    run = OfflineRun(path=path)
    explicit_summary: dict = {}
    for data in _records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _read_run_record(run, record.run)
        elif kind == "config":
            for item in record.config.update:
                _set(run.config, _key(item), json.loads(item.value_json))
        elif kind == "history":
            row: dict = {}
            for item in record.history.item:
                _set(row, _key(item), json.loads(item.value_json))
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _set(explicit_summary, _key(item), json.loads(item.value_json))
        elif kind == "artifact":
            run.artifacts.append(
                {
                    "name": record.artifact.name,
                    "type": record.artifact.type,
                    "aliases": list(record.artifact.aliases),
                }
            )
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config = {
        k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v
        for k, v in run.config.items()
        if k != "_wandb"
    }
    for row in run.history:
        run.summary.update({k: v for k, v in row.items() if not k.startswith("_")})
    run.summary.update(explicit_summary)
    run.summary.pop("_wandb", None)
    return run


def _read_run_record(run: OfflineRun, record) -> None:
    run.run_id, run.name, run.project = record.run_id, record.display_name, record.project
    run.group, run.job_type, run.tags = record.run_group, record.job_type, list(record.tags)
    for item in record.config.update:
        _set(run.config, _key(item), json.loads(item.value_json))


def _key(item) -> list[str]:
    # A logged dict (an image's metadata, a config sub-tree) comes as `nested_key`
    # parts; a plain key such as "val/miou" as `key`.
    return list(item.nested_key) or [item.key]


def _set(tree: dict, keys: list[str], value: object) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def _records(path: Path):
    """Yields each record's payload bytes, reassembled across blocks."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(path, f"cannot be read ({err.strerror})") from None
    if len(raw) < _FILE_HEADER.size:
        raise DataError(path, "is empty or truncated (no W&B header)")
    ident, magic, _version = _FILE_HEADER.unpack_from(raw)
    if ident != _IDENT or magic != _MAGIC:
        raise DataError(
            path,
            "is not a W&B transaction log (bad header)",
            fix="pass a run-<id>.wandb file of an offline run",
        )
    pos, pending = _FILE_HEADER.size, b""
    while pos < len(raw):
        if _BLOCK - pos % _BLOCK < _RECORD_HEADER.size:
            pos += _BLOCK - pos % _BLOCK  # block trailer: zero padding
            continue
        if pos + _RECORD_HEADER.size > len(raw):
            return
        crc, length, kind = _RECORD_HEADER.unpack_from(raw, pos)
        pos += _RECORD_HEADER.size
        data = raw[pos : pos + length]
        pos += length
        if kind == 0 and length == 0:
            continue  # preallocated, unwritten space
        if len(data) < length or zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            return  # a run killed mid-write: keep what was complete
        if kind == _FULL:
            yield data
        elif kind == _FIRST:
            pending = data
        elif kind == _MIDDLE:
            pending += data
        elif kind == _LAST:
            yield pending + data
            pending = b""
