"""Process-wide settings: defaults that keep runs off the network, where the configs live,
and the OmegaConf resolvers Hydra needs before any job runs (registered on ``import segbench``).
"""

import hashlib
import os
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf

# Each is only a default: a value the user exported wins.
_OFFLINE_DEFAULTS = {
    # Weights & Biases logs locally; `wandb sync` uploads later.
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    # smp and timm resolve pretrained weights through the Hugging Face hub: read
    # only the local cache, so a missing file fails at once instead of retrying.
    "HF_HUB_OFFLINE": "1",
    # albumentations checks PyPI for a newer version on import.
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


def set_offline_defaults() -> None:
    """Sets the offline defaults for variables the user has not set."""
    for key, value in _OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


#: The Hydra config tree (``conf/`` beside ``src/``): config groups, dataset and backbone facts.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def launch_dir() -> str:
    """OmegaConf resolver ``${launch_dir:}``: the directory the command was started in.

    Hydra's ``${hydra:runtime.cwd}`` exists only once a job runs, but a multirun's
    sweeper resolves ``hydra.sweep.dir`` (hence ``paths.log_dir``) before that: there
    the process's working directory is the one (nothing has changed it yet).
    """
    hydra_config = sys.modules.get("hydra.core.hydra_config")  # loaded if Hydra is running
    if hydra_config is not None and hydra_config.HydraConfig.initialized():
        cwd = OmegaConf.select(hydra_config.HydraConfig.get(), "runtime.cwd", default=None)
        if cwd:
            return str(cwd)
    return os.getcwd()


#: Characters a job dir name keeps: all of them pass Hydra's override grammar unquoted,
#: so ``ckpt_path=<job dir>/checkpoints/best.ckpt`` pastes as it is.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]")
_MAX_NAME = 200  # file systems allow 255 bytes per name


def job_dirname(override_dirname: str) -> str:
    """OmegaConf resolver ``${job_dirname:${hydra:job.override_dirname}}``: a sweep job's dir name.

    Hydra's ``override_dirname`` keeps values as typed (``data.image_size=[64,96]``);
    here brackets, quotes and spaces are dropped, commas become ``_`` and any other
    character outside ``A-Za-z0-9._+@-`` becomes ``-``, so the same overrides always
    give the same, safe name (``resume=auto`` finds the job again). Names over 200
    characters end in a hash of the full one.
    """
    name = re.sub(r"[\[\]{}()'\"\s]", "", str(override_dirname)).replace(",", "_")
    name = _UNSAFE.sub("-", name) or "job"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 11]}-{digest}"
    return name


def register_path_resolvers() -> None:
    """Registers ``${launch_dir:}`` and ``${job_dirname:...}`` (idempotent).

    They run where Hydra computes run and sweep dirs, which may be a fresh launcher
    process (joblib, SLURM) that has imported only what the task function needs.
    """
    for name, fn in (("launch_dir", launch_dir), ("job_dirname", job_dirname)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
