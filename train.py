"""Train a segmentation network: ``python train.py model=unet backbone=resnet50``.

Overrides follow Hydra: ``group=option`` picks a config (``conf/<group>/``),
``key=value`` sets a value, ``-m`` sweeps.
"""

import hydra
from omegaconf import DictConfig

from segbench.config import run_checked
from segbench.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from segbench.training.sweep import run_job
    from segbench.training.train import train

    with exit_on_user_error():
        # status.json, skipped pairs, failed jobs that don't stop a sweep, resume=auto.
        best = run_job(cfg, train)
    # The returned value is what Hydra sweepers (e.g. Optuna) optimise.
    return best


if __name__ == "__main__":
    run_checked(main)
