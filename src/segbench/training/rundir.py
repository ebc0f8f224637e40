"""One run per run dir: a second run never mixes its files with the first's, or deletes them.

A run dir holds one training run (``config.yaml``, ``checkpoints/``, ``metrics.json``,
``csv/``, ...). Scripts and benchmarks name it explicitly (``hydra.run.dir=...``) and
sweeps name job dirs after their overrides, so the same dir comes back on purpose:

- a run that continues this dir's own checkpoint (``ckpt_path=last``, ``ckpt_path=<this
  dir>/checkpoints/last.ckpt``, ``resume=auto`` with a ``last.ckpt``) continues its files;
- ``resume=auto`` where the earlier attempt left no checkpoint starts over, removing
  that attempt's files (nothing of it could be continued; sweeps retry such jobs);
- ``resume=never`` retrains the dir from scratch, as asked: the earlier run's files
  are removed first, so the two never mix;
- any other run into a dir that holds a run is refused, with the ways out: continue
  it, pick a new dir, or delete it. (Writing a second, renamed dir instead would leave
  the caller reading the first run's files where it expects its own.)
"""

import logging
import shutil
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from segbench.config import is_multirun
from segbench.errors import ConfigError
from segbench.training.resume import resume_checkpoint

log = logging.getLogger(__name__)

#: What a training run writes into its run dir (Hydra's own ``.hydra/`` and ``<task>.log``
#: are written by every invocation before segbench runs, and are not counted).
RUN_OUTPUTS = (
    "config.yaml",
    "metrics.json",
    "status.json",
    "profile.json",
    "checkpoints",
    "csv",
    "wandb",
    "tensorboard",
)


def run_outputs(run_dir: str | Path) -> list[Path]:
    """The files and folders of a training run present in ``run_dir``."""
    return [Path(run_dir) / name for name in RUN_OUTPUTS if (Path(run_dir) / name).exists()]


def checkpoint_dir(cfg: DictConfig) -> Path:
    """Where the run's checkpoints go (``callbacks.model_checkpoint.dirpath``)."""
    folder = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")
    return Path(folder) if folder else Path(cfg.paths.output_dir) / "checkpoints"


def continues_this_run(cfg: DictConfig) -> bool:
    """Whether ``cfg.ckpt_path`` is a checkpoint of this run dir (so its files continue)."""
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        return False
    if ckpt == "last":
        return resume_checkpoint(cfg.paths.output_dir, checkpoint_dir(cfg)) is not None
    out = Path(cfg.paths.output_dir).resolve()
    return Path(ckpt).is_file() and out in Path(ckpt).resolve().parents


def prepare_run_dir(cfg: DictConfig) -> None:
    """Makes sure this run's files will not mix with another run's (see the module doc).

    Raises:
        ConfigError: the run dir holds another run and this one does not continue it;
            names the dir, what is in it and the ways out.
    """
    out = Path(cfg.paths.output_dir)
    found = run_outputs(out)
    if not found or continues_this_run(cfg):
        return
    names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in found)
    stale = cfg.get("resume") == "auto" and not cfg.get("ckpt_path")
    if stale or cfg.get("resume") == "never":
        log.warning(
            "%s: %s; starting over (removing its %s)",
            f"resume={cfg.get('resume')}",
            "retraining from scratch as asked"
            if not stale
            else f"the earlier attempt in {out} left no checkpoint to continue",
            names,
        )
        for path in found:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return
    if cfg.get("ckpt_path") == "last":
        raise ConfigError(
            "ckpt_path",
            "last",
            f"there is no {checkpoint_dir(cfg) / 'last.ckpt'} to continue, and {out} holds a "
            f"run's files ({names}) that a new run would mix with",
            fix=f"resume=auto starts such a run over; or delete {out}",
        )
    key = "hydra.sweep.dir" if is_multirun() else "hydra.run.dir"
    raise ConfigError(
        key,
        str(out),
        f"already holds a training run ({names}); a second run there would mix its "
        "checkpoints, metrics and logs with the first's",
        fix="continue that run with ckpt_path=last (or resume=auto), give this one its own "
        f"dir ({key}=<new folder>), or delete {out}",
    )


def claim_run_dir(cfg: DictConfig) -> bool:
    """:func:`prepare_run_dir` for a job: False if a sweep job must not run in its dir.

    A single run raises the ConfigError; a sweep job is logged as not run and the
    sweep goes on, its dir left as it was (its status.json is the earlier run's).
    Only the global-zero process decides: under DDP the other ranks start (Lightning
    re-runs train.py, SLURM starts them all) into the dir rank 0 is already writing.
    """
    if getattr(rank_zero_only, "rank", 0) != 0:
        return True
    try:
        prepare_run_dir(cfg)
    except ConfigError as err:
        if not is_multirun():
            raise
        log.error("not run: %s", err)
        return False
    return True
