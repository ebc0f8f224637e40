"""Sweeps that survive real use: per-job status, skipped and failed runs, resume, the report.

Every job of ``python train.py -m ...`` runs through :func:`run_job`, which writes
``status.json`` into the job's run dir::

    {"status": "ok" | "failed" | "skipped", "reason": str, "overrides": [...]}

- an incompatible model x backbone pair is skipped before anything is built,
  with :func:`segbench.models.check_compatible`'s message as the reason;
- a job that raises is recorded as failed with its error, and the sweep goes on;
- with ``resume=auto`` a job whose run dir already holds an ``ok`` status is not
  redone, and an unfinished one continues from ``checkpoints/last.ckpt``; either only
  if the run dir's ``config.yaml`` matches the job's config (:func:`check_unchanged`).

:class:`SweepCallback` (a Hydra callback, ``conf/hydra/default.yaml``) gathers the
statuses into ``sweep_status.json`` at the end of the multirun, writes the
comparison report (:func:`segbench.evaluation.report.write_report`) into the sweep dir, and
exits non-zero only if no job of the sweep succeeded.
"""

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from segbench.config import is_multirun, job_overrides
from segbench.errors import ConfigError
from segbench.evaluation.report import write_report
from segbench.files import write_json
from segbench.models import check_compatible
from segbench.training.resume import config_changes, finished_metrics, resume_checkpoint
from segbench.training.rundir import claim_run_dir
from segbench.training.status import STATUS_FILE, STATUSES, read_status, write_status

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig, task: Callable[[DictConfig], dict]) -> float | None:
    """Runs one training job (a single run or one job of a sweep) and records its status.

    Args:
        cfg: The job's composed config (``conf/train.yaml``).
        task: The training function, :func:`segbench.training.train.train`.

    Returns:
        The job's ``best_val_miou`` (what sweepers such as Optuna optimise), or
        None for a skipped or failed sweep job.

    Raises:
        Exception: in a single run, whatever ``task`` raised (a sweep records
        it as failed instead and goes on).
    """
    out = Path(cfg.paths.output_dir)
    overrides, multirun = job_overrides(), is_multirun()
    resume = cfg.get("resume")
    if resume not in (None, "auto", "never"):
        raise ConfigError(
            "resume",
            resume,
            "unknown resume mode",
            allowed=["auto", "never", "null"],
            fix="resume=auto continues the run in the run dir; resume=null starts over",
        )
    absolute_data_root(cfg)
    if resume == "auto" and (finished_metrics(out) is not None or resume_checkpoint(out)):
        try:  # only a run that would be continued or counted as done must match
            check_unchanged(out, cfg)
        except ConfigError as err:
            if not multirun:
                raise
            write_status(out, "failed", str(err), overrides)
            log.error("not resumed %s: %s", " ".join(overrides), err)
            return None
    if resume == "auto" and (done := finished_metrics(out)) is not None:
        log.info("already finished with this config, not redone (resume=auto): %s", out)
        return done.get("best_val_miou")
    try:
        check_compatible(cfg.model, cfg.backbone)
    except ConfigError as err:
        write_status(out, "skipped", str(err), overrides)
        if not multirun:
            raise
        log.warning("skipped %s: %s", " ".join(overrides), err)
        return None

    if resume == "auto" and cfg.get("ckpt_path") is None and (last := resume_checkpoint(out)):
        log.info("resuming from %s (resume=auto)", last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    if not claim_run_dir(cfg):  # another run's files are there: never mix them
        return None
    try:
        metrics = task(cfg)
    except Exception as err:
        write_status(out, "failed", f"{type(err).__name__}: {err}", overrides)
        if not multirun:
            raise
        log.error("failed %s:\n%s", " ".join(overrides), traceback.format_exc())
        return None
    finally:
        _finish_wandb()
    write_status(out, "ok", "", overrides)
    return metrics.get("best_val_miou")


def check_unchanged(run_dir: Path, cfg: DictConfig) -> None:
    """Refuses to resume (or count as done) a run dir trained with a different config.

    A finished run would otherwise be reported for a config it was not trained with;
    an unfinished one would continue under other settings. Continuing a finished run to
    more epochs is refused too: the poly schedule has decayed the learning rate to 0 at
    the old last step, so the result would match neither a short nor a long run.

    Raises:
        ConfigError: naming every differing key, its saved and new value, and the ways out.
    """
    changes = config_changes(run_dir, cfg)
    if not changes:
        return
    shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
    why = ""
    if any(c.startswith("trainer.max_epochs:") for c in changes):
        why = " (a run keeps the epochs it started with: they fix its learning-rate schedule)"
    raise ConfigError(
        "resume",
        "auto",
        f"{run_dir} was trained with another config{why}: {shown}",
        fix="keep the new config in a new run dir (hydra.run.dir=<new dir>; a sweep: "
        "hydra.sweep.dir=<new dir>), or retrain this dir from scratch with resume=never, "
        f"or delete {run_dir}; to keep its result, run with the config in {run_dir / 'config.yaml'}",
    )


def absolute_data_root(cfg: DictConfig) -> None:
    """Makes a relative ``data.root`` absolute (against the current dir, as the loader reads it).

    The run's ``config.yaml`` and its checkpoints then name the dataset wherever
    evaluate.py or export.py is later started.
    """
    root = OmegaConf.select(cfg, "data.root")
    if root and not Path(str(root)).is_absolute():
        with open_dict(cfg):
            cfg.data.root = str(Path(str(root)).resolve())


def summarize(sweep_dir: str | Path) -> dict:
    """Gathers the ``status.json`` of every job under ``sweep_dir``.

    Returns:
        ``{"counts": {status: n}, "runs": [{"dir", "status", "reason", "overrides"}]}``.
    """
    sweep_dir = Path(sweep_dir)
    runs = []
    for path in sorted(sweep_dir.rglob(STATUS_FILE)):
        status = read_status(path.parent) or {
            "status": "failed",
            "reason": "unreadable status.json",
        }
        runs.append({"dir": str(path.parent.relative_to(sweep_dir)), **status})
    counts = {s: sum(r["status"] == s for r in runs) for s in STATUSES}
    return {"counts": counts, "runs": runs}


class SweepCallback(Callback):
    """Hydra callback: a status for every job, and the sweep's summary and report.

    Args:
        report: Write the comparison report (:mod:`segbench.report`) into the
            sweep dir at the end of a multirun.
    """

    def __init__(self, report: bool = True) -> None:
        self.report = report

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        # A job that failed outside run_job (e.g. while composing its config) still gets a status.
        out = Path(config.hydra.runtime.output_dir)
        if job_return.status == JobStatus.FAILED and read_status(out) is None:
            err = job_return._return_value
            write_status(
                out, "failed", f"{type(err).__name__}: {err}", list(config.hydra.overrides.task)
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = summarize(sweep_dir)
        write_json(sweep_dir / "sweep_status.json", summary)
        counts = summary["counts"]
        log.info(
            "sweep %s: %d ok, %d failed, %d skipped",
            sweep_dir,
            counts["ok"],
            counts["failed"],
            counts["skipped"],
        )
        for run in summary["runs"]:
            if run["status"] != "ok":
                log.info("  %s %s: %s", run["status"], run["dir"], run["reason"].splitlines()[0])
        if self.report and counts["ok"]:
            self._write_report(sweep_dir)
        if not counts["ok"]:
            # SystemExit passes through Hydra's error handler: the exit code reaches the shell.
            raise SystemExit(
                f"error: no run of the sweep succeeded ({counts['failed']} failed, "
                f"{counts['skipped']} skipped); see {sweep_dir / 'sweep_status.json'}"
            )

    @staticmethod
    def _write_report(sweep_dir: Path) -> None:
        written = write_report(sweep_dir)
        log.info("comparison report: %s", ", ".join(str(p) for p in written.values()))


def _finish_wandb() -> None:
    # Jobs of one sweep share a process (basic launcher) or a worker (joblib): close the
    # W&B run so the next job starts its own.
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
