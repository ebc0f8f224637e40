"""A run's ``status.json``: ok, failed or skipped, with the reason and the overrides.

Written by :func:`segbench.training.sweep.run_job` for every run, read by resume
(a finished run is not redone), the sweep summary and the comparison report.
"""

import json
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

from segbench.files import write_json

STATUS_FILE = "status.json"
STATUSES = ("ok", "failed", "skipped")


def write_status(
    run_dir: str | Path, status: str, reason: str = "", overrides: list[str] | None = None
) -> Path:
    """Writes ``<run_dir>/status.json`` atomically (only on the global-zero process)."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r}: allowed: {', '.join(STATUSES)}")
    path = Path(run_dir) / STATUS_FILE
    if getattr(rank_zero_only, "rank", 0) != 0:
        return path
    write_json(path, {"status": status, "reason": reason, "overrides": list(overrides or [])})
    return path


def read_status(run_dir: str | Path) -> dict | None:
    """The ``status.json`` of a run dir, or None if it has none (or an unreadable one)."""
    path = Path(run_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
