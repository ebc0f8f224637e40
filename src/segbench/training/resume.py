"""Continuing killed runs: what counts as finished, where to resume from, and RNG state.

``resume=auto`` (see :func:`segbench.training.sweep.run_job`) looks into the run dir: a run
whose ``status.json`` says ``ok`` is finished; otherwise ``checkpoints/last.ckpt``
(written atomically at the end of every epoch) is where training continues.
``ckpt_path=last`` asks Lightning for the same file directly. Either continues only
with the config the run was started with: :func:`config_changes` compares it with the
run dir's ``config.yaml``. :class:`ResumableCSVLogger` keeps ``csv/metrics.csv``'s rows
from before the resume point.

A resumed run reaches the same numbers as an uninterrupted one in deterministic
mode only if its random streams continue too: :class:`RNGState` stores the
torch / numpy / python generators in each checkpoint and puts them back when the
checkpoint is restored, before the first resumed epoch draws its shuffle order.
"""

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf

from segbench.files import WriteError, atomic_write, write_error
from segbench.training.status import read_status

log = logging.getLogger(__name__)


def finished_metrics(run_dir: str | Path) -> dict | None:
    """The ``metrics.json`` of a run that finished (status ``ok``), else None."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if not status or status.get("status") != "ok":
        return None
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None  # finished but its metrics are gone: train again


#: Keys whose value does not change what a run computes (where files go, what is logged
#: or shown, where the same data now lives); they may differ when a run is continued.
NOT_COMPARED = (
    "paths",
    "hydra",
    "resume",
    "ckpt_path",
    "task_name",
    "tags",
    "logger",
    "data.root",
    "data.num_workers",
    "data.pin_memory",
    "trainer.devices",
    "trainer.enable_progress_bar",
    "callbacks.rich_progress_bar",
    "callbacks.prediction_images",
    "callbacks.model_cost",
    "callbacks.learning_rate_monitor",
)


def config_changes(run_dir: str | Path, cfg: DictConfig) -> list[str]:
    """What differs between the run dir's saved ``config.yaml`` and ``cfg`` (both resolved).

    Returns:
        One ``key: old -> new`` line per differing key (``<absent>`` where a side lacks
        it), keys of :data:`NOT_COMPARED` left out; empty if the dir has no
        ``config.yaml`` (nothing to compare) or nothing differs.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return []
    old = _flatten(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
    new = _flatten(OmegaConf.to_container(cfg, resolve=True))
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == k or key.startswith(f"{k}.") for k in NOT_COMPARED):
            continue
        before, after = old.get(key, "<absent>"), new.get(key, "<absent>")
        if before != after:
            changes.append(f"{key}: {before} -> {after}")
    return changes


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict) and node:
        flat = {}
        for key, value in node.items():
            flat |= _flatten(value, f"{prefix}{key}.")
        return flat
    return {prefix.rstrip("."): node}


def resume_checkpoint(run_dir: str | Path, dirpath: str | Path | None = None) -> Path | None:
    """The ``last.ckpt`` to continue from, or None to start fresh.

    Also removes temporary files a kill during a checkpoint write left behind
    (:class:`segbench.training.checkpoint_io.AtomicCheckpointIO` writes ``.<name>.*.tmp``
    and renames it, so ``last.ckpt`` itself is always complete).

    Args:
        run_dir: The run's output dir.
        dirpath: The checkpoint folder (default ``<run_dir>/checkpoints``).
    """
    folder = Path(dirpath) if dirpath else Path(run_dir) / "checkpoints"
    for stale in folder.glob(".*.ckpt.*.tmp"):
        log.info("removing an interrupted checkpoint write: %s", stale)
        stale.unlink(missing_ok=True)
    last = folder / "last.ckpt"
    return last if last.is_file() else None


class RNGState(L.Callback):
    """Saves the random generators with each checkpoint and restores them on resume.

    Lightning restores model, optimizer, loops and callbacks but not the global
    generators, so a resumed epoch would shuffle differently from the same epoch
    of an uninterrupted run. The state is taken when the end-of-epoch checkpoint
    is written and put back when Lightning restores callbacks, which is before
    the resumed fit loop creates its data iterator (the sanity check in between
    runs under Lightning's ``isolate_rng``).
    """

    def state_dict(self) -> dict[str, Any]:
        states = _collect_rng_states(include_cuda=False)
        # Plain lists instead of numpy arrays: torch.load(weights_only=True) must read it back.
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, keys.tolist(), pos, has_gauss, gauss)
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = dict(state_dict.get("rng") or {})
        if not states:
            return
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss)
        _set_rng_states(states)


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSV logger, except that a resumed run keeps ``metrics.csv``'s history.

    Lightning's writer deletes an existing ``metrics.csv`` when it starts, so a run
    resumed with ``ckpt_path=last`` or ``resume=auto`` lost every epoch before the
    resume point. Here the rows already in the file are kept, up to the first step
    the resumed run logs again (the part of a killed epoch that is re-run is
    replaced, not duplicated). A fresh run never meets an old file: the run dir
    check (:mod:`segbench.training.rundir`) refuses a dir holding another run.
    Same arguments as ``lightning.pytorch.loggers.CSVLogger``.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryWriter(log_dir=self.log_dir)
        return self._experiment


class _HistoryWriter(ExperimentWriter):
    """An experiment writer that continues the rows of an existing ``metrics.csv``."""

    def _check_log_dir_exists(self) -> None:
        self.kept: list[dict] | None = None
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as f:
                self.kept = list(csv.DictReader(f))
            log.info("continuing %s (%d rows kept)", path, len(self.kept))

    def save(self) -> None:
        try:
            if self.kept is None or not self.metrics:
                super().save()
                return
            first = min(float(row["step"]) for row in self.metrics)
            kept = [
                {k: v for k, v in r.items() if k is not None}  # a torn line's extra fields
                for r in self.kept
                if r.get("step") and float(r["step"]) < first
            ]
            self.kept = None
            self.metrics = kept + self.metrics
            self._record_new_keys()
            rows, self.metrics = self.metrics, []

            def write(f) -> None:
                text = io.StringIO(newline="")
                writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(rows)
                f.write(text.getvalue().encode())

            atomic_write(self.metrics_file_path, write)
        except WriteError:
            raise
        except OSError as err:
            raise write_error(self.metrics_file_path, err) from err
